import type { PassRecord } from '../policy/types.js';
import type { CoreEvent, Decision, WorkingSetSample } from './controller.js';
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
