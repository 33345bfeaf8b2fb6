import { Controller, type Decision } from '../core/controller.js';
import type { MigrationInfo } from '../core/sample.js';
import { resolvePolicy } from '../policy/registry.js';
import type { PassRecord } from '../policy/types.js';

/** A recorded run, as results files keep it: its passes and the policy that ran. */
export interface RecordedRun {
  policyName: string;
  policyConfig: unknown;
  passTimeline: PassRecord[];
  ramBytes: number;
  downtimeBudgetMs: number;
  deadlineMs: number;
  postcopyPermitted: boolean;
  outcome: string;
  /** QEMU went into post-copy: the last pass is the post-copy phase, not a stop-and-copy. */
  endedInPostcopy?: boolean;
}

/** How long a pass must last for the controller to see it alone: event → query-migrate, ms. */
const EVENT_ROUND_TRIP_MS = 10;

/**
 * Replays a recorded run's passes through the controller core: `query-migrate` samples rebuilt
 * from the pass records (one at every pass end, and polls every `pollMs` in between with the
 * counters moving linearly), fed to a fresh core running the same policy and configuration. What
 * the recording does not hold — calc-dirty-rate samples, region sets — is absent, so a policy that
 * reads them decides on less (adaptive, mp) and may differ; a policy that reads only passes and time
 * must decide the same.
 */
export function replayRun(run: RecordedRun, pollMs = 50): Decision[] {
  const core = new Controller({
    policy: resolvePolicy(run.policyName, run.policyConfig as Record<string, unknown>),
    downtimeBudgetMs: run.downtimeBudgetMs,
    deadlineMs: run.deadlineMs,
    postcopyPermitted: run.postcopyPermitted,
    ramBytes: run.ramBytes,
  });
  const passes = run.passTimeline;
  let transferred = 0;
  let normal = 0;
  let duplicate = 0;
  // A completed run's last pass is its stop-and-copy unless it post-copied. QEMU syncs for it and
  // sends it holding its big lock, and answers no query until it is over: the controller sees
  // neither its start nor anything in it.
  const finalIsStopAndCopy = run.outcome === 'completed' && !run.endedInPostcopy;
  for (const [i, p] of passes.entries()) {
    const last = i === passes.length - 1;
    const sample = (atMs: number, share: number, syncs: number, remaining: number, status = 'active') =>
      core.observe(
        {
          status,
          ram: {
            transferred: transferred + p.bytesSent * share,
            remaining,
            total: run.ramBytes,
            normal: normal + p.normalPages * share,
            duplicate: duplicate + p.zeroPages * share,
            'dirty-sync-count': syncs,
            'dirty-pages-rate': p.dirtyPagesRate,
            mbps: p.qemuMbps,
          },
        } satisfies MigrationInfo,
        atMs,
      );
    const stopAndCopy = last && finalIsStopAndCopy;
    const polls = [];
    if (!stopAndCopy) {
      for (let t = p.startMs + pollMs; t < p.endMs; t += pollMs) polls.push(t);
      // The deadline is checked at the first poll past it, even when the pass ends soon after.
      if (run.deadlineMs > p.startMs && run.deadlineMs < p.endMs) polls.push(run.deadlineMs);
    }
    for (const t of polls.sort((a, b) => a - b)) {
      const share = (t - p.startMs) / (p.endMs - p.startMs);
      sample(t, share, p.pass, p.remainingAtStartBytes * (1 - share) + p.dirtyAtEndBytes * share);
    }
    // The controller wakes on QEMU's MIGRATION_PASS event and asks at once, so it sees a pass that
    // lasts longer than that round trip (a 47 ms check pass was seen live); QEMU's millisecond
    // re-syncs come faster and are seen with the next sync.
    const next = passes[i + 1];
    const nextIsFinal = i + 1 === passes.length - 1;
    // The short pass just before the post-copy phase is the sync of our own post-copy command:
    // the end of the pass before it is what the controller acted on, so it was seen.
    const switchSyncNext = run.endedInPostcopy === true && i + 2 === passes.length - 1;
    const seenAlone =
      next === undefined ||
      (!(nextIsFinal && finalIsStopAndCopy) &&
        (next.endMs - next.startMs >= EVENT_ROUND_TRIP_MS || switchSyncNext));
    // The final pass is closed by the end of the migration, not by a sync the controller saw.
    if (!last && seenAlone) sample(p.endMs, 1, p.pass + 1, p.dirtyAtEndBytes);
    else if (last) sample(p.endMs, 1, p.pass, 0, run.outcome === 'completed' ? 'completed' : 'cancelled');
    transferred += p.bytesSent;
    normal += p.normalPages;
    duplicate += p.zeroPages;
  }
  return core.decisions;
}
