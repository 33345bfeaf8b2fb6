import type { PassRecord } from '../policy/types.js';
import type { ResolvedPolicy } from '../policy/registry.js';
import type { Controller, CoreEvent, Decision, WorkingSetSample } from './controller.js';
import type { Ending } from './ending.js';
import type { MigrationInfo } from './sample.js';
import type { GuestRunsOn, Outcome } from './ending.js';

/** One migration as a driver reports it: what happened, where the guest runs, every pass and decision. */
export interface MigrationResult {
  /** The result format's version (src/core/schema.ts, docs/schema/results.schema.json). */
  schemaVersion: 1;
  outcome: Outcome;
  guestRunsOn: GuestRunsOn;
  /** Why it ended this way, in words. */
  reason: string;
  /** What `kvmigrate migrate` exits with: 0 completed on the destination, 1 not completed and the source runs, 3 otherwise. */
  exitCode: 0 | 1 | 3;
  /** Wall-clock time (ISO 8601, UTC) when `migrate` was issued, and when the controller saw the end. */
  startedAt: string;
  endedAt: string;
  /** Which QEMUs took part: QMP endpoints and the migration URIs. */
  endpoints: { source: string; destination: string; migrateUri: string; incomingUri?: string };
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
  /** How many times a post-copy paused by a broken link was resumed. */
  postcopyRecoveries?: number;
  /** Controller CPU time ÷ wall time, % of one core. */
  controllerCpuPct: number;
  /** calc-dirty-rate results (working-set points over time), when sampled. */
  workingSetSamples?: WorkingSetSample[];
  /** performance.now() clock: when `migrate` was issued, and when each side reported completion. */
  clock: { startedAt: number; sourceCompletedAt?: number; destinationCompletedAt?: number; endedAt: number };
  error?: string;
}

/** What a driver shows while a migration runs. */
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

/**
 * Everything a run reports as it goes, in order: the core's events (passes, decisions, commands,
 * status changes, working-set samples), the driver's polls, and finally the outcome. What
 * `--events` streams and metrics count.
 */
export type RunEvent =
  CoreEvent | { type: 'progress'; progress: Progress } | { type: 'outcome'; result: MigrationResult };

/** Where the CLI's exit code comes from: where the guest runs decides (README, "Exit codes"). */
export function resultExitCode(ending: Pick<Ending, 'outcome' | 'guestRunsOn'>): 0 | 1 | 3 {
  if (ending.outcome === 'completed' && ending.guestRunsOn === 'destination') return 0;
  if (ending.outcome !== 'completed' && ending.guestRunsOn === 'source') return 1;
  return 3;
}

/** What only the driver knows about a run: its endpoints, its clocks, its costs. */
export interface RunFacts {
  policy: ResolvedPolicy;
  downtimeBudgetMs: number;
  deadlineMs: number;
  ramBytes: number;
  endpoints: MigrationResult['endpoints'];
  /** performance.now() and Date.now() when `migrate` was issued; performance.now() at the end. */
  startedAt: number;
  startedWallMs: number;
  endedAt: number;
  controllerCpuPct: number;
  clock?: Partial<MigrationResult['clock']>;
  /** The driver saw post-copy begin by other means (it started the destination for it). */
  postcopySeen?: boolean;
  error?: string;
}

/** The one builder of a migration's result, from the core's record and the driver's facts. */
export function buildResult(core: Controller, ending: Ending, f: RunFacts): MigrationResult {
  const info = core.lastSample;
  const wallMs = f.endedAt - f.startedAt;
  const passes = core.passes;
  const error = f.error ?? (ending.outcome !== 'completed' ? info['error-desc'] : undefined);
  const iso = (perfMs: number) => new Date(f.startedWallMs + (perfMs - f.startedAt)).toISOString();
  return {
    schemaVersion: 1,
    outcome: ending.outcome,
    guestRunsOn: ending.guestRunsOn,
    reason: ending.reason,
    exitCode: resultExitCode(ending),
    startedAt: iso(f.startedAt),
    endedAt: iso(f.endedAt),
    endpoints: f.endpoints,
    qemuStatus: info.status ?? 'unknown',
    policy: f.policy.policy.name,
    policyConfig: f.policy.config,
    downtimeBudgetMs: f.downtimeBudgetMs,
    deadlineMs: f.deadlineMs,
    ramBytes: f.ramBytes,
    totalTimeMs: info['total-time'] ?? wallMs,
    wallMs,
    qemuDowntimeMs: info.downtime ?? 0,
    setupTimeMs: info['setup-time'] ?? 0,
    transferredBytes: info.ram?.transferred ?? passes.reduce((s, p) => s + p.bytesSent, 0),
    passes,
    decisions: core.decisions,
    actionLatencyMs: core.actionLatencyMs,
    regionSource: core.regionHistory?.source,
    postcopy: core.postcopyStarted || Boolean(f.postcopySeen),
    postcopyRecoveries: core.postcopyRecoveries,
    controllerCpuPct: f.controllerCpuPct,
    workingSetSamples: core.workingSetSamples,
    clock: { startedAt: f.startedAt, ...f.clock, endedAt: f.endedAt },
    ...(error ? { error } : {}),
  };
}

/** What a driver shows after a poll, from the core's latest state. */
export function progressOf(core: Controller, info: MigrationInfo): Progress | undefined {
  const s = core.latestState;
  if (!s) return undefined;
  return {
    elapsedMs: s.elapsedMs,
    status: s.status,
    pass: s.currentPass,
    remainingBytes: s.remainingBytes,
    transferredBytes: s.transferredBytes,
    ramBytes: s.ramBytes,
    bandwidthBps: s.bandwidthBps,
    dirtyPagesRate: info.ram?.['dirty-pages-rate'] ?? 0,
    lastDecision: core.decisions.at(-1),
  };
}

/** What an operator asks a running migration for (control socket `status`): the core's view now. */
export interface ControlStatus {
  elapsedMs: number;
  pass: number;
  status: string;
  downtimeLimitMs: number;
  postcopy: boolean;
}

/** The core's view for `status`, once it has observed the migration. */
export function controlStatus(core: Controller | undefined): ControlStatus | undefined {
  const s = core?.latestState;
  if (!core || !s) return undefined;
  return {
    elapsedMs: s.elapsedMs,
    pass: s.currentPass,
    status: s.status,
    downtimeLimitMs: core.downtimeLimitMs,
    postcopy: core.postcopyLatched,
  };
}
