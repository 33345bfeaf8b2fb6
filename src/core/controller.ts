import type { ResolvedPolicy } from '../policy/registry.js';
import type { Action, ControllerState, PassRecord, PolicySetup, RegionHistory } from '../policy/types.js';
import { admit, type Command, type Latches } from './action-rules.js';
import { resolveEnding, type DestinationVerdict, type Ending } from './ending.js';
import { PassTracker } from './pass-tracker.js';
import { DEFAULT_RECOVERY, PostcopyRecovery, type RecoveryConfig } from './postcopy-recovery.js';
import { isPostcopyStatus, TERMINAL_STATUSES, type MigrationInfo } from './sample.js';

export type { Command } from './action-rules.js';

/** One logged decision: what was decided, when (ms since `migrate`), in which pass, and why. */
export interface Decision {
  atMs: number;
  pass: number;
  action: Action;
}

export type DeadlineAction = 'abort' | 'switchover' | 'postcopy';

/** What an operator may ask of a running migration (the control socket, `kvmigrate ctl`). */
export type OperatorRequest =
  /** Finish now: stop-and-copy (downtime-limit to QEMU's maximum), whatever the policy says. */
  | { kind: 'force-complete' }
  | { kind: 'postcopy' }
  | { kind: 'abort' }
  | { kind: 'set-downtime'; downtimeLimitMs: number };

/** What the core reports as it goes, for event streams and metrics (drivers add samples and the outcome). */
export type CoreEvent =
  | { type: 'pass'; pass: PassRecord }
  | { type: 'decision'; decision: Decision }
  | { type: 'command'; command: Command; atMs: number }
  | { type: 'status'; status: string; atMs: number }
  | { type: 'workingSet'; sample: WorkingSetSample };

export interface ControllerConfig {
  policy: ResolvedPolicy;
  downtimeBudgetMs: number;
  deadlineMs: number;
  /** What the deadline does (default abort). `postcopy` needs post-copy permitted. */
  onDeadline?: DeadlineAction;
  /** The user consented to post-copy (--allow-postcopy). */
  postcopyPermitted: boolean;
  /** Abort when no bytes move for this long (default 20 s): a dead link never fails by itself. */
  stallTimeoutMs?: number;
  ramBytes: number;
  onDecision?: (d: Decision) => void;
  onEvent?: (e: CoreEvent) => void;
  /** Post-copy recovery after a broken link (default on: DEFAULT_RECOVERY). */
  recovery?: Partial<RecoveryConfig>;
}

export interface WorkingSetSample {
  seconds: number;
  bytes: number;
  atMs: number;
}

/** What one observation leads to: commands for the driver, and whether the migration is over. */
export interface Step {
  commands: Command[];
  done: boolean;
}

// About ten minutes of calc-dirty-rate samples: a policy that waits for a quiet phase needs to see when it began.
const WORKING_SET_KEPT = 1024;

/**
 * The controller core: pure, no I/O and no clock (every observation carries its time, in ms since
 * `migrate`). Drivers — QMP, libvirt, the simulator's model — feed it observations and carry out
 * the commands it returns. It owns the controller state, the pass tracking, the safety chain
 * (interrupt, deadline, stall, overrun) ahead of the policy, the action rules (what may happen
 * once, nothing cancels post-copy) and the decision log; at the end it says which side may run
 * the guest (`conclude`).
 */
export class Controller {
  readonly setup: PolicySetup;
  readonly decisions: Decision[] = [];
  private readonly tracker = new PassTracker();
  private readonly latches: Latches;
  private readonly applied: ControllerState['actions'] = [];
  private watermark = { remainingBytes: Number.POSITIVE_INFINITY, atMs: 0 };
  private lastProgress = { transferred: -1, atMs: 0 };
  private regions: RegionHistory | undefined;
  private regionsThisPass = new Set<number>();
  private workingSet: WorkingSetSample[] = [];
  private interruptRequested = false;
  private interruptHandled = false;
  private deadlineHandled = false;
  private endReason: string | undefined;
  private forcedFailure = false;
  private statusLog: { status: string; atMs: number }[] = [];
  private lastInfo: MigrationInfo = {};
  private lastState: ControllerState | undefined;
  private lastStatus: string | undefined;
  private readonly recovery: PostcopyRecovery;
  /** Guest RAM; a driver that cannot tell before the migration starts passes 0 and the first sample says. */
  private ramBytes: number;

  constructor(private readonly cfg: ControllerConfig) {
    const { policy } = cfg;
    // Post-copy needs the user's consent, except with a policy that is nothing but post-copy
    // (choosing it is the consent); the capability is what the policy asks for.
    this.setup = policy.policy.setup(policy.config, {
      downtimeBudgetMs: cfg.downtimeBudgetMs,
      postcopyPermitted: cfg.postcopyPermitted,
    });
    this.ramBytes = cfg.ramBytes;
    this.recovery = new PostcopyRecovery({ ...DEFAULT_RECOVERY, ...cfg.recovery });
    this.latches = {
      downtimeLimitMs: this.setup.downtimeLimitMs,
      postcopyEnabled: this.setup.postcopy,
      postcopy: 'no',
      throttleEnabled: this.setup.autoConverge,
      throttlePercent: 0,
      firstForcingAtMs: undefined,
    };
  }

  // ---- observations -------------------------------------------------------------------------

  /** A poll of the migration (query-migrate, job stats, the model). */
  observe(info: MigrationInfo, atMs: number): Step {
    const status = info.status ?? 'none';
    this.lastInfo = info;
    if (!this.ramBytes && info.ram?.total) this.ramBytes = info.ram.total;
    if (isPostcopyStatus(status)) this.latches.postcopy = 'started';
    // Even the terminal sample: syncs may have happened since the last poll.
    const before = this.tracker.passes.length;
    const atPassEnd = this.tracker.observe(info, atMs, this.latches.downtimeLimitMs);
    this.fileRegions(this.tracker.passes.length - before);
    for (const pass of this.tracker.passes.slice(before)) this.cfg.onEvent?.({ type: 'pass', pass });
    if (status !== this.lastStatus) {
      this.lastStatus = status;
      this.cfg.onEvent?.({ type: 'status', status, atMs });
    }
    if (TERMINAL_STATUSES.has(status)) return { commands: [], done: true };
    this.track(info, atMs);
    if (isPostcopyStatus(status)) {
      const recovery = this.recoveryStep(status, atMs);
      if (recovery) return recovery;
    }
    const state = this.state(info, atMs, atPassEnd);
    this.lastState = state;
    const safety = this.safetyChain(state);
    if (safety) return { commands: this.apply(safety, state, true), done: false };
    if (!['active', 'postcopy-active', 'setup'].includes(status)) return { commands: [], done: false };
    const action = this.cfg.policy.policy.decide(state, this.cfg.policy.config);
    if (action.kind !== 'continue' || atPassEnd) this.log(state, action);
    return { commands: action.kind === 'continue' ? [] : this.apply(action, state, false), done: false };
  }

  /** A note in the decision log from the driver (e.g. a reconnect): no action, a reason. */
  note(reason: string, atMs: number): void {
    const state = this.lastState;
    this.log(
      { ...(state ?? this.state(this.lastInfo, atMs, false)), elapsedMs: atMs },
      { kind: 'continue', reason },
    );
  }

  /**
   * Another party (an orchestrator, an operator with virsh) changed the downtime limit: say so,
   * and let the policy see the real value rather than fight it blindly.
   */
  adoptDowntimeLimit(ms: number, atMs: number): void {
    if (ms === this.latches.downtimeLimitMs) return;
    this.note(
      `the downtime limit was changed outside kvmigrate: ${this.latches.downtimeLimitMs} → ${ms} ms (an orchestrator's own steps? see the README on running beside Nova/KubeVirt)`,
      atMs,
    );
    this.latches.downtimeLimitMs = ms;
  }

  /** A status-change event (QMP `MIGRATION`, libvirt lifecycle): kept for latencies, latches post-copy. */
  statusChanged(status: string, atMs: number): void {
    this.statusLog.push({ status, atMs });
    if (isPostcopyStatus(status)) this.latches.postcopy = 'started';
  }

  /** The operator asked to stop (SIGINT/SIGTERM): handled at the next observation. */
  interrupt(): void {
    this.interruptRequested = true;
  }

  /** A calc-dirty-rate result: one point of the working-set curve. */
  workingSetMeasured(sample: WorkingSetSample): void {
    this.cfg.onEvent?.({ type: 'workingSet', sample });
    this.workingSet.push(sample);
    if (this.workingSet.length > WORKING_SET_KEPT) this.workingSet.shift();
  }

  /** Region-level dirty sets are available from now on (tap, sampling, model). */
  attachRegions(meta: Omit<RegionHistory, 'perPass'>): void {
    this.regions = { ...meta, perPass: [] };
  }

  /**
   * The region source failed while the migration runs: say why in the decision log, and let the
   * policy decide without region sets from now on (mp falls back to FRS).
   */
  regionsLost(why: string, atMs: number): void {
    if (!this.regions) return;
    this.regions = undefined;
    this.regionsThisPass = new Set();
    this.note(`no region sets from now on (${why}): the policy decides without them`, atMs);
  }

  /** Regions seen dirtied since the last report; filed under the pass that is under way. */
  regionsDirtied(regions: Iterable<number>): void {
    for (const r of regions) this.regionsThisPass.add(r);
  }

  /** A command was carried out. */
  commandDone(cmd: Command): void {
    if (cmd.kind === 'startPostcopy') this.latches.postcopy = 'started';
  }

  /**
   * A command failed. Only an explicit refusal (`refused`: QEMU or libvirt answered with an
   * error) undoes a post-copy request; a lost reply may hide a switch that happened.
   */
  commandFailed(cmd: Command, refused: boolean): void {
    if (cmd.kind === 'startPostcopy' && refused && this.latches.postcopy === 'requested')
      this.latches.postcopy = 'no';
  }

  /**
   * The driver cannot talk to the source any more (after its own retries). Cancels, unless
   * post-copy may have begun: then nothing may be cancelled.
   */
  contactLost(why: string, atMs: number): Command[] {
    this.forcedFailure = true;
    this.endReason = `controller lost contact with the source: ${why}`;
    const action: Action = { kind: 'abort', reason: this.endReason };
    return this.apply(action, this.lastState ?? this.state(this.lastInfo, atMs, false), true);
  }

  /**
   * An operator's request, applied at once through the same action rules as any policy's action
   * (no cancel in post-copy, post-copy only with the capability). Returns the commands and, when
   * refused, why.
   */
  request(req: OperatorRequest, atMs: number): { commands: Command[]; refused?: string } {
    const action: Action =
      req.kind === 'force-complete'
        ? { kind: 'switchover', reason: 'operator: force-complete' }
        : req.kind === 'set-downtime'
          ? {
              kind: 'setDowntimeLimit',
              downtimeLimitMs: req.downtimeLimitMs,
              reason: `operator: set-downtime ${req.downtimeLimitMs} ms`,
            }
          : { kind: req.kind, reason: `operator: ${req.kind}` };
    const state = this.lastState ?? this.state(this.lastInfo, atMs, false);
    const now = { ...state, elapsedMs: atMs };
    this.log(now, action);
    const verdict = admit(action, now, this.latches, this.applied);
    if (verdict.refused) this.log(now, { kind: 'continue', reason: verdict.refused });
    if (req.kind === 'abort' && !verdict.refused && verdict.commands.length)
      this.endReason = 'aborted by the operator';
    for (const command of verdict.commands) this.cfg.onEvent?.({ type: 'command', command, atMs });
    return verdict;
  }

  /** Closes the pass under way at the end (the stop-and-copy pass, or the last one before a cancel). */
  finish(info: MigrationInfo | undefined, atMs: number): void {
    if (info) this.lastInfo = info;
    this.tracker.finish(this.lastInfo, atMs);
  }

  // ---- the end ------------------------------------------------------------------------------

  /** True when the driver must ask the destination before deciding anything (see `conclude`). */
  get guestMayHaveMoved(): boolean {
    const status = this.lastInfo.status ?? 'unknown';
    return status === 'completed' || this.postcopyLatched || isPostcopyStatus(status);
  }

  /** Post-copy may have begun (requested and not refused, or seen): never cancel, never resume the source. */
  get postcopyLatched(): boolean {
    return this.latches.postcopy !== 'no';
  }

  /** Post-copy was seen for sure (a status or a successful switch command). */
  get postcopyStarted(): boolean {
    return this.latches.postcopy === 'started';
  }

  /** Which side may run the guest, from the last source status and what the driver found. */
  conclude(facts: {
    sourceRunState?: string;
    sourceWasRunning: boolean;
    destination?: { verdict: DestinationVerdict; detail: string };
  }): Ending {
    const status = this.lastInfo.status ?? 'unknown';
    const desc = this.lastInfo['error-desc'];
    return resolveEnding({
      ...facts,
      sourceStatus: this.forcedFailure && !TERMINAL_STATUSES.has(status) ? 'unknown' : status,
      postcopy: this.postcopyLatched,
      forced:
        this.endReason !== undefined
          ? { outcome: this.forcedFailure ? 'failed' : undefined, reason: this.endReason }
          : status !== 'completed'
            ? { reason: `QEMU reports ${status}${desc ? `: ${desc}` : ''}` }
            : undefined,
    });
  }

  // ---- what drivers read --------------------------------------------------------------------

  get passes() {
    return this.tracker.passes;
  }
  get currentPass(): number {
    return this.tracker.currentPass;
  }
  get downtimeLimitMs(): number {
    return this.latches.downtimeLimitMs;
  }
  get lastSample(): MigrationInfo {
    return this.lastInfo;
  }
  get latestState(): ControllerState | undefined {
    return this.lastState;
  }
  get regionHistory(): RegionHistory | undefined {
    return this.regions;
  }
  get workingSetSamples(): WorkingSetSample[] | undefined {
    return this.workingSet.length ? [...this.workingSet] : undefined;
  }
  /** From the first forcing action (switchover/postcopy/pause) to QEMU leaving `active`, ms. */
  get actionLatencyMs(): number | undefined {
    const at = this.latches.firstForcingAtMs;
    if (at === undefined) return undefined;
    const left = this.statusLog.find((s) => s.atMs >= at && s.status !== 'active');
    return left ? left.atMs - at : undefined;
  }
  /** When a status was first reported by an event, ms since `migrate`. */
  statusSeenAt(status: string): number | undefined {
    return this.statusLog.find((s) => s.status === status)?.atMs;
  }

  // ---- inside -------------------------------------------------------------------------------

  /** Post-copy's own safety: pause a silent link, recover a paused one, or give up when it cannot be. */
  private recoveryStep(status: string, atMs: number): Step | undefined {
    const step = this.recovery.step(status, atMs, this.lastProgress.atMs);
    if (step.kind === 'none') return status === 'postcopy-active' ? undefined : { commands: [], done: false };
    const state = this.lastState ?? this.state(this.lastInfo, atMs, false);
    this.log({ ...state, elapsedMs: atMs }, { kind: 'continue', reason: step.reason });
    if (step.kind === 'give-up') return { commands: [], done: true };
    const command: Command = step.kind === 'pause' ? { kind: 'pausePostcopy' } : { kind: 'recoverPostcopy' };
    this.cfg.onEvent?.({ type: 'command', command, atMs });
    return { commands: [command], done: false };
  }

  /** The driver found the destination gone while post-copy was paused: there is nothing to recover. */
  destinationGone(): void {
    this.recovery.markDestinationGone();
  }

  /** How many times a paused post-copy was resumed. */
  get postcopyRecoveries(): number {
    return this.recovery.recovered;
  }

  /** Safety rules every policy inherits, in order; the first that fires replaces the policy's say. */
  private safetyChain(state: ControllerState): Action | undefined {
    const { elapsedMs } = state;
    const postcopy = this.postcopyLatched || state.status === 'postcopy-active';
    if (this.interruptRequested && !this.interruptHandled) {
      this.interruptHandled = true;
      this.endReason = postcopy
        ? 'interrupted during post-copy, which cannot be cancelled (the guest runs on the destination): waited for it to complete'
        : 'interrupted: cancelled by the user';
      return { kind: 'abort', reason: this.endReason };
    }
    if (elapsedMs >= this.cfg.deadlineMs && !this.deadlineHandled) {
      this.deadlineHandled = true;
      const kind = this.cfg.onDeadline ?? 'abort';
      this.endReason = `deadline of ${Math.round(this.cfg.deadlineMs / 1000)} s reached → ${kind}`;
      return { kind, reason: this.endReason };
    }
    if (postcopy) return undefined;
    const stalledMs = elapsedMs - this.lastProgress.atMs;
    if (stalledMs > (this.cfg.stallTimeoutMs ?? 20_000)) {
      this.endReason = `no bytes sent for ${(stalledMs / 1000).toFixed(0)} s (link down?) → abort`;
      return { kind: 'abort', reason: this.endReason };
    }
    if (elapsedMs >= this.cfg.deadlineMs * 1.5 + 30_000) {
      this.endReason = 'the deadline action did not finish the migration → abort';
      return { kind: 'abort', reason: this.endReason };
    }
    return undefined;
  }

  private apply(action: Action, state: ControllerState, safety: boolean): Command[] {
    if (safety) this.log(state, action);
    const verdict = admit(action, state, this.latches, this.applied);
    if (verdict.refused && safety) {
      // Say why a safety action did nothing (e.g. no cancel during post-copy).
      this.log(state, { kind: 'continue', reason: verdict.refused });
    }
    for (const command of verdict.commands)
      this.cfg.onEvent?.({ type: 'command', command, atMs: state.elapsedMs });
    return verdict.commands;
  }

  private log(state: ControllerState, action: Action): void {
    const d = { atMs: state.elapsedMs, pass: state.currentPass, action };
    this.decisions.push(d);
    this.cfg.onDecision?.(d);
    this.cfg.onEvent?.({ type: 'decision', decision: d });
  }

  /** Files the regions seen during the pass(es) that just closed. */
  private fileRegions(passesClosed: number): void {
    if (!this.regions || passesClosed <= 0) return;
    // Syncs closer together than one sample share what was seen.
    for (let k = 0; k < passesClosed; k++) this.regions.perPass.push([...this.regionsThisPass]);
    this.regionsThisPass = new Set();
  }

  /** Keeps the progress watermark (lowest remaining) and the time bytes last moved. */
  private track(info: MigrationInfo, atMs: number): void {
    const ram = info.ram;
    if (!ram) return;
    if (ram.remaining < this.watermark.remainingBytes)
      this.watermark = { remainingBytes: ram.remaining, atMs };
    if (ram.transferred !== this.lastProgress.transferred)
      this.lastProgress = { transferred: ram.transferred, atMs };
  }

  private state(info: MigrationInfo, elapsedMs: number, atPassEnd: boolean): ControllerState {
    const passes = this.tracker.passes;
    const ram = info.ram;
    const bandwidthBps =
      passes.at(-1)?.bandwidthBps || (ram && elapsedMs > 0 ? ram.transferred / (elapsedMs / 1000) : 0);
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
      downtimeBudgetMs: this.cfg.downtimeBudgetMs,
      deadlineMs: this.cfg.deadlineMs,
      downtimeLimitMs: this.latches.downtimeLimitMs,
      postcopyPermitted: this.latches.postcopyEnabled,
      progressWatermark: this.watermark,
      regions: this.regions,
      workingSetSamples: this.workingSetSamples,
      throttlePercent: this.latches.throttlePercent,
      actions: this.applied,
    };
  }
}
