import { setTimeout as sleep } from 'node:timers/promises';
import type { MigrationResult, RunEvent } from '../core/result.js';
import type { LibvirtClient, LibvirtEvent } from '../libvirt/index.js';
import { LibvirtSession } from '../libvirt/libvirt-session.js';
import { RegionSampler } from '../migration/region-sampler.js';
import type { ResolvedPolicy } from '../policy/index.js';
import type { GuestStall, Interval } from './guest-stall.js';
import {
  BASELINE_MS,
  SETTLE_MS,
  postcopyVerdict,
  precopyEnd,
  stallOverWindow,
  type LabMigrationResult,
} from './lab.js';
import type { LibvirtLabGuest } from './libvirt-pair.js';
import { guestRamFromMaps, readMaps } from '../qemu/qemu-pid.js';

export interface LibvirtLabMigrationOptions {
  /** The pair's source and destination daemons (one connection each, kept across runs). */
  source: LibvirtClient;
  destination: LibvirtClient;
  policy: ResolvedPolicy;
  downtimeBudgetMs: number;
  deadlineMs: number;
  postcopyPermitted?: boolean;
  signal?: AbortSignal;
  onEvent?: (e: RunEvent) => void;
}

/** What a lab migration through libvirt measured and verified: the QMP lab's result, less what only it has. */
export type LibvirtLabMigrationResult = Omit<LabMigrationResult, 'lab' | 'tap' | 'appLatency'> & {
  /** Where the verification hold (destination kept paused for the RAM compare) was taken to start. */
  holdBasis?: string;
};

/** A lifecycle event of the guest on the destination: where the stall's cut starts. */
interface SeenEvent {
  at: number;
  kind: string;
}

/**
 * Migrates a lab guest through libvirt (live, peer-to-peer; post-copy allowed only when
 * `postcopyPermitted`) under a policy and verifies the outcome as migrateLab does for QMP pairs:
 * the same 1 s of heartbeats before `migrate`, the same region sampling of the source's RAM, the
 * destination left paused (VIR_MIGRATE_PAUSED) and its RAM compared byte for byte with the
 * source's, then resumed through libvirt and the guest's own check run; the guest's stall from
 * both consoles over the same window, the verification hold cut out. libvirt gives no
 * destination-completed status, so the hold starts at the destination's Finish (its
 * suspended/paused lifecycle event, where libvirt would otherwise have resumed it), else at the
 * source's job-completed event (the session's clock.sourceCompletedAt), else when the session saw
 * the end.
 */
export async function migrateLibvirtLab(
  guest: LibvirtLabGuest,
  o: LibvirtLabMigrationOptions,
): Promise<LibvirtLabMigrationResult> {
  const { pair, name } = guest;
  const firstBeat = guest.sourceConsole.heartbeats[0]?.at;
  if (firstBeat !== undefined && firstBeat + BASELINE_MS > performance.now())
    await sleep(firstBeat + BASELINE_MS - performance.now());
  const events: SeenEvent[] = [];
  const onDestination = (e: LibvirtEvent) => {
    if (e.domain === name && e.kind === 'lifecycle')
      events.push({ at: e.at, kind: `${e.event}/${e.detail}` });
  };
  o.destination.on('event', onDestination);
  try {
    const tx0 = await pair.link.txBytes();
    const migration = await new LibvirtSession({
      source: o.source,
      destination: o.destination,
      domain: name,
      start: {
        destUri: pair.destination.uri,
        migrateUri: pair.migrateUri,
        listenAddress: pair.listenAddress,
        paused: true,
      },
      policy: o.policy,
      downtimeBudgetMs: o.downtimeBudgetMs,
      deadlineMs: o.deadlineMs,
      postcopyPermitted: o.postcopyPermitted,
      resumeDestination: false,
      signal: o.signal,
      onEvent: o.onEvent,
      // The same host-side sampling of the source's RAM the QMP lab gives its sessions.
      regionSampler: async () =>
        new RegionSampler(guest.sourcePid, guestRamFromMaps(readMaps(guest.sourcePid), guest.ramBytes)),
    }).run();
    const { clock } = migration;
    const seen = (kind: RegExp) => events.find((e) => e.at >= clock.startedAt && kind.test(e.kind))?.at;
    // The session's clock has the source's job-completed event (libvirt's own end of the job).
    const { sourceCompletedAt } = clock;
    const end = precopyEnd(migration);
    const stallOver = (window: Interval, exclude: Interval[] = []) =>
      measureStall(guest, window, exclude, end);
    const linkBytes = async () => (await pair.link.txBytes()) - tx0;

    if (migration.outcome !== 'completed') {
      // The source must run on: its heartbeat continues and its memory is intact.
      const after = performance.now();
      const sourceRunsOn = await guest.waitForBeats(3, 5000, guest.sourceConsole, after);
      const stall = await stallOver({ from: clock.startedAt, to: after + SETTLE_MS });
      const sourceCheck = sourceRunsOn ? await guest.sourceConsole.integrityCheck() : undefined;
      return {
        migration,
        guestStall: stall,
        guestDowntimeMs: stall.totalStallMs,
        sourceRunsOn,
        sourceCheck,
        linkBytes: await linkBytes(),
        success: false,
      };
    }

    if (migration.postcopy)
      return await verifyPostcopy(guest, o.destination, migration, stallOver, linkBytes);

    let stall: GuestStall | undefined;
    let holdBasis = 'session end';
    const check = await guest.verifyOnDestination(
      await o.destination.qemuPid(name),
      () => o.destination.resume(name),
      async (resumedAt) => {
        const finish = seen(/^(suspended|resumed)\//);
        const holdFrom = finish ?? sourceCompletedAt ?? clock.endedAt;
        holdBasis =
          finish !== undefined
            ? "the destination's Finish (lifecycle event)"
            : sourceCompletedAt !== undefined
              ? "the source's job-completed event"
              : 'session end';
        stall = await stallOver({ from: clock.startedAt, to: resumedAt + SETTLE_MS }, [
          { from: Math.min(holdFrom, resumedAt), to: resumedAt },
        ]);
      },
    );
    stall ??= await stallOver({ from: clock.startedAt, to: performance.now() });
    return {
      migration,
      guestStall: stall,
      guestDowntimeMs: check.heartbeatResumed ? stall.totalStallMs : undefined,
      verification: {
        ram: check.ram,
        guestCheck: check.guestCheck,
        heartbeatResumed: check.heartbeatResumed,
      },
      linkBytes: await linkBytes(),
      holdBasis,
      success: check.ram.differingPages === 0 && check.guestCheck.ok && check.heartbeatResumed,
    };
  } finally {
    o.destination.off('event', onDestination);
  }
}

/**
 * After post-copy the destination ran before completion: the guest's own check is the
 * verification (as migrateLab). libvirt resumes a post-copied domain itself; one still paused
 * (VIR_MIGRATE_PAUSED) is resumed here.
 */
async function verifyPostcopy(
  guest: LibvirtLabGuest,
  destination: LibvirtClient,
  migration: MigrationResult,
  stallOver: (window: Interval) => Promise<GuestStall>,
  linkBytes: () => Promise<number>,
): Promise<LibvirtLabMigrationResult> {
  const { clock } = migration;
  const state = await destination.domainState(guest.name).catch(() => undefined);
  if (state?.state === 'paused') await destination.resume(guest.name);
  const console = await guest.connectDestinationConsole();
  const heartbeatResumed = await guest.waitForBeats(1, 10_000, console, clock.endedAt);
  const stall = await stallOver({ from: clock.startedAt, to: clock.endedAt + SETTLE_MS });
  const { success, ...checked } = await postcopyVerdict(console, heartbeatResumed, stall);
  return { migration, ...checked, linkBytes: await linkBytes(), success };
}

/** The stall from both consoles (the destination's once it is connected), as migrateLab measures it. */
function measureStall(
  guest: LibvirtLabGuest,
  window: Interval,
  exclude: Interval[],
  precopyEndAt: number,
): Promise<GuestStall> {
  const consoles = [guest.sourceConsole, ...(guest.destinationConsole ? [guest.destinationConsole] : [])];
  return stallOverWindow(consoles, window, exclude, precopyEndAt);
}
