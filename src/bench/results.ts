import { readInputFile } from '../util/fs.js';

/** A results file of thousands of runs with every pass is a few MiB; far past that it is not one. */
const MAX_RESULTS_BYTES = 256 * 2 ** 20;
import os from 'node:os';
import { z } from 'zod';
import { PassRecordSchema } from '../policy/types.js';
import { BenchConfigSchema, DriverSchema, type Driver } from './config.js';
import { UsageError } from '../util/errors.js';

/** One benchmark run, flat: every figure in the reports is computed from these. */
export const RunRecordSchema = z.object({
  key: z.string(),
  workload: z.string(),
  /** Policy as shown in reports, e.g. `relaxed(2000)`, `switch-at-pass(3)`. */
  policy: z.string(),
  policyName: z.string(),
  policyConfig: z.record(z.string(), z.unknown()),
  rep: z.number().int().nonnegative(),
  /** Runs that only serve to find relaxed(L*) or the oracle. */
  role: z.enum(['matrix', 'ladder', 'oracle']),
  /** Which driver ran the migration (absent in results from before there was a choice: QMP). */
  driver: DriverSchema.optional(),
  startedAt: z.string(),
  success: z.boolean(),
  sloSuccess: z.boolean(),
  outcome: z.enum(['completed', 'failed', 'cancelled']),
  reason: z.string(),
  totalTimeMs: z.number(),
  wallMs: z.number(),
  /** QEMU's own `downtime`: the stop-and-copy pause only (near 0 after post-copy). */
  qemuDowntimeMs: z.number(),
  /**
   * The guest's total stall (ms) on completed runs, else null — the same figure as totalStallMs,
   * kept under this name for its readers (sim --validate, older results where it was a single gap).
   */
  guestDowntimeMs: z.number().nullable(),
  /**
   * What the guest felt, one definition for every policy (src/lab/guest-stall.ts): over the
   * migration window, every heartbeat silence longer than two periods, beyond one period, summed.
   * Every run, whatever its outcome. Absent in results older than this metric (and simulated ones).
   */
  totalStallMs: z.number().nullable().optional(),
  /** The longest single heartbeat silence in the window, ms. */
  longestSilenceMs: z.number().nullable().optional(),
  /** Workload progress per second during pre-copy ÷ before the migration (1 = unaffected). */
  slowdown: z.number().nullable().optional(),
  /** A real application's request latency in the migration window, on the host's clock (app workloads), ms. */
  appP99Ms: z.number().nullable().optional(),
  appMaxMs: z.number().nullable().optional(),
  /** The same p99 before `migrate`. */
  appBaselineP99Ms: z.number().nullable().optional(),
  /** The commit the run's code came from, and whether the tree had changes beyond it. */
  commit: z.string().nullable().optional(),
  dirty: z.boolean().nullable().optional(),
  transferredBytes: z.number(),
  linkBytes: z.number().nullable(),
  passes: z.number().int(),
  /**
   * How the run was verified: `byte-for-byte` (destination RAM compared with the source's at the
   * switch, plus the guest's own check), `guest-check-only` (post-copy: the destination ran before
   * completion, so only the guest's own integrity check), `none` (the migration did not complete).
   * Absent in older results: verificationOf() derives it.
   */
  verification: z.enum(['byte-for-byte', 'guest-check-only', 'none']).optional(),
  differingPages: z.number().int().nullable(),
  guestCheckOk: z.boolean().nullable(),
  controllerCpuPct: z.number(),
  actionLatencyMs: z.number().nullable(),
  predictedDowntimeMs: z.number().nullable(),
  predictedTotalMs: z.number().nullable().default(null),
  predictedBytes: z.number().nullable().default(null),
  passTimeline: z.array(PassRecordSchema),
  decisions: z.array(z.object({ atMs: z.number(), pass: z.number(), kind: z.string(), reason: z.string() })),
});
export type RunRecord = z.infer<typeof RunRecordSchema>;
export type VerificationKind = NonNullable<RunRecord['verification']>;

/** The driver of a run; runs from before there was a choice went through QMP. */
export const driverOf = (r: Pick<RunRecord, 'driver'>): Driver => r.driver ?? 'qmp';

/** The drivers of a bench as configured (QMP alone unless the config says otherwise). */
export const driversOf = (results: Pick<Results, 'config'>): Driver[] => results.config?.drivers ?? ['qmp'];

/**
 * The results as if only the reference driver (the first configured) had run: what the summary,
 * relaxed(L*), the oracle, the charts and the simulator's validation read. The drivers section of
 * the report is where the others appear.
 */
export function referenceResults(results: Results): Results {
  const ref = driversOf(results)[0]!;
  if (results.runs.every((r) => driverOf(r) === ref)) return results;
  return { ...results, runs: results.runs.filter((r) => driverOf(r) === ref) };
}

/** How a run was verified, as recorded or (older results) from what it recorded. */
export function verificationOf(
  r: Pick<RunRecord, 'verification' | 'differingPages' | 'guestCheckOk'>,
): VerificationKind {
  if (r.verification) return r.verification;
  if (r.differingPages !== null) return 'byte-for-byte';
  return r.guestCheckOk !== null ? 'guest-check-only' : 'none';
}

export const ResultsSchema = z.object({
  version: z.literal(1),
  createdAt: z.string(),
  environment: z.object({
    qemu: z.string(),
    kernelPackage: z.string(),
    hostKernel: z.string(),
    cpu: z.string(),
    cores: z.number(),
    accel: z.string(),
    node: z.string(),
  }),
  matrix: z.object({
    workloads: z.array(z.string()),
    policies: z.array(z.string()),
    ramMiB: z.number(),
    link: z.string(),
    reps: z.number(),
    downtimeBudgetMs: z.number(),
    deadlineS: z.number(),
    /** Policies that can post-copy were allowed to (`--allow-postcopy`). */
    postcopyPermitted: z.boolean().default(false),
  }),
  /**
   * Which code produced these results: the commit of the latest invocation; `dirty` if any
   * invocation ran from a tree with changes, or runs come from more than one commit.
   */
  provenance: z
    .object({
      commit: z.string().nullable(),
      dirty: z.boolean().nullable(),
      commits: z.array(z.string()),
    })
    .optional(),
  /** The full configuration, fixed before the run (workload set and summary statistic included). */
  config: BenchConfigSchema.optional(),
  /** relaxed(L*): the smallest ladder limit with which stock completed every workload. */
  relaxedLimitMs: z.number().nullable(),
  runs: z.array(RunRecordSchema),
});
export type Results = z.infer<typeof ResultsSchema>;

/** A results file that cannot be read or is not one: bad input (exit 2). */
export class ResultsFileError extends UsageError {
  override readonly code: string = 'results-file';
}

/** Reads and validates a results.json, naming the first problem. */
export function readResults(file: string): Results {
  let text: string;
  try {
    text = readInputFile(file, MAX_RESULTS_BYTES, 'results file');
  } catch (err) {
    const missing = /does not exist/.test((err as Error).message);
    throw new ResultsFileError(
      missing ? `cannot read ${file}: run 'kvmigrate bench --out DIR' first` : (err as Error).message,
    );
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    throw new ResultsFileError(`${file} is not valid JSON (${(err as Error).message})`);
  }
  const parsed = ResultsSchema.safeParse(json);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    throw new ResultsFileError(
      `${file} is malformed at ${issue.path.join('.') || '(top)'}: ${issue.message}`,
    );
  }
  return parsed.data;
}

/** This host as results record it; `qemu` and `accel` say what ran the migrations. */
export function hostEnvironment(qemu: string, accel: string): Results['environment'] {
  return {
    qemu,
    kernelPackage: '',
    hostKernel: os.release(),
    cpu: os.cpus()[0]?.model ?? 'unknown',
    cores: os.cpus().length,
    accel,
    node: process.version,
  };
}
