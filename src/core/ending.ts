/**
 * How a migration ends, decided from facts alone: which side, if any, may run the guest. The one
 * rule behind every branch: two running copies of a guest are worse than a paused one, so a source
 * whose guest may have moved is resumed only when the destination provably does not have it.
 */

export type Outcome = 'completed' | 'failed' | 'cancelled';
/** Where the guest runs when the controller is done; `none`: the operator decides. */
export type GuestRunsOn = 'source' | 'destination' | 'none';

/**
 * What a driver found out about the destination at the end:
 * - `completed`: it reports its incoming migration completed (it holds the whole guest);
 * - `failed`: it reports the incoming migration failed or was cancelled;
 * - `gone`: its process is verifiably gone (its monitor refuses connections, its PID is dead);
 * - `unknown`: it does not answer, or answers something else: it may be running the guest.
 */
export type DestinationVerdict = 'completed' | 'failed' | 'gone' | 'unknown';

export interface EndingFacts {
  /** The source's last known migration status (`unknown` if it could not be read). */
  sourceStatus: string;
  /** The source's run state now (`running`, `paused`, `postmigrate`, …), if it answers. */
  sourceRunState?: string;
  /** Post-copy may have started (latched: a `postcopy*` status was seen or a switch was requested). */
  postcopy: boolean;
  /** Asked only when the guest may have moved (see `guestMayHaveMoved`). */
  destination?: { verdict: DestinationVerdict; detail: string };
  /** The source ran before the controller started (a paused guest is left paused). */
  sourceWasRunning: boolean;
  /** What the controller did or met (deadline, interrupt, lost contact) and the outcome it implies, if any. */
  forced?: { outcome?: Outcome; reason: string };
}

export interface Ending {
  outcome: Outcome;
  guestRunsOn: GuestRunsOn;
  /** What the driver must start, if anything: never both. */
  resume: 'source' | 'destination' | 'none';
  reason: string;
}

/** The guest may be on the destination: the source finished, or post-copy may have begun. */
export function guestMayHaveMoved(sourceStatus: string, postcopy: boolean): boolean {
  return sourceStatus === 'completed' || postcopy || sourceStatus.startsWith('postcopy');
}

export function resolveEnding(f: EndingFacts): Ending {
  // A destination that reports completed holds the whole guest even if the source's word was
  // lost (e.g. the source is gone) — unless the source runs, which only its own QEMU decides.
  const destinationHasIt = f.destination?.verdict === 'completed' && f.sourceRunState !== 'running';
  if (!guestMayHaveMoved(f.sourceStatus, f.postcopy) && !destinationHasIt) return sourceKeepsTheGuest(f);
  const dst = f.destination ?? { verdict: 'unknown' as const, detail: 'not asked' };
  const postcopy = f.postcopy || f.sourceStatus.startsWith('postcopy');
  switch (dst.verdict) {
    case 'completed':
      return {
        outcome: 'completed',
        guestRunsOn: 'destination',
        resume: 'destination',
        reason: f.forced?.reason ?? 'QEMU completed the migration',
      };
    case 'failed':
    case 'gone':
      if (postcopy) {
        return {
          outcome: 'failed',
          guestRunsOn: 'none',
          resume: 'none',
          reason: `the destination ${dst.verdict === 'gone' ? 'is gone' : 'failed'} (${dst.detail}) after post-copy began: THE GUEST IS LOST — neither side holds all of its memory; the source stays paused (its memory is stale)`,
        };
      }
      // Pre-copy finished on the source, which then stopped with all its memory intact.
      return {
        outcome: 'failed',
        guestRunsOn: 'source',
        resume: 'source',
        reason: `the source finished but the destination did not load the guest (${dst.detail}); the source guest is resumed`,
      };
    case 'unknown':
      return {
        outcome: 'failed',
        guestRunsOn: 'none',
        resume: 'none',
        reason: `cannot tell whether the destination runs the guest (${dst.detail}): both sides are left as they are — operator decides (if the destination is really gone, run kvmigrate recover)`,
      };
  }
}

function sourceKeepsTheGuest(f: EndingFacts): Ending {
  const outcome: Outcome = f.forced?.outcome ?? (f.sourceStatus === 'failed' ? 'failed' : 'cancelled');
  const reason = f.forced?.reason ?? `QEMU reports ${f.sourceStatus}`;
  if (f.sourceRunState === undefined) {
    return {
      outcome: 'failed',
      guestRunsOn: 'none',
      resume: 'none',
      reason: `${reason}; the source does not answer, so whether its guest runs is unknown — operator decides`,
    };
  }
  // The guest never left: it stays on the source, running again unless the user had paused it.
  const running = f.sourceRunState === 'running';
  return {
    outcome,
    guestRunsOn: 'source',
    resume: !running && f.sourceWasRunning ? 'source' : 'none',
    reason,
  };
}
