import { randomBytes } from 'node:crypto';
import { rmSync } from 'node:fs';
import { makeLabDir } from './clean.js';
import net from 'node:net';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { RegionSampler } from '../migration/region-sampler.js';
import { MigrationTap, type TapStatus } from '../tap/index.js';
import {
  MigrationSession,
  UNLIMITED_BANDWIDTH_BPS,
  type MigrationResult,
  type SessionOptions,
} from '../migration/session.js';
import {
  QemuVm,
  assertUsableForTcgMigration,
  probeQemuVersion,
  type QemuVersion,
  type VmSpec,
} from '../qemu/index.js';
import { LabError } from '../util/errors.js';
import { measureAppLatency, type AppLatency } from './app-latency.js';
import { waitForAppReady } from './app-ready.js';
import { buildGuestImage, defaultCacheDir, type GuestImage } from './image.js';
import { EmulatedLink, LAB_PREFIX, formatLink, labIdPrefix, type LinkSpec } from './link.js';
import { compareGuestRam, guestRamRanges, type RamComparison, type RamRange } from './ram-compare.js';
import { guestStall, type GuestStall } from './guest-stall.js';
import { HEARTBEAT_PERIOD_MS, SerialConsole } from './serial.js';
import {
  formatLabWorkload as formatWorkload,
  isAppWorkload,
  labWorkloadFootprintMib as workloadFootprintMib,
  type LabWorkloadSpec,
} from '../util/specs.js';

export interface LabOptions {
  /** A synthetic dirty pattern, or a real application (`app:`, parseLabWorkload) on the app image. */
  workload: LabWorkloadSpec;
  ramMiB: number;
  vcpus?: number;
  link: LinkSpec;
  accel?: 'tcg' | 'kvm';
  cacheDir?: string;
  /** Destination's incoming port (default 4444 on the emulated link, a free one on loopback). */
  port?: number;
  /** Put the migration tap between source and destination (exact per-pass page sets). */
  tap?: boolean;
  log?: (line: string) => void;
  /** How long an `app:` workload may take to load its data and start its load (default 600 s). */
  appReadyTimeoutMs?: number;
  /**
   * A link several pairs share (shared-link.ts): the destination joins its netns and listens on
   * `port` there; this lab neither makes nor removes it, and `lab.link` stays unset (its counter
   * would count the other pairs' bytes too).
   */
  sharedLink?: EmulatedLink;
  /**
   * Migrate over n ≥ 2 multifd channels: the `multifd` capability and `multifd-channels` = n set
   * on both sides before the destination listens (absent or 1: QEMU's single stream). QEMU 10.0
   * refuses multifd with post-copy, and the tap follows one stream: neither goes with it.
   */
  multifdChannels?: number;
}

export interface LabInfo {
  id: string;
  workload: string;
  ramMiB: number;
  link: string;
  accel: 'tcg' | 'kvm';
  qemu: string;
  kernelPackage: string;
  bootMs: number;
  /** Set when the pair migrates over multifd channels (LabOptions.multifdChannels ≥ 2). */
  multifdChannels?: number;
}

/** The guest program's memory must fit beside the kernel (~96 MiB) in the guest's RAM. */
export function checkWorkloadFits(workload: LabWorkloadSpec, ramMiB: number): void {
  if (workloadFootprintMib(workload) > ramMiB - 96)
    throw new LabError(
      `workload ${formatWorkload(workload)} needs more RAM than a ${ramMiB} MiB guest has (keep ~96 MiB for the kernel): raise --ram`,
    );
}

/**
 * A lab pair: a source VM running the workload and a destination VM waiting for it (-incoming
 * defer, -S so it stays paused after completion until verified), on an emulated link.
 */
export class Lab {
  private constructor(
    readonly info: LabInfo,
    readonly dir: string,
    readonly source: QemuVm,
    readonly destination: QemuVm,
    readonly sourceConsole: SerialConsole,
    readonly destinationConsole: SerialConsole,
    readonly link: EmulatedLink | undefined,
    /** Where the source sends: the destination, or the tap in front of it. */
    readonly migrateUri: string,
    /** Where the destination listens. */
    readonly incomingUri: string,
    readonly tap: MigrationTap | undefined,
  ) {}

  static async start(opts: LabOptions): Promise<Lab> {
    const accel = opts.accel ?? 'tcg';
    const log = opts.log ?? (() => undefined);
    checkWorkloadFits(opts.workload, opts.ramMiB);
    const multifd = opts.multifdChannels ?? 1;
    if (!Number.isInteger(multifd) || multifd < 1 || multifd > 64)
      throw new LabError(`multifd channels must be a whole number 1…64, not ${opts.multifdChannels}`);
    if (multifd > 1 && opts.tap)
      throw new LabError('the tap follows one migration stream: drop the tap or multifd');
    const version = await probeQemuVersion();
    assertUsableForTcgMigration(version, accel);
    if (accel === 'kvm') await assertKvmUsable();
    const app = isAppWorkload(opts.workload);
    const { image } = await buildGuestImage(opts.cacheDir ?? defaultCacheDir(), app ? 'apps' : 'base');

    const id = labIdPrefix() + randomBytes(3).toString('hex');
    const dir = makeLabDir(id);
    const cleanup: (() => Promise<void>)[] = [async () => rmSync(dir, { recursive: true, force: true })];
    const undo = async () => {
      for (const f of cleanup.reverse()) await f().catch(() => undefined);
    };
    try {
      let link: EmulatedLink | undefined;
      let destAddr = '127.0.0.1';
      let port = opts.port;
      if (opts.sharedLink) {
        destAddr = opts.sharedLink.nsAddr;
        port ??= 4444;
      } else if (
        opts.link.rateMbit !== undefined ||
        opts.link.delayMs !== undefined ||
        opts.link.lossPct !== undefined
      ) {
        link = await EmulatedLink.create(id, opts.link);
        cleanup.push(() => link!.destroy());
        destAddr = link.nsAddr;
        port ??= 4444;
      } else {
        port ??= await freePort();
      }
      const t0 = performance.now();
      const spec = (role: 'src' | 'dst'): VmSpec => ({
        name: `${LAB_PREFIX}-${id}-${role}`,
        ramMiB: opts.ramMiB,
        vcpus: opts.vcpus ?? 1,
        accel,
        kernel: image.kernel,
        initrd: image.initrd,
        append: `console=ttyS0 quiet panic=-1 kvmw=${formatWorkload(opts.workload)}`,
        qmpSocket: path.join(dir, `${role}.qmp`),
        serialSocket: path.join(dir, `${role}.serial`),
        serialLog: path.join(dir, `${role}.console.log`),
        stderrLog: path.join(dir, `${role}.stderr.log`),
        ...(role === 'dst'
          ? { incoming: 'defer' as const, startPaused: true, netns: (link ?? opts.sharedLink)?.netns }
          : {}),
      });
      const source = await QemuVm.launch(spec('src'));
      cleanup.push(() => source.destroy());
      const sourceConsole = await SerialConsole.connect(source.spec.serialSocket);
      cleanup.push(async () => sourceConsole.close());
      const destination = await QemuVm.launch(spec('dst'));
      cleanup.push(() => destination.destroy());
      const destinationConsole = await SerialConsole.connect(destination.spec.serialSocket);
      cleanup.push(async () => destinationConsole.close());

      if (multifd > 1) await enableMultifd([source, destination], multifd);
      await waitForHeartbeats(sourceConsole, 3, 90_000, source);
      // A real application starts beside the heartbeat: initdb, loading the database, filling the cache.
      if (app) await waitForAppReady(sourceConsole, source, opts.appReadyTimeoutMs ?? 600_000, log);
      const bootMs = performance.now() - t0;
      log(
        `lab ${id}: ${formatWorkload(opts.workload)} on ${opts.ramMiB} MiB, link ${formatLink(opts.link)}, booted in ${(bootMs / 1000).toFixed(1)} s`,
      );
      const info: LabInfo = {
        id,
        workload: formatWorkload(opts.workload),
        ramMiB: opts.ramMiB,
        link: formatLink(opts.link),
        accel,
        qemu: version.text,
        kernelPackage: image.kernelPackage,
        bootMs,
        ...(multifd > 1 ? { multifdChannels: multifd } : {}),
      };
      let tap: MigrationTap | undefined;
      if (opts.tap) {
        // The source sends to the tap over loopback; the tap's forward leg crosses the emulated link.
        tap = await MigrationTap.start({
          upstreamHost: destAddr,
          upstreamPort: port,
          ramBytes: opts.ramMiB * 2 ** 20,
        });
        cleanup.push(() => tap!.close());
      }
      const incomingUri = `tcp:${destAddr}:${port}`;
      const lab = new Lab(
        info,
        dir,
        source,
        destination,
        sourceConsole,
        destinationConsole,
        link,
        tap?.uri ?? incomingUri,
        incomingUri,
        tap,
      );
      lab.teardown = undo;
      return lab;
    } catch (err) {
      await undo();
      throw err;
    }
  }

  private teardown: () => Promise<void> = async () => undefined;

  /** Stops both VMs and removes the link and temp dir. Safe to call twice. */
  async destroy(): Promise<void> {
    const t = this.teardown;
    this.teardown = async () => undefined;
    await t();
  }

  async ramRanges(vm: QemuVm): Promise<RamRange[]> {
    return guestRamRanges(vm.qmp, this.info.ramMiB * 2 ** 20);
  }
}

export interface Verification {
  /** Byte-for-byte comparison of source and destination guest RAM at switchover (not after post-copy). */
  ram: RamComparison | undefined;
  ramSkipped?: string;
  /** The guest's own check, run on the destination after `cont`. */
  guestCheck: { ok: boolean; line: string };
  heartbeatResumed: boolean;
}

export interface LabMigrationResult {
  lab: LabInfo;
  migration: MigrationResult;
  /**
   * What the guest felt, from both consoles' heartbeats over the migration window (guestStall()),
   * the time we held the destination paused to verify it cut out. Every run, whatever the outcome.
   */
  guestStall?: GuestStall;
  /** The guest's total stall, ms (= guestStall.totalStallMs; the name older readers use). */
  guestDowntimeMs?: number;
  verification?: Verification;
  /** After a cancel or failure: the source's heartbeat went on and its own integrity check passed. */
  sourceRunsOn?: boolean;
  sourceCheck?: { ok: boolean; line: string };
  /** Bytes the source pushed into the emulated link during the migration. */
  linkBytes?: number;
  /** What the tap saw, when it was on. */
  tap?: TapStatus;
  /**
   * A real application's (`app:` workloads) own request latency over the same window as
   * guestStall, on the host's clock (app-latency.ts), with its baseline before the migration.
   */
  appLatency?: AppLatency;
  success: boolean;
}

export interface LabMigrationHooks {
  /** Runs with the destination paused after completion, before the RAM comparison (tests use it to break things). */
  beforeVerify?: (lab: Lab) => Promise<void>;
  /**
   * Post-copy with the destination held paused (-S) until completion: no page is demand-faulted,
   * the source pushes every page it still held, and the destination's RAM is compared with the
   * source's byte for byte as after pre-copy, then resumed. A check of what post-copy moves, not
   * a benchmark: the guest feels the whole post-copy phase as a stop.
   */
  holdDestinationInPostcopy?: boolean;
}

/** Migrates the lab's guest under a policy and verifies the outcome, whatever it is. */
export async function migrateLab(
  lab: Lab,
  session: Omit<
    SessionOptions,
    'source' | 'destination' | 'migrateUri' | 'incomingUri' | 'resumeDestination'
  >,
  hooks: LabMigrationHooks = {},
): Promise<LabMigrationResult> {
  if (lab.info.multifdChannels && session.postcopyPermitted)
    throw new LabError('QEMU refuses post-copy with multifd ("Postcopy is not yet compatible with multifd")');
  // The guest's pace before the migration is the baseline its slowdown is measured against.
  const firstBeat = lab.sourceConsole.heartbeats[0]?.at;
  if (firstBeat !== undefined && firstBeat + BASELINE_MS > performance.now())
    await sleep(firstBeat + BASELINE_MS - performance.now());
  const tx0 = await lab.link?.txBytes();
  const migration = await new MigrationSession({
    ...session,
    source: lab.source.qmp,
    destination: lab.destination.qmp,
    migrateUri: lab.migrateUri,
    incomingUri: lab.incomingUri,
    resumeDestination: false,
    startDestinationOnPostcopy: !hooks.holdDestinationInPostcopy,
    destinationAlive: () => lab.destination.alive,
    // The lab's link is shaped in the kernel (tc); QEMU's own cap would only hide it.
    maxBandwidthBps: session.maxBandwidthBps ?? UNLIMITED_BANDWIDTH_BPS,
    // Region sets: the tap when it is on (exact, nearly free); else, for the policies that want
    // them, sampling the source's RAM (the lab runs on this host as root).
    regionSource: session.regionSource ?? lab.tap,
    regionSampler: async () => new RegionSampler(lab.source.pid, await lab.ramRanges(lab.source)),
  }).run();
  // The session reconnects on its own when its QMP connection drops; the lab's client is then gone.
  if (lab.source.qmp.isClosed && lab.source.alive) await lab.source.reconnectQmp();
  // The source says `completed` once everything is in its socket; read the link counter only
  // once the destination has it all (after verification) or the migration is over.
  const linkBytesNow = async () => (tx0 === undefined ? undefined : (await lab.link!.txBytes()) - tx0);
  const { clock } = migration;

  if (migration.outcome !== 'completed') {
    // The source must run on: its heartbeat continues and its memory is intact.
    const after = performance.now();
    const sourceRunsOn = await beatsArrive(lab.sourceConsole, after, 3, 5000);
    const window = { from: clock.startedAt, to: after + SETTLE_MS };
    const stall = await measureStall(lab, migration, window);
    const appLatency = await measureApp(lab, migration, window);
    const sourceCheck = sourceRunsOn ? await lab.sourceConsole.integrityCheck() : undefined;
    const linkBytes = await linkBytesNow();
    return {
      lab: lab.info,
      migration,
      guestStall: stall,
      guestDowntimeMs: stall.totalStallMs,
      sourceRunsOn,
      sourceCheck,
      linkBytes,
      tap: lab.tap?.status(),
      ...(appLatency ? { appLatency } : {}),
      success: false,
    };
  }

  if (migration.postcopy && !hooks.holdDestinationInPostcopy)
    return verifyPostcopy(lab, migration, await linkBytesNow());

  await hooks.beforeVerify?.(lab);
  const [srcRanges, dstRanges] = await Promise.all([
    lab.ramRanges(lab.source),
    lab.ramRanges(lab.destination),
  ]);
  const ram = await compareGuestRam(
    { pid: lab.source.pid, ranges: srcRanges },
    { pid: lab.destination.pid, ranges: dstRanges },
  );
  const contAt = performance.now();
  await lab.destination.qmp.execute('cont');
  const heartbeatResumed = await beatsArrive(lab.destinationConsole, contAt, 1, 10_000);
  // The guest stopped beating on the source at the switch and beats again on the destination after
  // `cont`; the verification hold in between (destination paused by -S) is ours, not the
  // migration's, so it is cut out. Measured before the integrity check, which pauses the workload.
  const arrivedAt = clock.destinationCompletedAt ?? clock.sourceCompletedAt ?? clock.endedAt;
  const window = { from: clock.startedAt, to: contAt + SETTLE_MS };
  const hold = [{ from: Math.min(arrivedAt, contAt), to: contAt }];
  const stall = await measureStall(lab, migration, window, hold);
  const appLatency = await measureApp(lab, migration, window, hold);
  const guestCheck = heartbeatResumed
    ? await lab.destinationConsole.integrityCheck()
    : { ok: false, line: 'no heartbeat from the destination after cont' };
  const verification: Verification = { ram, guestCheck, heartbeatResumed };
  const linkBytes = await linkBytesNow();
  return {
    lab: lab.info,
    migration,
    guestStall: stall,
    guestDowntimeMs: heartbeatResumed ? stall.totalStallMs : undefined,
    verification,
    linkBytes,
    tap: lab.tap?.status(),
    ...(appLatency ? { appLatency } : {}),
    success: ram.differingPages === 0 && guestCheck.ok && heartbeatResumed,
  };
}

/**
 * After post-copy the destination ran before the migration completed, so RAM cannot be compared
 * with the source's at one instant: the guest's own check is the verification. The guest felt
 * the switch and every remote page fault as silences in its heartbeat, on either side: the same
 * total stall as every other run.
 */
async function verifyPostcopy(
  lab: Lab,
  migration: MigrationResult,
  linkBytes: number | undefined,
): Promise<LabMigrationResult> {
  const { clock } = migration;
  const heartbeatResumed = await beatsArrive(lab.destinationConsole, clock.endedAt, 1, 10_000);
  const window = { from: clock.startedAt, to: clock.endedAt + SETTLE_MS };
  const stall = await measureStall(lab, migration, window);
  const appLatency = await measureApp(lab, migration, window);
  const { success, ...checked } = await postcopyVerdict(lab.destinationConsole, heartbeatResumed, stall);
  return {
    lab: lab.info,
    migration,
    ...checked,
    linkBytes,
    tap: lab.tap?.status(),
    ...(appLatency ? { appLatency } : {}),
    success,
  };
}

/**
 * After post-copy the verification is the guest's own check on the destination (run only if its
 * heartbeat came back); the stall counts only then. Shared with the libvirt lab.
 */
export async function postcopyVerdict(
  destinationConsole: SerialConsole,
  heartbeatResumed: boolean,
  stall: GuestStall,
): Promise<
  Required<Pick<LabMigrationResult, 'guestStall' | 'verification'>> &
    Pick<LabMigrationResult, 'guestDowntimeMs' | 'success'>
> {
  const guestCheck = heartbeatResumed
    ? await destinationConsole.integrityCheck()
    : { ok: false, line: 'no heartbeat from the destination after post-copy' };
  return {
    guestStall: stall,
    guestDowntimeMs: heartbeatResumed ? stall.totalStallMs : undefined,
    verification: {
      ram: undefined,
      ramSkipped: 'post-copy: the destination ran before completion',
      guestCheck,
      heartbeatResumed,
    },
    success: guestCheck.ok && heartbeatResumed,
  };
}

/** After completion (or the end), how long the window runs on: late stalls as the guest settles count. */
export const SETTLE_MS = 500;
/** The guest beats this long on the source before `migrate`, so slowdown has a baseline. */
export const BASELINE_MS = 1000;

/** When pre-copy ended: the policy's first forcing action, else QEMU's own completion. */
export function precopyEnd(m: MigrationResult): number {
  const forcing = m.decisions.find(
    (d) => d.action.kind === 'switchover' || d.action.kind === 'postcopy' || d.action.kind === 'pause',
  );
  const completed = m.clock.sourceCompletedAt ?? m.clock.endedAt;
  return forcing ? Math.min(m.clock.startedAt + forcing.atMs, completed) : completed;
}

/**
 * Waits out the window (and up to 2 s for a beat after it, so its last silence is closed by the
 * guest, not by us), then measures the stall from both consoles.
 */
async function measureStall(
  lab: Lab,
  m: MigrationResult,
  window: { from: number; to: number },
  exclude: { from: number; to: number }[] = [],
): Promise<GuestStall> {
  return stallOverWindow([lab.sourceConsole, lab.destinationConsole], window, exclude, precopyEnd(m));
}

/**
 * Waits out the window (and up to 2 s for a beat after it on any console), then the stall from
 * every console's heartbeats (source first). Shared with the libvirt lab.
 */
export async function stallOverWindow(
  consoles: SerialConsole[],
  window: { from: number; to: number },
  exclude: { from: number; to: number }[],
  precopyEndAt: number,
): Promise<GuestStall> {
  const wait = window.to - performance.now();
  if (wait > 0) await sleep(wait);
  const after = (c: SerialConsole) => (c.heartbeats.at(-1)?.at ?? -Infinity) >= window.to;
  const deadline = performance.now() + 2000;
  while (!consoles.some(after) && performance.now() < deadline) await sleep(20);
  return guestStall({
    beats: consoles.flatMap((c) => c.heartbeats),
    periodMs: HEARTBEAT_PERIOD_MS,
    window,
    exclude,
    precopyEnd: precopyEndAt,
  });
}

/** A real application's latency over the stall's window (undefined for synthetic workloads). */
async function measureApp(
  lab: Lab,
  m: MigrationResult,
  window: { from: number; to: number },
  exclude: { from: number; to: number }[] = [],
): Promise<AppLatency | undefined> {
  if (!lab.info.workload.startsWith('app:')) return undefined;
  return measureAppLatency({
    streams: [lab.sourceConsole.app, lab.destinationConsole.app],
    window,
    exclude,
    precopyEnd: precopyEnd(m),
  });
}

/** multifd with n channels on both sides (before the destination's migrate-incoming). */
async function enableMultifd(vms: QemuVm[], channels: number): Promise<void> {
  for (const vm of vms) {
    await vm.qmp.execute('migrate-set-capabilities', {
      capabilities: [{ capability: 'multifd', state: true }],
    });
    await vm.qmp.execute('migrate-set-parameters', { 'multifd-channels': channels });
  }
}

async function waitForHeartbeats(c: SerialConsole, n: number, timeoutMs: number, vm: QemuVm): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  while (c.heartbeats.length < n) {
    const err = c.lines.find((l) => l.text.startsWith('ERROR'));
    if (err) throw new LabError(`the guest workload failed: ${err.text.slice(6)}`);
    if (!vm.alive) throw new LabError(`QEMU (${vm.spec.name}) exited while the guest booted`);
    if (performance.now() > deadline)
      throw new LabError(
        `the guest did not start its workload within ${timeoutMs / 1000} s (see ${vm.spec.serialLog})`,
      );
    await sleep(20);
  }
}

async function beatsArrive(c: SerialConsole, since: number, n: number, timeoutMs: number): Promise<boolean> {
  const deadline = performance.now() + timeoutMs;
  while (c.beatsAfter(since).length < n) {
    if (performance.now() > deadline) return false;
    await sleep(20);
  }
  return true;
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(port));
    });
  });
}

async function assertKvmUsable(): Promise<void> {
  const { access, constants } = await import('node:fs/promises');
  try {
    await access('/dev/kvm', constants.R_OK | constants.W_OK);
  } catch {
    throw new LabError(
      '--accel kvm needs /dev/kvm (readable and writable); this host has none: use --accel tcg',
    );
  }
}

export type { GuestImage, QemuVersion };
