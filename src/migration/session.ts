import { setTimeout as sleep } from 'node:timers/promises';
import type { ResolvedPolicy } from '../policy/registry.js';
import {
  MAX_DOWNTIME_LIMIT_MS,
  type Action,
  type ControllerState,
  type PassRecord,
  type PolicySetup,
  type RegionHistory,
} from '../policy/types.js';
import { QmpClient, QmpConnectionError, QmpError, QmpTimeoutError, type QmpEvent } from '../qmp/index.js';
import { MigrationSetupError } from '../util/errors.js';
import { PassTracker } from '../core/pass-tracker.js';
import { MigrationInfoSchema, TERMINAL_STATUSES, type MigrationInfo } from '../core/sample.js';
import type { RegionSource } from './region-sampler.js';

export { MigrationSetupError };

/** A max-bandwidth so high that the link, not QEMU, sets the rate (bytes/s): what the lab uses. */
export const UNLIMITED_BANDWIDTH_BPS = 100e9 / 8;

export interface Decision {
  atMs: number;
  pass: number;
  action: Action;
}

export interface Progress {
  elapsedMs: number;
  status: string;
  pass: number;
  remainingBytes: number;
  transferredBytes: number;
  ramBytes: number;
  bandwidthBps: number;
  dirtyPagesRate: number;
  lastDecision?: Decision;
}

export type Outcome = 'completed' | 'failed' | 'cancelled';
/** Where the guest runs when the controller is done; `none`: the operator decides. */
export type GuestRunsOn = 'source' | 'destination' | 'none';

export interface MigrationResult {
  outcome: Outcome;
  guestRunsOn: GuestRunsOn;
  /** Why it ended this way, in words. */
  reason: string;
  qemuStatus: string;
  policy: string;
  policyConfig: unknown;
  downtimeBudgetMs: number;
  deadlineMs: number;
  ramBytes: number;
  /** QEMU's `total-time`, ms. */
  totalTimeMs: number;
  /** From `migrate` to the end as this controller saw it, ms. */
  wallMs: number;
  /** QEMU's `downtime` (stop-and-copy pause), ms. */
  qemuDowntimeMs: number;
  setupTimeMs: number;
  transferredBytes: number;
  passes: PassRecord[];
  decisions: Decision[];
  /** From the first forcing action (switchover/postcopy/pause) to QEMU leaving `active`, ms. */
  actionLatencyMs?: number;
  /** Which region source fed the policy, if any. */
  regionSource?: 'tap' | 'sampling' | 'model';
  /** The migration went through post-copy (the guest ran on the destination before completion). */
  postcopy: boolean;
  /** Controller CPU time ÷ wall time, % of one core. */
  controllerCpuPct: number;
  /** calc-dirty-rate results (working-set points over time), when sampled. */
  workingSetSamples?: { seconds: number; bytes: number; atMs: number }[];
  /** performance.now() clock: when `migrate` was issued, and when each side reported completion. */
  clock: { startedAt: number; sourceCompletedAt?: number; destinationCompletedAt?: number; endedAt: number };
  error?: string;
}

export interface SessionOptions {
  source: QmpClient;
  destination: QmpClient;
  /** URI the source sends to, e.g. tcp:10.200.0.2:4444. */
  migrateUri: string;
  /** If set, `migrate-incoming` is issued on the destination (started with -incoming defer). */
  incomingUri?: string;
  policy: ResolvedPolicy;
  downtimeBudgetMs: number;
  deadlineMs: number;
  pollMs?: number;
  postcopyPermitted?: boolean;
  onDeadline?: 'abort' | 'switchover' | 'postcopy';
  /** Region-level dirty sets (tap or sampling), read at every pass end and every `regionSampleMs`. */
  regionSource?: RegionSource;
  /**
   * A costlier region source (e.g. sampling the source's RAM), created only when there is no
   * `regionSource` and the policy wants region sets; the session closes it.
   */
  regionSampler?: () => Promise<RegionSource>;
  /** How often the region source is read while a pass runs (default 250 ms). */
  regionSampleMs?: number;
  /** Sample the working-set curve with calc-dirty-rate over these windows even if the policy does not ask (`record`). */
  workingSetWindowsMs?: number[];
  /**
   * QEMU's `max-bandwidth` for this migration, bytes/s. Unset: whatever the source already has
   * (the operator's cap is never raised behind their back).
   */
  maxBandwidthBps?: number;
  /** QEMU's `max-postcopy-bandwidth` (bytes/s) for the post-copy phase. Unset: left as it is. */
  postcopyBandwidthBps?: number;
  /** Abort when no bytes move for this long (default 20 s): a dead link never fails by itself. */
  stallTimeoutMs?: number;
  /** The destination was started with -S: start it when post-copy begins (the guest must run there). */
  startDestinationOnPostcopy?: boolean;
  /** `cont` the destination after completion when it is left paused (default true). */
  resumeDestination?: boolean;
  signal?: AbortSignal;
  onProgress?: (p: Progress) => void;
  onDecision?: (d: Decision) => void;
}

/**
 * One migration between a source and a destination QEMU: observe every pass, ask the policy,
 * apply its actions, and on every way out leave exactly one guest able to run.
 */
export class MigrationSession {
  private readonly tracker = new PassTracker();
  private readonly decisions: Decision[] = [];
  private readonly applied: ControllerState['actions'] = [];
  private downtimeLimitMs = 0;
  private ramBytes = 0;
  private startedAt = 0;
  private sourceWasRunning = true;
  private statusChangedAt: { status: string; at: number }[] = [];
  private destinationCompletedAt: number | undefined;
  private firstForcingAt: number | undefined;
  private watermark = { remainingBytes: Number.POSITIVE_INFINITY, atMs: 0 };
  private lastProgress = { transferred: -1, atMs: 0 };
  private postcopyEnabled = false;
  private destinationStarted = false;
  private regions: RegionHistory | undefined;
  private regionsThisPass = new Set<number>();
  private lastRegionSample = 0;
  /** calc-dirty-rate results, oldest first (the last 64). */
  private workingSet: { seconds: number; bytes: number; atMs: number }[] = [];
  private stopSampling = false;
  private regionSource: RegionSource | undefined;
  private wake: (() => void) | undefined;
  private readonly pollMs: number;

  /** The source's QMP connection: the caller's, or ours after a reconnect (then we close it). */
  private src: QmpClient;
  private onSrcEvent: ((e: QmpEvent) => void) | undefined;

  constructor(private readonly opts: SessionOptions) {
    this.pollMs = opts.pollMs ?? 50;
    this.src = opts.source;
  }

  async run(): Promise<MigrationResult> {
    const { source: src, destination: dst, policy } = this.opts;
    // Post-copy needs the user's consent (--allow-postcopy), except with a policy that is
    // nothing but post-copy (choosing it is the consent); the capability is what the policy asks for.
    const setup = policy.policy.setup(policy.config, {
      downtimeBudgetMs: this.opts.downtimeBudgetMs,
      postcopyPermitted: this.opts.postcopyPermitted ?? false,
    });
    await this.preflight();
    await this.configure(setup);
    const rs = this.opts.regionSource ?? (setup.wantsRegions ? await this.opts.regionSampler?.() : undefined);
    this.regionSource = rs;
    if (rs) {
      this.regions = {
        source: rs.source,
        regionBytes: rs.regionBytes,
        regionCount: rs.regionCount,
        perPass: [],
      };
    }

    const onSrcEvent = (e: QmpEvent) => {
      if (e.event === 'MIGRATION')
        this.statusChangedAt.push({ status: String(e.data.status), at: e.receivedAt });
      if (e.event === 'MIGRATION' || e.event === 'MIGRATION_PASS') this.wake?.();
    };
    const onDstEvent = (e: QmpEvent) => {
      if (e.event === 'MIGRATION' && e.data.status === 'completed')
        this.destinationCompletedAt = e.receivedAt;
    };
    this.onSrcEvent = onSrcEvent;
    src.on('event', onSrcEvent);
    dst.on('event', onDstEvent);
    const cpu0 = process.cpuUsage();
    this.startedAt = performance.now();
    try {
      await src.execute('migrate', { uri: this.opts.migrateUri });
      const windows = this.opts.workingSetWindowsMs ?? setup.workingSetWindowsMs;
      const sampling = windows?.length ? this.sampleWorkingSet(windows) : undefined;
      const result = await this.loop(cpu0);
      this.stopSampling = true;
      await sampling;
      if (result.outcome === 'failed' && result.transferredBytes === 0 && result.decisions.length === 0) {
        // Never connected: nothing changed on either side, so this is bad input, not a failed migration.
        throw new MigrationSetupError(
          `cannot reach the destination at ${this.opts.migrateUri} (${result.error ?? result.reason}): is it listening? ` +
            'Start it with -incoming tcp:HOST:PORT, or with -incoming defer and pass --incoming',
        );
      }
      return result;
    } finally {
      this.stopSampling = true;
      if (rs && rs !== this.opts.regionSource) rs.close();
      this.src.off('event', onSrcEvent);
      if (this.src !== src) this.src.close();
      dst.off('event', onDstEvent);
    }
  }

  /** Checks both ends before touching anything. */
  private async preflight(): Promise<void> {
    const { source: src, destination: dst } = this.opts;
    const [srcStatus, dstStatus] = await Promise.all([
      src.execute<{ status: string }>('query-status'),
      dst.execute<{ status: string }>('query-status'),
    ]);
    if (dstStatus.status !== 'inmigrate') {
      throw new MigrationSetupError(
        `the destination is not waiting for a migration (its status is '${dstStatus.status}'): start it with -incoming defer or -incoming tcp:HOST:PORT`,
      );
    }
    if (!['running', 'paused', 'prelaunch'].includes(srcStatus.status)) {
      throw new MigrationSetupError(`the source cannot be migrated in status '${srcStatus.status}'`);
    }
    this.sourceWasRunning = srcStatus.status === 'running';
    const srcMigrate = MigrationInfoSchema.parse(await src.execute('query-migrate'));
    if (srcMigrate.status && !TERMINAL_STATUSES.has(srcMigrate.status) && srcMigrate.status !== 'none') {
      throw new MigrationSetupError(`the source is already migrating (status '${srcMigrate.status}')`);
    }
    const [srcMem, dstMem] = await Promise.all(
      [src, dst].map((q) => q.execute<{ 'base-memory': number }>('query-memory-size-summary')),
    );
    if (srcMem!['base-memory'] !== dstMem!['base-memory']) {
      const mib = (b: number) => `${Math.round(b / 2 ** 20)} MiB`;
      throw new MigrationSetupError(
        `source has ${mib(srcMem!['base-memory'])} of RAM, destination ${mib(dstMem!['base-memory'])}: start the destination with the same -m`,
      );
    }
    this.ramBytes = srcMem!['base-memory'];
  }

  private async configure(setup: PolicySetup): Promise<void> {
    const { source: src, destination: dst } = this.opts;
    const caps = (postcopy: boolean, autoConverge: boolean) => [
      { capability: 'events', state: true },
      { capability: 'postcopy-ram', state: postcopy },
      ...(autoConverge ? [{ capability: 'auto-converge', state: true }] : []),
    ];
    await src.execute('migrate-set-capabilities', { capabilities: caps(setup.postcopy, setup.autoConverge) });
    await dst.execute('migrate-set-capabilities', { capabilities: caps(setup.postcopy, false) });
    this.downtimeLimitMs = setup.downtimeLimitMs;
    this.postcopyEnabled = setup.postcopy;
    await src.execute('migrate-set-parameters', {
      'downtime-limit': Math.round(setup.downtimeLimitMs),
      ...(this.opts.postcopyBandwidthBps !== undefined
        ? { 'max-postcopy-bandwidth': Math.round(this.opts.postcopyBandwidthBps) }
        : {}),
      ...(this.opts.maxBandwidthBps !== undefined
        ? { 'max-bandwidth': Math.round(this.opts.maxBandwidthBps) }
        : {}),
      ...setup.parameters,
    });
    if (this.opts.incomingUri) {
      try {
        await dst.execute('migrate-incoming', { uri: this.opts.incomingUri });
      } catch (err) {
        if (err instanceof QmpError && /in use/i.test(err.desc)) {
          throw new MigrationSetupError(
            `the destination cannot listen on ${this.opts.incomingUri}: the port is already in use; choose another port`,
          );
        }
        throw err;
      }
    }
  }

  /**
   * The QMP connection to the source dropped while QEMU runs on: open a new one (QEMU serves one
   * client at a time, and the old one is gone) and carry on watching. Throws if it cannot.
   */
  private async reconnectSource(cause: Error): Promise<void> {
    const old = this.src;
    old.close();
    // QEMU answers a new client only between stop-and-copy work, so allow it a while.
    const until = performance.now() + 60_000;
    for (;;) {
      try {
        this.src = await QmpClient.connect(old.target, { timeoutMs: 5000 });
        break;
      } catch (err) {
        if (performance.now() > until) throw err;
        await sleep(200);
      }
    }
    old.off('event', this.onSrcEvent!);
    this.src.on('event', this.onSrcEvent!);
    const d: Decision = {
      atMs: performance.now() - this.startedAt,
      pass: this.tracker.currentPass,
      action: {
        kind: 'continue',
        reason: `lost the QMP connection to the source (${cause.message}); reconnected`,
      },
    };
    this.decisions.push(d);
    this.opts.onDecision?.(d);
  }

  private async loop(cpu0: NodeJS.CpuUsage): Promise<MigrationResult> {
    const { policy } = this.opts;
    let info: MigrationInfo = {};
    let deadlineHandled = false;
    let endReason: string | undefined;
    let forcedOutcome: Outcome | undefined;
    let error: string | undefined;
    /** One poll: observe, decide, act. A dropped QMP connection surfaces here as QmpConnectionError. */
    const iterate = async (woke: Promise<void>): Promise<'done' | 'next'> => {
      info = MigrationInfoSchema.parse(await this.src.execute('query-migrate'));
      const now = performance.now();
      const elapsedMs = now - this.startedAt;
      const status = info.status ?? 'none';
      // Even the terminal sample: syncs may have happened since the last poll.
      const passesBefore = this.tracker.passes.length;
      const atPassEnd = this.tracker.observe(info, elapsedMs, this.downtimeLimitMs);
      this.sampleRegions(now, this.tracker.passes.length - passesBefore);
      if (TERMINAL_STATUSES.has(status)) return 'done';
      if (status === 'postcopy-paused') {
        // The destination or the link went away after the guest moved: each side holds only part
        // of its memory. Nothing can bring it back here (QEMU's postcopy-recover needs the same
        // destination); say so plainly rather than resume a source whose memory is stale.
        forcedOutcome = 'failed';
        endReason =
          'the destination or the link was lost during post-copy: THE GUEST IS LOST — neither side holds all of its memory; the source stays paused (its memory is stale)';
        return 'done';
      }
      this.track(info, elapsedMs);
      if (status === 'postcopy-active') await this.startDestinationForPostcopy();
      const state = this.state(info, elapsedMs, atPassEnd);
      const stalledMs = elapsedMs - this.lastProgress.atMs;

      if (this.opts.signal?.aborted && !endReason) {
        endReason =
          status === 'postcopy-active' || this.postcopyStarted()
            ? 'interrupted during post-copy, which cannot be cancelled (the guest runs on the destination): waited for it to complete'
            : 'interrupted: cancelled by the user';
        await this.apply({ kind: 'abort', reason: endReason }, state, true);
      } else if (elapsedMs >= this.opts.deadlineMs && !deadlineHandled) {
        deadlineHandled = true;
        const kind = this.opts.onDeadline ?? 'abort';
        endReason = `deadline of ${Math.round(this.opts.deadlineMs / 1000)} s reached → ${kind}`;
        await this.apply({ kind, reason: endReason } as Action, state, true);
      } else if (stalledMs > (this.opts.stallTimeoutMs ?? 20_000) && status !== 'postcopy-active') {
        endReason = `no bytes sent for ${(stalledMs / 1000).toFixed(0)} s (link down?) → abort`;
        await this.apply({ kind: 'abort', reason: endReason }, state, true);
      } else if (elapsedMs >= this.opts.deadlineMs * 1.5 + 30_000 && status !== 'postcopy-active') {
        endReason = 'the deadline action did not finish the migration → abort';
        await this.apply({ kind: 'abort', reason: endReason }, state, true);
      } else if (status === 'active' || status === 'postcopy-active' || status === 'setup') {
        const action = policy.policy.decide(state, policy.config);
        if (action.kind !== 'continue' || atPassEnd) this.log(state, action);
        if (action.kind !== 'continue') await this.apply(action, state, false);
      }
      this.opts.onProgress?.(this.progress(info, state));
      await Promise.race([sleep(this.pollMs), woke]);
      return 'next';
    };
    let reconnects = 0;
    let busySince: number | undefined;
    try {
      for (;;) {
        const woke = new Promise<void>((r) => (this.wake = r));
        try {
          if ((await iterate(woke)) === 'done') break;
          busySince = undefined;
        } catch (err) {
          if (err instanceof QmpTimeoutError) {
            // QEMU holds its big lock through the whole stop-and-copy and answers nothing until
            // it ends: on a slow link that is many seconds. The connection is fine; keep asking.
            busySince ??= performance.now();
            if (performance.now() - busySince < this.opts.deadlineMs + 600_000) continue;
          }
          if (!(err instanceof QmpConnectionError) || ++reconnects > 3) throw err;
          await this.reconnectSource(err);
        }
      }
    } catch (err) {
      error = (err as Error).message;
      forcedOutcome = 'failed';
      endReason = `controller lost contact with the source: ${error}`;
      await this.src.execute('migrate_cancel').catch(() => undefined);
    }
    this.tracker.finish(info, performance.now() - this.startedAt);
    const status = info.status ?? 'unknown';
    let outcome: Outcome =
      forcedOutcome ?? (status === 'completed' ? 'completed' : status === 'failed' ? 'failed' : 'cancelled');
    if (outcome === 'completed') {
      // The source says `completed` once the last bytes are in its socket; the guest has moved only
      // when the destination has loaded them.
      const dst = await this.awaitDestination();
      if (!dst.ok) {
        outcome = 'failed';
        endReason = `the source finished but the destination did not load the guest (${dst.why}); the source guest is resumed`;
        error = dst.why;
      }
    }
    const endedAt = performance.now();
    await this.restore(outcome);
    const cpu = process.cpuUsage(cpu0);
    const wallMs = endedAt - this.startedAt;
    return {
      outcome,
      guestRunsOn: outcome === 'completed' ? 'destination' : this.postcopyStarted() ? 'none' : 'source',
      reason:
        endReason ??
        (outcome === 'completed'
          ? 'QEMU completed the migration'
          : `QEMU reports ${status}${info['error-desc'] ? `: ${info['error-desc']}` : ''}`),
      qemuStatus: status,
      policy: policy.policy.name,
      policyConfig: policy.config,
      downtimeBudgetMs: this.opts.downtimeBudgetMs,
      deadlineMs: this.opts.deadlineMs,
      ramBytes: this.ramBytes,
      totalTimeMs: info['total-time'] ?? wallMs,
      wallMs,
      qemuDowntimeMs: info.downtime ?? 0,
      setupTimeMs: info['setup-time'] ?? 0,
      transferredBytes: info.ram?.transferred ?? this.tracker.passes.reduce((s, p) => s + p.bytesSent, 0),
      passes: this.tracker.passes,
      decisions: this.decisions,
      actionLatencyMs: this.actionLatency(),
      regionSource: this.regions?.source,
      postcopy: this.postcopyStarted(),
      controllerCpuPct: ((cpu.user + cpu.system) / 1000 / wallMs) * 100,
      workingSetSamples: this.workingSet.length ? [...this.workingSet] : undefined,
      clock: {
        startedAt: this.startedAt,
        sourceCompletedAt: this.statusChangedAt.find((s) => s.status === 'completed')?.at,
        destinationCompletedAt: this.destinationCompletedAt,
        endedAt,
      },
      ...(error || info['error-desc'] ? { error: error ?? info['error-desc'] } : {}),
    };
  }

  /** Accumulates the regions dirtied during the pass under way; files them when passes close. */
  private sampleRegions(now: number, passesClosed: number): void {
    const rs = this.regionSource;
    if (!this.regions || !rs) return;
    if (passesClosed > 0 || now - this.lastRegionSample >= (this.opts.regionSampleMs ?? 250)) {
      for (const r of rs.changed()) this.regionsThisPass.add(r);
      this.lastRegionSample = now;
    }
    // Syncs closer together than one sample share what was seen.
    for (let k = 0; k < passesClosed; k++) this.regions.perPass.push([...this.regionsThisPass]);
    if (passesClosed > 0) this.regionsThisPass = new Set();
  }

  /**
   * Measures points of the working-set curve in the background with QEMU's `calc-dirty-rate`
   * (page-sampling: hashes sampled pages at the start and end of a window; the changed share × RAM
   * is what the guest dirtied within it). Cycles through the windows until the migration ends.
   */
  private async sampleWorkingSet(windowsMs: number[]): Promise<void> {
    const src = () => this.src;
    try {
      while (!this.stopSampling) {
        for (const ms of windowsMs) {
          if (this.stopSampling) return;
          await src().execute('calc-dirty-rate', {
            'calc-time': ms,
            'calc-time-unit': 'millisecond',
            mode: 'page-sampling',
          });
          let r: { status: string; 'dirty-rate'?: number };
          do {
            await sleep(Math.min(50, ms / 2));
            r = await src().execute('query-dirty-rate', { 'calc-time-unit': 'millisecond' });
          } while (r.status !== 'measured' && !this.stopSampling);
          if (r['dirty-rate'] !== undefined) {
            const seconds = ms / 1000;
            const bytes = Math.min(this.ramBytes, r['dirty-rate'] * 2 ** 20 * seconds);
            this.workingSet.push({ seconds, bytes, atMs: performance.now() - this.startedAt });
            if (this.workingSet.length > 64) this.workingSet.shift();
          }
        }
        // Dense enough to see a bursty guest's quiet phases; each sample costs QEMU microseconds.
        await sleep(250);
      }
    } catch {
      // An older QEMU without millisecond windows, or the migration ended: no samples, no harm.
    }
  }

  /** Keeps the progress watermark (lowest remaining) and the time bytes last moved. */
  private track(info: MigrationInfo, elapsedMs: number): void {
    const ram = info.ram;
    if (!ram) return;
    if (ram.remaining < this.watermark.remainingBytes)
      this.watermark = { remainingBytes: ram.remaining, atMs: elapsedMs };
    if (ram.transferred !== this.lastProgress.transferred)
      this.lastProgress = { transferred: ram.transferred, atMs: elapsedMs };
  }

  /**
   * In post-copy the guest must run on the destination. A destination started with -S stays
   * paused after the switch ("management decides when to start the CPU"), so we start it, as
   * QEMU itself would without -S.
   */
  private async startDestinationForPostcopy(): Promise<void> {
    if (this.destinationStarted || !this.opts.startDestinationOnPostcopy) return;
    this.destinationStarted = true;
    const s = await this.opts.destination.execute<{ status: string }>('query-status');
    if (s.status !== 'running') await this.opts.destination.execute('cont');
  }

  private state(info: MigrationInfo, elapsedMs: number, atPassEnd: boolean): ControllerState {
    const passes = this.tracker.passes;
    const last = passes.at(-1);
    const ram = info.ram;
    const bandwidthBps =
      last?.bandwidthBps || (ram && elapsedMs > 0 ? ram.transferred / (elapsedMs / 1000) : 0);
    return {
      elapsedMs,
      status: info.status ?? 'none',
      passes,
      currentPass: this.tracker.currentPass,
      atPassEnd,
      ramBytes: this.ramBytes,
      remainingBytes: ram?.remaining ?? this.ramBytes,
      transferredBytes: ram?.transferred ?? 0,
      bandwidthBps,
      downtimeBudgetMs: this.opts.downtimeBudgetMs,
      deadlineMs: this.opts.deadlineMs,
      downtimeLimitMs: this.downtimeLimitMs,
      postcopyPermitted: this.postcopyEnabled,
      progressWatermark: this.watermark,
      regions: this.regions,
      workingSetSamples: this.workingSet.length ? [...this.workingSet] : undefined,
      actions: this.applied,
    };
  }

  private log(state: ControllerState, action: Action): void {
    const d = { atMs: state.elapsedMs, pass: state.currentPass, action };
    this.decisions.push(d);
    this.opts.onDecision?.(d);
  }

  /** Applies one action to QEMU. One-shot actions are applied once; `safety` ones are logged here. */
  private async apply(action: Action, state: ControllerState, safety: boolean): Promise<void> {
    const src = this.src;
    if (safety) this.log(state, action);
    // postcopy/pause/abort happen once; a switchover may be raised again (to a higher limit).
    const once = action.kind === 'postcopy' || action.kind === 'pause' || action.kind === 'abort';
    if (once && this.applied.some((a) => a.kind === action.kind)) return;
    // In post-copy the guest already runs on the destination, and a switch just requested is under
    // way: cancelling either would lose the guest's newest memory.
    const switchingToPostcopy = this.applied.some(
      (a) => a.kind === 'postcopy' && state.elapsedMs - a.atMs < 3000,
    );
    if (action.kind === 'abort' && (state.status === 'postcopy-active' || switchingToPostcopy)) return;
    this.applied.push({ kind: action.kind, atMs: state.elapsedMs, pass: state.currentPass });
    if (['switchover', 'postcopy', 'pause'].includes(action.kind)) this.firstForcingAt ??= performance.now();
    switch (action.kind) {
      case 'continue':
        return;
      case 'setDowntimeLimit':
      case 'switchover': {
        const ms = Math.min(
          MAX_DOWNTIME_LIMIT_MS,
          Math.round(action.downtimeLimitMs ?? MAX_DOWNTIME_LIMIT_MS),
        );
        if (ms === this.downtimeLimitMs || (action.kind === 'switchover' && ms < this.downtimeLimitMs))
          return;
        await src.execute('migrate-set-parameters', { 'downtime-limit': ms });
        this.downtimeLimitMs = ms;
        return;
      }
      case 'postcopy':
        if (!this.postcopyEnabled) return;
        await src.execute('migrate-start-postcopy');
        return;
      case 'pause':
        await src.execute('stop');
        return;
      case 'abort':
        await src.execute('migrate_cancel');
        return;
      default: {
        const never: never = action;
        throw new Error(`unhandled action ${JSON.stringify(never)}`);
      }
    }
  }

  /** Waits until the destination reports its incoming migration completed (or failed, or died). */
  private async awaitDestination(timeoutMs = 60_000): Promise<{ ok: true } | { ok: false; why: string }> {
    const { destination: dst } = this.opts;
    const deadline = performance.now() + timeoutMs;
    while (this.destinationCompletedAt === undefined) {
      let status: string | undefined;
      try {
        status = MigrationInfoSchema.parse(await dst.execute('query-migrate')).status;
      } catch (err) {
        return { ok: false, why: `destination unreachable: ${(err as Error).message}` };
      }
      if (status === 'completed') {
        this.destinationCompletedAt = performance.now();
        break;
      }
      if (status === 'failed' || status === 'cancelled')
        return { ok: false, why: `destination status ${status}` };
      if (performance.now() > deadline) {
        return { ok: false, why: `destination still '${status}' after ${timeoutMs / 1000} s` };
      }
      await sleep(10);
    }
    return { ok: true };
  }

  /** After the end: exactly one guest runs. */
  private async restore(outcome: Outcome): Promise<void> {
    const { src } = this;
    const { destination: dst } = this.opts;
    if (outcome === 'completed') {
      if (this.opts.resumeDestination ?? true) {
        const s = await dst.execute<{ status: string }>('query-status').catch(() => undefined);
        if (s && s.status !== 'running') await dst.execute('cont').catch(() => undefined);
      }
      return;
    }
    // Cancelled or failed: the source must run again (QEMU restarts it unless we paused it),
    // unless the user had it paused before we started.
    // After post-copy began, the source's memory is stale: running it would fork the guest.
    if (this.postcopyStarted()) return;
    const s = await src.execute<{ status: string }>('query-status').catch(() => undefined);
    if (this.sourceWasRunning && s && s.status !== 'running')
      await src.execute('cont').catch(() => undefined);
  }

  private postcopyStarted(): boolean {
    return this.destinationStarted || this.statusChangedAt.some((x) => x.status.startsWith('postcopy'));
  }

  private actionLatency(): number | undefined {
    if (this.firstForcingAt === undefined) return undefined;
    const left = this.statusChangedAt.find((s) => s.at >= this.firstForcingAt! && s.status !== 'active');
    return left ? left.at - this.firstForcingAt : undefined;
  }

  private progress(info: MigrationInfo, state: ControllerState): Progress {
    return {
      elapsedMs: state.elapsedMs,
      status: state.status,
      pass: state.currentPass,
      remainingBytes: state.remainingBytes,
      transferredBytes: state.transferredBytes,
      ramBytes: state.ramBytes,
      bandwidthBps: state.bandwidthBps,
      dirtyPagesRate: info.ram?.['dirty-pages-rate'] ?? 0,
      lastDecision: this.decisions.at(-1),
    };
  }
}
