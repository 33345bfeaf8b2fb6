import { setTimeout as sleep } from 'node:timers/promises';
import {
  Controller,
  type Command,
  type DeadlineAction,
  type Decision,
  type OperatorRequest,
} from '../core/controller.js';
import type { Ending } from '../core/ending.js';
import type { RecoveryConfig } from '../core/postcopy-recovery.js';
import {
  buildResult,
  controlStatus,
  progressOf,
  type ControlStatus,
  type MigrationResult,
  type Progress,
  type RunEvent,
} from '../core/result.js';
import { MigrationInfoSchema, type MigrationInfo } from '../core/sample.js';
import { checkMigrationUri } from '../core/uri.js';
import type { ResolvedPolicy } from '../policy/registry.js';
import { steeredThrottleParameters } from '../policy/throttle-plan.js';
import {
  QmpClient,
  QmpConnectionError,
  QmpError,
  QmpTimeoutError,
  describeTarget,
  type QmpEvent,
} from '../qmp/index.js';
import { MigrationSetupError } from '../util/errors.js';
import { destinationVerdict } from './destination.js';
import {
  capabilitiesFor,
  restoreSettings,
  saveSettings,
  setupParameters,
  type SavedSettings,
} from './parameters.js';
import { preflight, runState } from './preflight.js';
import { RegionReads, type RegionSource } from '../core/regions.js';
import { carryOutRequest, type RequestReply } from '../core/operator.js';
import { sampleWorkingSet } from './working-set-sampler.js';

export { MigrationSetupError };
export type { Decision, MigrationResult, Progress, RunEvent };
export type { GuestRunsOn, Outcome } from '../core/ending.js';

/** A max-bandwidth so high that the link, not QEMU, sets the rate (bytes/s): what the lab uses. */
export const UNLIMITED_BANDWIDTH_BPS = 100e9 / 8;

export interface SessionOptions {
  source: QmpClient;
  destination: QmpClient;
  /** URI the source sends to, e.g. tcp:10.200.0.2:4444 (tcp:, unix:, rdma:, fd: only). */
  migrateUri: string;
  /** If set, `migrate-incoming` is issued on the destination (started with -incoming defer). */
  incomingUri?: string;
  policy: ResolvedPolicy;
  downtimeBudgetMs: number;
  deadlineMs: number;
  pollMs?: number;
  postcopyPermitted?: boolean;
  onDeadline?: DeadlineAction;
  /** Region-level dirty sets (tap or sampling), read at every pass end and every `regionSampleMs`. */
  regionSource?: RegionSource;
  /**
   * A costlier region source (e.g. sampling the source's RAM), created only when there is no
   * `regionSource` and the policy wants region sets; the session closes it.
   */
  regionSampler?: () => Promise<RegionSource>;
  /**
   * Why there is neither a `regionSource` nor a `regionSampler` (e.g. the source QEMU's PID is
   * unknown): noted in the decision log when the policy wants region sets.
   */
  regionsUnavailable?: string;
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
  /** How long to wait for the destination's word after the source finished (default 60 s). */
  destinationTimeoutMs?: number;
  /** The caller knows the destination's process (the lab): false once it has exited. */
  destinationAlive?: () => boolean;
  /** Post-copy recovery after a broken link (default on, 120 s; `{ timeoutMs: 0 }` turns it off). */
  postcopyRecovery?: Partial<RecoveryConfig>;
  signal?: AbortSignal;
  onProgress?: (p: Progress) => void;
  onDecision?: (d: Decision) => void;
  /** Every event of the run as it happens (passes, decisions, commands, polls, the outcome). */
  onEvent?: (e: RunEvent) => void;
  /** Called once `migrate` was issued (after every check passed): a good moment to say where to reach us. */
  onStarted?: () => void;
}

/** True when nothing listens on a monitor whose connection closed: its QEMU is gone. */
async function monitorGone(qmp: QmpClient): Promise<boolean> {
  try {
    (await QmpClient.connect(qmp.target, { timeoutMs: 2000 })).close();
    return false;
  } catch (err) {
    return err instanceof QmpConnectionError && err.nobodyListens;
  }
}

/** Reconnects to a source whose QMP connection dropped; QEMU answers new clients only between stop-and-copy work. */
const RECONNECT_FOR_MS = 60_000;
const MAX_RECONNECTS = 3;

/**
 * The QMP driver: one migration between a source and a destination QEMU whose monitors we hold.
 * It feeds the controller core every `query-migrate` poll and event, carries out the commands it
 * returns, and at the end does what the core's ending says — nothing else decides.
 */
export class MigrationSession {
  private core!: Controller;
  private startedAt = 0;
  /** Date.now() when `migrate` was issued (the result's wall-clock times). */
  private startedWallMs = 0;
  private sourceWasRunning = true;
  private ramBytes = 0;
  private destinationCompletedAt: number | undefined;
  private sourceCompletedAt: number | undefined;
  private destinationStarted = false;
  private regionSource: RegionSource | undefined;
  private regionReads: RegionReads | undefined;
  private stopSampling = false;
  private wake: (() => void) | undefined;
  private readonly pollMs: number;
  private error: string | undefined;
  /** The source's QMP connection: the caller's, or ours after a reconnect (then we close it). */
  private src: QmpClient;
  private readonly onSrcEvent = (e: QmpEvent) => {
    if (e.event === 'MIGRATION') {
      const status = String(e.data.status);
      if (status === 'completed') this.sourceCompletedAt ??= e.receivedAt;
      this.core?.statusChanged(status, e.receivedAt - this.startedAt);
    }
    if (e.event === 'MIGRATION' || e.event === 'MIGRATION_PASS') this.wake?.();
  };
  private readonly onDstEvent = (e: QmpEvent) => {
    if (e.event === 'MIGRATION' && e.data.status === 'completed')
      this.destinationCompletedAt ??= e.receivedAt;
  };

  constructor(private readonly opts: SessionOptions) {
    this.pollMs = opts.pollMs ?? 50;
    this.src = opts.source;
  }

  async run(): Promise<MigrationResult> {
    const { source: src, destination: dst } = this.opts;
    checkMigrationUri(this.opts.migrateUri);
    if (this.opts.incomingUri) checkMigrationUri(this.opts.incomingUri, 'incoming URI');
    const pre = await preflight(src, dst);
    this.ramBytes = pre.ramBytes;
    this.sourceWasRunning = pre.sourceWasRunning;
    this.core = new Controller({
      policy: this.opts.policy,
      downtimeBudgetMs: this.opts.downtimeBudgetMs,
      deadlineMs: this.opts.deadlineMs,
      onDeadline: this.opts.onDeadline,
      postcopyPermitted: this.opts.postcopyPermitted ?? false,
      stallTimeoutMs: this.opts.stallTimeoutMs,
      ramBytes: pre.ramBytes,
      onDecision: this.opts.onDecision,
      onEvent: this.opts.onEvent,
      recovery: this.opts.postcopyRecovery,
    });
    const saved = await this.saveAll();
    let migrationOver = false;
    src.on('event', this.onSrcEvent);
    dst.on('event', this.onDstEvent);
    try {
      await this.configure();
      await this.openRegionSource();
      // Notes before `migrate` (why there are no region sets) are not decisions about a migration.
      const notesBefore = this.core.decisions.length;
      const cpu0 = process.cpuUsage();
      this.startedAt = performance.now();
      this.startedWallMs = Date.now();
      await src.execute('migrate', { uri: this.opts.migrateUri });
      this.opts.onStarted?.();
      const windows = this.opts.workingSetWindowsMs ?? this.core.setup.workingSetWindowsMs;
      const sampling = windows?.length ? this.sampleWorkingSet(windows) : undefined;
      await this.loop();
      this.stopSampling = true;
      await sampling;
      const result = await this.end(cpu0);
      migrationOver = true;
      if (
        result.outcome === 'failed' &&
        result.transferredBytes === 0 &&
        result.decisions.length === notesBefore
      ) {
        // Never connected: nothing changed on either side, so this is bad input, not a failed migration.
        throw new MigrationSetupError(
          `cannot reach the destination at ${this.opts.migrateUri} (${result.error ?? result.reason}): is it listening? ` +
            'Start it with -incoming tcp:HOST:PORT, or with -incoming defer and pass --incoming',
        );
      }
      return result;
    } finally {
      this.stopSampling = true;
      if (this.regionSource && this.regionSource !== this.opts.regionSource) this.regionSource.close();
      await this.restoreAll(saved, migrationOver);
      this.src.off('event', this.onSrcEvent);
      if (this.src !== src) this.src.close();
      dst.off('event', this.onDstEvent);
    }
  }

  /**
   * An operator's request while the migration runs (control socket): through the core's action
   * rules, carried out at once. Resolves with what was done or why it was refused.
   */
  async request(req: OperatorRequest): Promise<RequestReply> {
    const reply = await carryOutRequest(
      this.core,
      this.startedAt !== 0,
      req,
      () => this.elapsed(),
      (commands) => this.execute(commands),
    );
    if (reply.accepted) this.wake?.();
    return reply;
  }

  /** The controller's view right now (control socket `status`). */
  get status(): ControlStatus | undefined {
    return controlStatus(this.core);
  }

  private async saveAll(): Promise<{ source: SavedSettings; destination: SavedSettings }> {
    const names = [
      'downtime-limit',
      ...(this.opts.maxBandwidthBps !== undefined ? ['max-bandwidth'] : []),
      ...(this.opts.postcopyBandwidthBps !== undefined ? ['max-postcopy-bandwidth'] : []),
      ...Object.keys(setupParameters(this.core.setup, this.ramBytes)),
      // A throttle the policy steers is put back too.
      ...(this.core.setup.autoConverge
        ? ['cpu-throttle-initial', 'cpu-throttle-increment', 'max-cpu-throttle']
        : []),
    ];
    const [source, destination] = await Promise.all([
      saveSettings(this.opts.source, names),
      saveSettings(this.opts.destination, []),
    ]);
    return { source, destination };
  }

  /** What the controller changed is put back on every way out; the sides that are gone are skipped. */
  private async restoreAll(saved: { source: SavedSettings; destination: SavedSettings }, over: boolean) {
    const status = this.core.lastSample.status ?? 'none';
    const done = over || ['completed', 'failed', 'cancelled', 'none'].includes(status);
    await restoreSettings(this.src, saved.source, done);
    await restoreSettings(this.opts.destination, saved.destination, done);
  }

  private async configure(): Promise<void> {
    const { source: src, destination: dst } = this.opts;
    const setup = this.core.setup;
    await src.execute('migrate-set-capabilities', { capabilities: capabilitiesFor(setup, 'source') });
    await dst.execute('migrate-set-capabilities', { capabilities: capabilitiesFor(setup, 'destination') });
    const bw = (name: string, v: number | undefined) => (v !== undefined ? { [name]: Math.round(v) } : {});
    await src.execute('migrate-set-parameters', {
      'downtime-limit': Math.round(setup.downtimeLimitMs),
      ...bw('max-bandwidth', this.opts.maxBandwidthBps),
      ...bw('max-postcopy-bandwidth', this.opts.postcopyBandwidthBps),
      ...setupParameters(setup, this.ramBytes),
    });
    if (!this.opts.incomingUri) return;
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

  /**
   * The tap, or the sampler when the policy wants region sets. A sampler that is missing or
   * fails is no reason to fail the run: the decision log says why there are none, and the policy
   * decides without them (mp falls back to FRS), as the libvirt driver does.
   */
  private async openRegionSource(): Promise<void> {
    let rs = this.opts.regionSource;
    if (!rs && this.core.setup.wantsRegions) {
      let why = this.opts.regionsUnavailable ?? 'no region source given';
      try {
        rs = await this.opts.regionSampler?.();
      } catch (err) {
        why = (err as Error).message;
      }
      if (!rs) this.core.note(`no region sets (${why}): the policy decides without them`, 0);
    }
    this.regionSource = rs;
    if (!rs) return;
    this.core.attachRegions(rs);
    this.regionReads = new RegionReads(rs, this.opts.regionSampleMs);
  }

  private elapsed(): number {
    return performance.now() - this.startedAt;
  }

  /** Polls until the core says the migration is over; reconnects a dropped source connection. */
  private async loop(): Promise<void> {
    let reconnects = 0;
    let busySince: number | undefined;
    for (;;) {
      const woke = new Promise<void>((r) => (this.wake = r));
      try {
        if (this.opts.signal?.aborted) this.core.interrupt();
        if (await this.poll()) return;
        busySince = undefined;
        await Promise.race([sleep(this.pollMs), woke]);
      } catch (err) {
        if (err instanceof QmpTimeoutError) {
          // QEMU holds its big lock through the whole stop-and-copy and answers nothing until
          // it ends: on a slow link that is many seconds. The connection is fine; keep asking.
          busySince ??= performance.now();
          if (performance.now() - busySince < this.opts.deadlineMs + 600_000) continue;
        }
        if (
          err instanceof QmpConnectionError &&
          !(err instanceof QmpTimeoutError) &&
          ++reconnects <= MAX_RECONNECTS
        ) {
          if (await this.reconnectSource(err)) continue;
        }
        // Anything else — a reply that fails its schema, contact lost for good: the core decides
        // (it never cancels a post-copy).
        this.error = (err as Error).message;
        await this.execute(this.core.contactLost(this.error, this.elapsed())).catch(() => undefined);
        return;
      }
    }
  }

  /** One poll: observe, decide (in the core), act. Returns true when the migration is over. */
  private async poll(): Promise<boolean> {
    const info: MigrationInfo = MigrationInfoSchema.parse(await this.src.execute('query-migrate'));
    this.readRegions(info);
    const step = this.core.observe(info, this.elapsed());
    if (info.status === 'postcopy-active') await this.startDestinationForPostcopy();
    await this.execute(step.commands);
    const progress = progressOf(this.core, info);
    if (progress) {
      this.opts.onProgress?.(progress);
      this.opts.onEvent?.({ type: 'progress', progress });
    }
    return step.done;
  }

  /** Carries out the core's commands on the source. A refusal is told to the core; a lost connection is thrown. */
  private async execute(commands: Command[]): Promise<void> {
    for (const cmd of commands) {
      try {
        switch (cmd.kind) {
          case 'setDowntimeLimit':
            await this.src.execute('migrate-set-parameters', { 'downtime-limit': cmd.downtimeLimitMs });
            break;
          case 'startPostcopy':
            await this.src.execute('migrate-start-postcopy');
            break;
          case 'stopSource':
            await this.src.execute('stop');
            break;
          case 'cancel':
            await this.src.execute('migrate_cancel');
            break;
          case 'pausePostcopy':
            // Both sides: a destination still waiting on a dead socket must let go of it too.
            await this.opts.destination.execute('migrate-pause').catch(() => undefined);
            await this.src.execute('migrate-pause');
            break;
          case 'recoverPostcopy':
            await this.recoverPostcopy();
            break;
          case 'setThrottle':
            await this.src.execute('migrate-set-parameters', steeredThrottleParameters(cmd.percent));
            break;
          default: {
            const never: never = cmd;
            throw new Error(`unhandled command ${JSON.stringify(never)}`);
          }
        }
        this.core.commandDone(cmd);
      } catch (err) {
        this.core.commandFailed(cmd, err instanceof QmpError);
        if (!(err instanceof QmpError)) throw err;
      }
    }
  }

  /**
   * One attempt to resume a paused post-copy: the destination listens again (`migrate-recover`),
   * the source reconnects (`migrate` with `resume`). While the link is still down the source's
   * attempt fails and QEMU stays paused; the core retries. A destination that is gone ends it.
   */
  private async recoverPostcopy(): Promise<void> {
    const dst = this.opts.destination;
    const uri = this.opts.incomingUri ?? this.opts.migrateUri;
    let dstStatus: string | undefined;
    try {
      dstStatus = MigrationInfoSchema.parse(
        await dst.execute('query-migrate', undefined, { timeoutMs: 3000 }),
      ).status;
    } catch (err) {
      const gone =
        (this.opts.destinationAlive !== undefined && !this.opts.destinationAlive()) ||
        (err instanceof QmpConnectionError && dst.isClosed && (await monitorGone(dst)));
      if (gone) this.core.destinationGone();
      return;
    }
    if (dstStatus === 'postcopy-active') await dst.execute('migrate-pause').catch(() => undefined);
    if (dstStatus !== 'postcopy-recover-setup' && dstStatus !== 'postcopy-recover')
      await dst.execute('migrate-recover', { uri }).catch(() => undefined);
    await this.src.execute('migrate', { uri: this.opts.migrateUri, resume: true });
  }

  /**
   * Reads the region source at every pass end and every `regionSampleMs` in between; the core
   * files what was seen under the pass under way.
   */
  private readRegions(info: MigrationInfo): void {
    this.regionReads?.read(this.core, info.ram?.['dirty-sync-count'], performance.now(), this.elapsed());
  }

  private sampleWorkingSet(windowsMs: number[]): Promise<void> {
    return sampleWorkingSet({
      qmp: () => this.src,
      windowsMs,
      ramBytes: this.ramBytes,
      nowMs: () => this.elapsed(),
      stopped: () => this.stopSampling,
      onSample: (s) => this.core.workingSetMeasured(s),
    });
  }

  /**
   * The QMP connection to the source dropped while QEMU runs on: open a new one (QEMU serves one
   * client at a time, and the old one is gone) and carry on watching. False if it cannot.
   */
  private async reconnectSource(cause: Error): Promise<boolean> {
    const old = this.src;
    old.close();
    const until = performance.now() + RECONNECT_FOR_MS;
    for (;;) {
      try {
        this.src = await QmpClient.connect(old.target, { timeoutMs: 5000 });
        break;
      } catch {
        if (performance.now() > until) return false;
        await sleep(200);
      }
    }
    old.off('event', this.onSrcEvent);
    this.src.on('event', this.onSrcEvent);
    // Events may have been lost meanwhile: the next poll's status latches post-copy if it began.
    const d: Decision = {
      atMs: this.elapsed(),
      pass: this.core.currentPass,
      action: {
        kind: 'continue',
        reason: `lost the QMP connection to the source (${cause.message}); reconnected`,
      },
    };
    this.core.decisions.push(d);
    this.opts.onDecision?.(d);
    return true;
  }

  /**
   * In post-copy the guest must run on the destination. A destination started with -S stays
   * paused after the switch ("management decides when to start the CPU"), so we start it, as
   * QEMU itself would without -S.
   */
  private async startDestinationForPostcopy(): Promise<void> {
    if (this.destinationStarted || !this.opts.startDestinationOnPostcopy) return;
    this.destinationStarted = true;
    if ((await runState(this.opts.destination)) !== 'running') await this.opts.destination.execute('cont');
  }

  /** Asks what the core needs to know, does what its ending says, and reports. */
  private async end(cpu0: NodeJS.CpuUsage): Promise<MigrationResult> {
    this.core.finish(undefined, this.elapsed());
    const destination = this.core.guestMayHaveMoved
      ? await destinationVerdict({
          qmp: this.opts.destination,
          completedByEvent: () => this.destinationCompletedAt !== undefined,
          alive: this.opts.destinationAlive,
          timeoutMs: this.opts.destinationTimeoutMs,
        })
      : undefined;
    if (destination?.verdict === 'completed') this.destinationCompletedAt ??= performance.now();
    const sourceRunState = await runState(this.src).catch(() => undefined);
    const ending = this.core.conclude({
      sourceRunState,
      sourceWasRunning: this.sourceWasRunning,
      destination,
    });
    const endedAt = performance.now();
    await this.carryOut(ending);
    const cpu = process.cpuUsage(cpu0);
    const result = this.result(
      ending,
      endedAt,
      ((cpu.user + cpu.system) / 1000 / (endedAt - this.startedAt)) * 100,
    );
    this.opts.onEvent?.({ type: 'outcome', result });
    return result;
  }

  private async carryOut(ending: Ending): Promise<void> {
    if (ending.resume === 'destination' && (this.opts.resumeDestination ?? true)) {
      const s = await runState(this.opts.destination).catch(() => undefined);
      if (s && s !== 'running') await this.opts.destination.execute('cont').catch(() => undefined);
    } else if (ending.resume === 'source') {
      await this.src.execute('cont').catch(() => undefined);
    }
  }

  private result(ending: Ending, endedAt: number, controllerCpuPct: number): MigrationResult {
    return buildResult(this.core, ending, {
      policy: this.opts.policy,
      downtimeBudgetMs: this.opts.downtimeBudgetMs,
      deadlineMs: this.opts.deadlineMs,
      ramBytes: this.ramBytes,
      endpoints: {
        source: describeTarget(this.opts.source.target),
        destination: describeTarget(this.opts.destination.target),
        migrateUri: this.opts.migrateUri,
        ...(this.opts.incomingUri ? { incomingUri: this.opts.incomingUri } : {}),
      },
      startedAt: this.startedAt,
      startedWallMs: this.startedWallMs,
      endedAt,
      controllerCpuPct,
      clock: {
        sourceCompletedAt: this.sourceCompletedAt,
        destinationCompletedAt: this.destinationCompletedAt,
      },
      postcopySeen: this.destinationStarted,
      error: this.error,
    });
  }
}
