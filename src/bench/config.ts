import { z } from 'zod';
import { UsageError } from '../util/errors.js';

/**
 * How the headline figures are summarised — fixed before the run and recorded with the results,
 * never chosen from them (e.g. no "where stock failed" filter: a policy that fails on one of these
 * workloads gets no geometric mean rather than a flattering one over the rest).
 */
export const SummaryConfigSchema = z.object({
  /** The workloads the geometric means run over. */
  workloads: z.array(z.string()).min(1),
  /** Per workload, the median of successful runs against relaxed(L*)'s; then their geometric mean. */
  statistic: z.literal('geomean-of-median-ratios-vs-relaxed'),
  /** What every downtime figure, ratio and ranking uses: the guest's total stall. */
  downtime: z.literal('guest-total-stall'),
});
export type SummaryConfig = z.infer<typeof SummaryConfigSchema>;

/**
 * How each run's migration is driven: `qmp` (the lab's two QEMU processes, kvmigrate owning both
 * monitors) or `libvirt` (the lab guest as a domain on the lab's libvirt pair, driven through
 * libvirt's API).
 */
export const DriverSchema = z.enum(['qmp', 'libvirt']);
export type Driver = z.infer<typeof DriverSchema>;
export const DRIVERS: readonly Driver[] = DriverSchema.options;

/** Everything a bench run depends on, as results.json records it. */
export const BenchConfigSchema = z.object({
  workloads: z.array(z.string()).min(1),
  policies: z.array(z.string()).min(1),
  ramMiB: z.number().int().positive(),
  link: z.string(),
  reps: z.number().int().positive(),
  downtimeBudgetMs: z.number().positive(),
  deadlineS: z.number().positive(),
  postcopyPermitted: z.boolean(),
  tap: z.boolean(),
  /** relaxed(L*)'s ladder: every rung runs on every rep (also the oracle's "let QEMU converge" candidates). */
  ladder: z.array(z.number().positive()).min(1).optional(),
  /** The oracle's candidates: switch after pass k and (post-copy permitted) post-copy after pass k, k = 1…K. */
  oracleMaxPass: z.number().int().min(1).max(20).optional(),
  /**
   * The drivers every unit runs under, interleaved run by run; the first is the reference the
   * report's figures, relaxed(L*) and the oracle use. Absent in results from before: QMP only.
   */
  drivers: z.array(DriverSchema).min(1).optional(),
  summary: SummaryConfigSchema,
});
export type BenchConfig = z.infer<typeof BenchConfigSchema>;

export const DEFAULT_SUMMARY: Omit<SummaryConfig, 'workloads'> = {
  statistic: 'geomean-of-median-ratios-vs-relaxed',
  downtime: 'guest-total-stall',
};

/** The summary over every workload of the run, unless a fixed subset is named. */
export function summaryConfig(workloads: string[], summaryWorkloads?: string[]): SummaryConfig {
  const set = summaryWorkloads ?? workloads;
  const unknown = set.filter((w) => !workloads.includes(w));
  if (unknown.length)
    throw new UsageError(
      `summary workloads not in the run: ${unknown.join(', ')} (run: ${workloads.join(', ')})`,
    );
  return { ...DEFAULT_SUMMARY, workloads: [...set] };
}

/**
 * The committed configurations of the published benchmarks (docs/results, docs/results-postcopy):
 * the workload sets they were published with, every one of them in the summary, ≥5 reps; a
 * ladder from stock's limit to one that sends all RAM in one stop (512 MiB at 1 Gbit/s ≈ 4.3 s),
 * with 2500 between 2000 and 3000 (the old ladder's coarsest step); oracle candidates k = 1…4.
 */
export const BENCH_CONFIGS = {
  precopy: {
    workloads: ['random:200', 'hotcold:32:256:90', 'sweep:256:400', 'rate:200:20000'],
    policies: ['stock', 'relaxed', 'frs', 'mp', 'adaptive', 'oracle'],
    ramMiB: 512,
    link: '1gbit',
    reps: 5,
    downtimeBudgetMs: 300,
    deadlineS: 20,
    postcopyPermitted: false,
    tap: false,
    ladder: [300, 1000, 1500, 2000, 2500, 3000, 5000],
    oracleMaxPass: 4,
    summary: {
      ...DEFAULT_SUMMARY,
      workloads: ['random:200', 'hotcold:32:256:90', 'sweep:256:400', 'rate:200:20000'],
    },
  },
  postcopy: {
    workloads: ['random:200', 'hotcold:32:256:90', 'sweep:256:400', 'burst:200:1000:2500'],
    // The oracle here too: post-copy after pass k is one of its candidates only where post-copy is permitted.
    policies: ['stock', 'relaxed', 'frs', 'mp', 'adaptive', 'oracle'],
    ramMiB: 512,
    link: '1gbit',
    reps: 5,
    downtimeBudgetMs: 300,
    deadlineS: 30,
    postcopyPermitted: true,
    tap: false,
    ladder: [300, 1000, 1500, 2000, 2500, 3000, 5000],
    oracleMaxPass: 4,
    summary: {
      ...DEFAULT_SUMMARY,
      workloads: ['random:200', 'hotcold:32:256:90', 'sweep:256:400', 'burst:200:1000:2500'],
    },
  },
} satisfies Record<string, BenchConfig>;

/** A committed configuration by name. */
export function benchConfig(name: string): BenchConfig {
  const c = (BENCH_CONFIGS as Record<string, BenchConfig>)[name];
  if (!c)
    throw new UsageError(
      `unknown bench config '${name}': choose from ${Object.keys(BENCH_CONFIGS).join(', ')}`,
    );
  return BenchConfigSchema.parse(structuredClone(c));
}
