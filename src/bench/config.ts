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
  /**
   * Migration streams for every run: absent or 1 = QEMU's single stream; n ≥ 2 = the `multifd`
   * capability with `multifd-channels` = n on both sides. A workload written as a cell
   * (`WORKLOAD@RAM/LINK/Nch`, parseBenchCell) sets its own.
   */
  multifdChannels: z.number().int().min(1).max(64).optional(),
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
  // Issue 17: adaptive and mp against the production rules on the same runs, pre-copy only, on
  // the two memory-intensive guests stock never finishes. A 60 s deadline lets every rule act by
  // its own clock (KubeVirt's stall detector needs 40 s of history); stock is left out (0 of 15
  // in `precopy`, and each failure would hold the lab for the whole deadline). The ladder keeps
  // the rungs that bracket L* = 2000 there.
  production: {
    workloads: ['random:200', 'hotcold:32:256:90'],
    policies: [
      'relaxed',
      'adaptive',
      'mp',
      'kubevirt-stall',
      'kubevirt-ramp',
      'proxmox',
      'xen',
      'throttle',
      'nova',
    ],
    ramMiB: 512,
    link: '1gbit',
    reps: 5,
    downtimeBudgetMs: 300,
    deadlineS: 60,
    postcopyPermitted: false,
    tap: false,
    ladder: [2000, 2500, 3000],
    summary: { ...DEFAULT_SUMMARY, workloads: ['random:200', 'hotcold:32:256:90'] },
  },
} satisfies Record<string, BenchConfig>;

/**
 * The simulator's validation (issue 18): the lab at 256 Mbit, 1 Gbit and 2.5 Gbit, one stream and
 * 4 multifd channels, 256 and 512 MiB guests; a workload that converges under stock (written
 * pages at ~50–65% of what the link carries) and one that does not (`random`: the guest rewrites
 * its region as fast as TCG lets it). Two calibration cells first: a 512 MiB guest holding 256 MiB
 * it barely rewrites (a 1 GiB guest filling 896 MiB did not start its workload within the lab's
 * 90 s), on a 25 Gbit link no stream here fills — the per-stream limit of this machine
 * (validate's stream caps). Pre-copy and post-copy are two benches: QEMU 10.0 refuses multifd
 * with post-copy ("Postcopy is not yet compatible with multifd"), so post-copy runs one stream.
 */
const VALIDATION_PRECOPY_CELLS = [
  'rate:256:100@512MiB/25gbit/1ch',
  'rate:256:100@512MiB/25gbit/4ch',
  'rate:128:4000@256MiB/256mbit/1ch',
  'random:100@256MiB/256mbit/1ch',
  'rate:128:20000@256MiB/1gbit/1ch',
  'random:100@256MiB/1gbit/1ch',
  'rate:128:20000@256MiB/1gbit/4ch',
  'random:100@256MiB/1gbit/4ch',
  'rate:200:20000@512MiB/1gbit/1ch',
  'random:200@512MiB/1gbit/1ch',
  'rate:200:20000@512MiB/1gbit/4ch',
  'random:200@512MiB/1gbit/4ch',
  'rate:200:20000@512MiB/2.5gbit/1ch',
  'random:200@512MiB/2.5gbit/1ch',
  'rate:200:20000@512MiB/2.5gbit/4ch',
  'random:200@512MiB/2.5gbit/4ch',
];
const VALIDATION_POSTCOPY_CELLS = [
  'random:100@256MiB/256mbit/1ch',
  'random:200@512MiB/1gbit/1ch',
  'random:200@512MiB/2.5gbit/1ch',
];

/**
 * The simulator's validation benches (`bench --config validation`, `validation-postcopy`): few
 * reps over many cells, for `sim --validate`, not for ranking policies.
 */
export const VALIDATION_CONFIGS = {
  validation: {
    workloads: VALIDATION_PRECOPY_CELLS,
    policies: ['stock', 'frs'],
    ramMiB: 512,
    link: '1gbit',
    reps: 2,
    downtimeBudgetMs: 300,
    deadlineS: 15,
    postcopyPermitted: false,
    tap: false,
    // Recorded for completeness: neither relaxed(L*) nor the oracle runs here.
    ladder: [300],
    oracleMaxPass: 1,
    summary: { ...DEFAULT_SUMMARY, workloads: VALIDATION_PRECOPY_CELLS },
  },
  // Post-copy after pass 1 beside pre-copy choices on the same guests: frs, relaxed(5000) (let
  // QEMU converge with a 5 s limit) and switch over after pass 1 (the oracle's candidates, k = 1).
  'validation-postcopy': {
    workloads: VALIDATION_POSTCOPY_CELLS,
    policies: ['frs', 'oracle'],
    ramMiB: 512,
    link: '1gbit',
    reps: 2,
    downtimeBudgetMs: 300,
    deadlineS: 20,
    postcopyPermitted: true,
    tap: false,
    ladder: [5000],
    oracleMaxPass: 1,
    summary: { ...DEFAULT_SUMMARY, workloads: VALIDATION_POSTCOPY_CELLS },
  },
} satisfies Record<string, BenchConfig>;

/**
 * A bench workload that carries its own guest size, link and streams, for a bench over several
 * of them (the simulator's validation): `hotcold:16:128:90@256MiB/1gbit/4ch`. Each part after
 * `@` is optional, in any order: `<n>MiB`, `<n>ch`, a link (parseLink). The plain workload (no
 * `@`) runs on the bench's RAM, link and channels.
 */
export interface BenchCell {
  workload: string;
  ramMiB?: number;
  link?: string;
  channels?: number;
}

export function parseBenchCell(text: string): BenchCell {
  const at = text.indexOf('@');
  if (at < 0) return { workload: text };
  const cell: BenchCell = { workload: text.slice(0, at) };
  for (const part of text.slice(at + 1).split('/')) {
    const ram = /^(\d+)MiB$/i.exec(part);
    const ch = /^(\d+)ch$/i.exec(part);
    const what = ram ? 'RAM' : ch ? 'channels' : 'link';
    if ((what === 'RAM' ? cell.ramMiB : what === 'channels' ? cell.channels : cell.link) !== undefined)
      throw new UsageError(`bench cell '${text}' gives its ${what} twice`);
    if (ram) cell.ramMiB = Number(ram[1]);
    else if (ch) cell.channels = Number(ch[1]);
    else cell.link = part;
  }
  if (cell.ramMiB === 0 || cell.channels === 0 || (cell.channels ?? 1) > 64)
    throw new UsageError(`bench cell '${text}': RAM and channels must be at least 1 (channels at most 64)`);
  return cell;
}

/** What one run of a workload of the bench uses: the cell's own RAM, link and channels, else the bench's. */
export function cellOf(
  workload: string,
  c: Pick<BenchConfig, 'ramMiB' | 'link' | 'multifdChannels'>,
): Required<BenchCell> {
  const cell = parseBenchCell(workload);
  return {
    workload: cell.workload,
    ramMiB: cell.ramMiB ?? c.ramMiB,
    link: cell.link ?? c.link,
    channels: cell.channels ?? c.multifdChannels ?? 1,
  };
}

/** A committed configuration by name. */
export function benchConfig(name: string): BenchConfig {
  const all: Record<string, BenchConfig> = { ...BENCH_CONFIGS, ...VALIDATION_CONFIGS };
  const c = Object.hasOwn(all, name) ? all[name] : undefined;
  if (!c) throw new UsageError(`unknown bench config '${name}': choose from ${Object.keys(all).join(', ')}`);
  return BenchConfigSchema.parse(structuredClone(c));
}
