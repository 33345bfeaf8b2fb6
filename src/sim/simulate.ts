import { Controller, type Command, type DeadlineAction, type Decision } from '../core/controller.js';
import type { GuestRunsOn } from '../core/ending.js';
import type { MigrationInfo } from '../core/sample.js';
import type { ResolvedPolicy } from '../policy/registry.js';
import type { PassRecord } from '../policy/types.js';
import { steeredThrottleParameters } from '../policy/throttle-plan.js';
import { UsageError } from '../util/errors.js';
import { SharedLink, type LinkVariation } from './link.js';
import type { PageClass } from './model.js';
import { DEFAULT_PARAMS, streamCapBps, type ModelParams } from './params.js';
import { MigrationModel, autoConvergeSteps, type ModelEnd } from './qemu-model.js';

const PAGE = 4096;
const REGION_BYTES = 2 ** 21; // 2 MiB, as the live region sources

export interface SimOptions {
  ramBytes: number;
  /** Link rate, bytes/s (the link's capacity when the migration has it to itself). */
  linkBps: number;
  rttMs?: number;
  classes: PageClass[];
  policy: ResolvedPolicy;
  downtimeBudgetMs: number;
  deadlineMs: number;
  postcopyPermitted?: boolean;
  onDeadline?: DeadlineAction;
  /** Simulation step, ms (default 10). */
  stepMs?: number;
  /** QEMU checks its stop rule once per iteration of the migration thread (≤ 50 ms of sending). */
  checkMs?: number;
  /** Controller poll interval, ms (default 50, as the live controller). */
  pollMs?: number;
  /** Shorthand for params.scanBytesPerS. */
  scanBytesPerS?: number;
  /** Shorthand for params.switchCostMs. */
  switchCostMs?: number;
  /** Host and QEMU facts: multifd channels, per-channel rate, sync and switchover costs… (src/sim/params.ts). */
  params?: Partial<ModelParams>;
  /** QEMU's max-bandwidth for this migration, bytes/s (lifted during the stop-and-copy, as QEMU does). */
  maxBandwidthBps?: number;
  /** The link's capacity over time (simulate() only; a fleet's links carry their own). */
  linkVariation?: LinkVariation;
  /** Sees every sample the core observes (traces, and replaying a run through another driver). */
  onObserve?: (info: MigrationInfo, atMs: number) => void;
}

/** The simulator's decisions are the controller core's. */
export type SimDecision = Decision;

export interface SimResult {
  outcome: 'completed' | 'cancelled' | 'failed';
  guestRunsOn: GuestRunsOn;
  reason: string;
  totalTimeMs: number;
  downtimeMs: number;
  transferredBytes: number;
  passes: PassRecord[];
  decisions: SimDecision[];
  postcopy: boolean;
}

/** The model's parameters for a run: defaults, then the shorthands, then `params`. */
export function modelParams(o: SimOptions): ModelParams {
  return {
    ...DEFAULT_PARAMS,
    ...(o.scanBytesPerS !== undefined ? { scanBytesPerS: o.scanBytesPerS } : {}),
    ...(o.switchCostMs !== undefined ? { switchCostMs: o.switchCostMs } : {}),
    ...o.params,
  };
}

/**
 * One simulated migration through the controller core — the same safety chain, action rules
 * and policy as the live drivers — advanced one step at a time at the rate its link gives it, so
 * that several can share links (src/sim/fleet.ts). The core sees the model's `query-migrate`
 * samples every `pollMs` and right after each sync (the live drivers wake on MIGRATION_PASS),
 * and the model carries out its commands.
 */
export class SimRun {
  readonly core: Controller;
  readonly m: MigrationModel;
  readonly stepMs: number;
  end: ModelEnd | undefined;
  private readonly checkMs: number;
  private readonly pollMs: number;
  private readonly params: ModelParams;
  private maxBps: number | undefined;
  private readonly sampler: (t: number) => { seconds: number; bytes: number; atMs: number }[];

  constructor(readonly o: SimOptions) {
    checkSimOptions(o);
    this.stepMs = o.stepMs ?? 10;
    this.checkMs = o.checkMs ?? 50;
    this.pollMs = o.pollMs ?? 50;
    this.params = modelParams(o);
    this.maxBps = o.maxBandwidthBps;
    this.core = new Controller({
      policy: o.policy,
      downtimeBudgetMs: o.downtimeBudgetMs,
      deadlineMs: o.deadlineMs,
      onDeadline: o.onDeadline,
      postcopyPermitted: o.postcopyPermitted ?? false,
      ramBytes: o.ramBytes,
    });
    const setup = this.core.setup;
    this.m = new MigrationModel(
      { ramBytes: o.ramBytes, classes: o.classes, rttMs: o.rttMs ?? 0, params: this.params },
      setup.downtimeLimitMs,
      setup.autoConverge,
      autoConvergeSteps(setup.parameters),
    );
    if (setup.wantsRegions) {
      this.core.attachRegions({
        source: 'model',
        regionBytes: REGION_BYTES,
        regionCount: Math.ceil(o.ramBytes / REGION_BYTES),
      });
    }
    this.sampler = workingSetSampler(setup.workingSetWindowsMs ?? [], o.ramBytes, this.m);
  }

  /** QEMU's max-bandwidth, changed mid-migration (migrate-set-parameters); undefined = none. */
  setMaxBandwidth(bps: number | undefined): void {
    this.maxBps = bps;
  }

  get done(): boolean {
    return this.end !== undefined;
  }

  get t(): number {
    return this.m.t;
  }

  /** Bytes/s this migration can use in its next step: its streams, and max-bandwidth before the switch. */
  demandBps(): number {
    if (this.end) return 0;
    const cap = streamCapBps(this.params);
    return this.m.sw ? cap : Math.min(cap, this.maxBps ?? Infinity);
  }

  /**
   * What it would actually use of `demandBps` in its next step: less while QEMU scans zero pages,
   * syncs its bitmap or is in the switchover's fixed part (a fleet's shared links give the rest
   * to the other migrations).
   */
  usableBps(): number {
    if (this.end) return 0;
    return Math.min(this.demandBps(), this.m.usableBps(this.stepMs));
  }

  private observe(status: string) {
    const info = this.m.sample(status);
    this.o.onObserve?.(info, this.m.t);
    return this.core.observe(info, this.m.t);
  }

  /** One step at `rateBps` (what the link gives this migration now). */
  step(rateBps: number): void {
    if (this.end) return;
    const m = this.m;
    if (m.sw) {
      const end = m.stepSwitch(this.stepMs, rateBps);
      if (end) this.finish(end);
      return;
    }
    m.step(this.stepMs, rateBps);
    let synced = false;
    // QEMU's migration thread checks its stop rule after each ram_save_iterate, which returns after
    // ≤ 50 ms of sending or as soon as the bitmap holds nothing more to send (the round is done).
    if (m.t % this.checkMs < this.stepMs || m.pending() <= 1e-9) {
      const dirtied = this.core.setup.wantsRegions ? m.dirtiedRegions() : [];
      const rule = m.stopRuleSyncs();
      if (rule !== 'no') this.core.regionsDirtied(dirtied);
      if (rule === 'stop') {
        // The guest is stopped: the controller sees QEMU in `device` and cannot act any more.
        this.observe('device');
        m.beginStop(m.paused ? 'completed after pause' : 'QEMU completed the migration');
        return;
      }
      synced = rule === 'synced';
    }
    if (!m.paused) for (const s of this.sampler(m.t)) this.core.workingSetMeasured(s);
    if (synced || m.t % this.pollMs < this.stepMs) {
      const end = carryOut(this.observe('active').commands, this.core, m);
      if (end) this.finish(end);
    }
  }

  private finish(end: ModelEnd): void {
    this.end = end;
    this.observe(end.status);
    this.core.finish(undefined, this.m.t);
  }

  result(): SimResult {
    const end = this.end;
    if (!end) throw new Error('SimRun.result() before the run ended');
    const ending = this.core.conclude({
      sourceRunState: end.status === 'completed' ? 'postmigrate' : 'running',
      sourceWasRunning: true,
      destination: end.status === 'completed' ? { verdict: 'completed', detail: 'model' } : undefined,
    });
    return {
      outcome: ending.outcome,
      guestRunsOn: ending.guestRunsOn,
      reason: end.status === 'completed' ? end.why : ending.reason,
      totalTimeMs: this.m.t,
      downtimeMs: end.downtimeMs,
      transferredBytes: this.m.transferred,
      passes: this.core.passes,
      decisions: this.core.decisions,
      postcopy: this.core.postcopyStarted,
    };
  }
}

/** One migration with its link to itself (whose capacity may vary over time). */
export function simulate(o: SimOptions): SimResult {
  const run = new SimRun(o);
  const link = new SharedLink('link', o.linkBps, o.rttMs ?? 0, o.linkVariation);
  while (!run.done) run.step(Math.min(run.demandBps(), link.capacityAt(run.t)));
  return run.result();
}

/**
 * Every input of a simulated migration, checked before the run; what is wrong is one line (a
 * UsageError). The pages a class holds when the migration starts must fit in the guest's RAM.
 */
export function checkSimOptions(o: SimOptions): void {
  const bad = (why: string): never => {
    throw new UsageError(`simulator: ${why}`);
  };
  const positive = (x: number | undefined, what: string) => {
    if (x !== undefined && !(Number.isFinite(x) && x > 0)) bad(`${what} must be a number above 0, not ${x}`);
  };
  const nonNegative = (x: number | undefined, what: string) => {
    if (x !== undefined && !(Number.isFinite(x) && x >= 0)) bad(`${what} must be a number ≥ 0, not ${x}`);
  };
  positive(o.ramBytes, 'RAM');
  if (o.ramBytes < 2 ** 20) bad(`RAM ${o.ramBytes} bytes is under 1 MiB`);
  positive(o.linkBps, 'the link rate');
  nonNegative(o.rttMs, 'the round trip');
  positive(o.downtimeBudgetMs, 'the downtime budget');
  positive(o.deadlineMs, 'the deadline');
  positive(o.stepMs, 'the step');
  positive(o.checkMs, 'the stop-rule check interval');
  positive(o.pollMs, 'the poll interval');
  positive(o.scanBytesPerS, 'the zero-page scan rate');
  nonNegative(o.switchCostMs, 'the switchover cost');
  positive(o.maxBandwidthBps, 'max-bandwidth');
  checkParams(modelParams(o), bad);
  if (o.classes.length === 0) bad('no page classes: give a workload');
  let resident = 0;
  for (const c of o.classes) {
    nonNegative(c.pages, `class ${c.name}: pages`);
    nonNegative(c.rate, `class ${c.name}: rate`);
    nonNegative(c.initialPages, `class ${c.name}: initialPages`);
    if ((c.initialPages ?? 0) > c.pages) bad(`class ${c.name}: initialPages exceeds its pages`);
    resident += c.initialPages ?? c.regionPages ?? c.pages;
  }
  const ramPages = o.ramBytes / PAGE;
  if (resident > ramPages)
    bad(
      `the workload holds ${Math.round((resident * PAGE) / 2 ** 20)} MiB but the guest has ${Math.round(o.ramBytes / 2 ** 20)} MiB of RAM`,
    );
}

function checkParams(p: ModelParams, bad: (why: string) => never): void {
  if (!Number.isInteger(p.channels) || p.channels < 1 || p.channels > 256)
    bad(`multifd channels must be a whole number 1…256, not ${p.channels}`);
  if (!Number.isInteger(p.vcpus) || p.vcpus < 1) bad(`vCPUs must be a whole number ≥ 1, not ${p.vcpus}`);
  if (!(p.pageBytes >= 4096 && Number.isInteger(Math.log2(p.pageBytes))))
    bad(`the page size must be a power of two ≥ 4096 bytes, not ${p.pageBytes}`);
  for (const key of ['channelBps', 'scanBytesPerS'] as const)
    if (!(Number.isFinite(p[key]) && p[key] > 0)) bad(`${key} must be a number above 0, not ${p[key]}`);
  for (const key of [
    'syncMsPerGiB',
    'syncFixedMs',
    'switchCostMs',
    'switchMsPerVcpu',
    'switchMsPerExtraChannel',
    'dirtyLogFaultUs',
    'faultUs',
    'postcopyQueueBytes',
  ] as const)
    if (!(Number.isFinite(p[key]) && p[key] >= 0)) bad(`${key} must be a number ≥ 0, not ${p[key]}`);
}

/** The model carries out the core's commands; a command that ends the migration returns how. */
function carryOut(commands: Command[], core: Controller, m: MigrationModel): ModelEnd | undefined {
  for (const cmd of commands) {
    switch (cmd.kind) {
      case 'setDowntimeLimit':
        m.limitMs = cmd.downtimeLimitMs;
        break;
      case 'setThrottle':
        // The same parameters the session sets on QEMU, applied at auto-converge's next step.
        Object.assign(
          m.throttleSteps,
          autoConvergeSteps(steeredThrottleParameters(cmd.percent), m.throttleSteps),
        );
        break;
      case 'stopSource':
        m.paused = true;
        m.pausedAt = m.t;
        break;
      case 'startPostcopy':
        core.commandDone(cmd);
        m.beginPostcopy();
        return undefined;
      case 'cancel':
        return { status: 'cancelled', downtimeMs: 0, why: 'cancelled' };
    }
    core.commandDone(cmd);
  }
  return undefined;
}

/** calc-dirty-rate as the live session runs it: the windows in turn, then a 250 ms pause. */
function workingSetSampler(windowsMs: number[], ramBytes: number, m: MigrationModel) {
  let next = { at: windowsMs[0] ?? Infinity, i: 0 };
  return (t: number) => {
    const out: { seconds: number; bytes: number; atMs: number }[] = [];
    while (t >= next.at) {
      const ms = windowsMs[next.i]!;
      out.push({ seconds: ms / 1000, bytes: Math.min(ramBytes, m.dirtiedWithin(next.at, ms)), atMs: t });
      const i = (next.i + 1) % windowsMs.length;
      next = { at: next.at + (i === 0 ? 250 : 0) + windowsMs[i]!, i };
    }
    return out;
  };
}
