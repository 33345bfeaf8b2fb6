import { DEFAULT_SUMMARY, type SummaryConfig } from './config.js';
import type { Results, RunRecord } from './results.js';
import { geometricMean, spread, type Spread } from './stats.js';

export interface Ratios {
  total: number;
  /** The guest's total stall. */
  stall: number;
  bytes: number;
}

export interface Cell {
  workload: string;
  policy: string;
  runs: number;
  successRate: number;
  sloRate: number;
  totalMs: Spread;
  /** The guest's total stall (every downtime figure and ranking uses it). */
  stallMs: Spread;
  longestSilenceMs: Spread;
  /** Progress during pre-copy ÷ before (1 = unaffected). */
  slowdown: Spread;
  qemuDowntimeMs: Spread;
  bytes: Spread;
  /** Medians relative to relaxed(L*) and to the oracle on the same workload (successful runs). */
  vsRelaxed?: Ratios;
  vsOracle?: Ratios;
}

export interface Summary {
  cells: Cell[];
  policies: string[];
  workloads: string[];
  /** How the headline is summarised: fixed in the bench config before the run. */
  summary: SummaryConfig;
  perPolicy: {
    policy: string;
    successRate: number;
    sloRate: number;
    /** Geometric mean over every summary workload; absent unless each has a ratio. */
    geoVsRelaxed?: Ratios;
    /** Summary workloads without a ratio (no successful run, or no relaxed(L*) one). */
    missing: string[];
  }[];
  oracle: Record<string, string | undefined>;
  /** Runs recorded before the total stall existed: their downtime is an older single-gap figure. */
  legacyDowntime: boolean;
}

const ok = (r: RunRecord) => r.success;

/** The guest's total stall of a run; older and simulated results only have `guestDowntimeMs`. */
export const stallOf = (r: RunRecord): number => r.totalStallMs ?? r.guestDowntimeMs ?? NaN;

function cellOf(workload: string, policy: string, runs: RunRecord[]): Cell {
  const good = runs.filter(ok);
  return {
    workload,
    policy,
    runs: runs.length,
    successRate: runs.length ? good.length / runs.length : NaN,
    sloRate: runs.length ? runs.filter((r) => r.sloSuccess).length / runs.length : NaN,
    totalMs: spread(good.map((r) => r.totalTimeMs)),
    stallMs: spread(good.map(stallOf)),
    longestSilenceMs: spread(good.map((r) => r.longestSilenceMs ?? NaN)),
    slowdown: spread(good.map((r) => r.slowdown ?? NaN)),
    qemuDowntimeMs: spread(good.map((r) => r.qemuDowntimeMs)),
    bytes: spread(good.map((r) => r.transferredBytes)),
  };
}

/** a ÷ b, where two zero stalls are equal (1) rather than undefined. */
export function medianRatio(a: number, b: number): number {
  if (a === 0 && b === 0) return 1;
  return a / b;
}

function ratio(a: Cell, b: Cell | undefined): Ratios | undefined {
  if (!b || !(b.totalMs.n > 0) || !(a.totalMs.n > 0)) return undefined;
  return {
    total: medianRatio(a.totalMs.median, b.totalMs.median),
    stall: medianRatio(a.stallMs.median, b.stallMs.median),
    bytes: medianRatio(a.bytes.median, b.bytes.median),
  };
}

/** The geometric mean of each ratio over the fixed set, or undefined when any is missing or not positive-finite. */
export function geoOver(ratios: (Ratios | undefined)[]): Ratios | undefined {
  if (ratios.length === 0 || ratios.some((r) => r === undefined)) return undefined;
  const g = (f: (r: Ratios) => number) => {
    const v = ratios.map((r) => f(r!));
    // A zero or infinite ratio has no geometric mean: say so rather than drop the workload.
    return v.every((x) => Number.isFinite(x) && x > 0) ? geometricMean(v) : NaN;
  };
  return { total: g((r) => r.total), stall: g((r) => r.stall), bytes: g((r) => r.bytes) };
}

/** Every figure of the reports, from the per-run records alone. */
export function summarize(results: Results): Summary {
  const matrix = results.runs.filter((r) => r.role === 'matrix');
  const workloads = results.matrix.workloads;
  const policies = [...new Set(matrix.map((r) => r.policy))];
  const summary = results.config?.summary ?? { ...DEFAULT_SUMMARY, workloads };
  // The oracle: per workload, the fixed choice with the least median total stall (ties: total time).
  const oracle: Record<string, string | undefined> = {};
  const oracleCells: Record<string, Cell | undefined> = {};
  for (const w of workloads) {
    const candidates = [
      ...new Set(results.runs.filter((r) => r.role === 'oracle' && r.workload === w).map((r) => r.policy)),
    ]
      .map((p) =>
        cellOf(
          w,
          p,
          results.runs.filter((r) => r.role === 'oracle' && r.workload === w && r.policy === p),
        ),
      )
      .filter((c) => c.successRate > 0)
      .sort((a, b) => a.stallMs.median - b.stallMs.median || a.totalMs.median - b.totalMs.median);
    oracleCells[w] = candidates[0]
      ? { ...candidates[0], policy: `oracle = ${candidates[0].policy}` }
      : undefined;
    oracle[w] = candidates[0]?.policy;
  }
  const cells: Cell[] = [];
  const relaxed = policies.find((p) => p.startsWith('relaxed('));
  for (const w of workloads) {
    const relaxedCell = relaxed
      ? cellOf(
          w,
          relaxed,
          matrix.filter((r) => r.workload === w && r.policy === relaxed),
        )
      : undefined;
    for (const p of policies) {
      const c = cellOf(
        w,
        p,
        matrix.filter((r) => r.workload === w && r.policy === p),
      );
      c.vsRelaxed = p === relaxed ? undefined : ratio(c, relaxedCell);
      c.vsOracle = ratio(c, oracleCells[w]);
      cells.push(c);
    }
    if (oracleCells[w]) cells.push(oracleCells[w]!);
  }
  const perPolicy = policies.map((p) => {
    const runs = matrix.filter((r) => r.policy === p);
    // Over the fixed workload set, whatever the results: a missing ratio voids the mean.
    const mine = summary.workloads.map(
      (w) => cells.find((c) => c.policy === p && c.workload === w)?.vsRelaxed,
    );
    return {
      policy: p,
      successRate: runs.filter(ok).length / runs.length,
      sloRate: runs.filter((r) => r.sloSuccess).length / runs.length,
      geoVsRelaxed: p === relaxed ? undefined : geoOver(mine),
      missing: p === relaxed ? [] : summary.workloads.filter((_, i) => mine[i] === undefined),
    };
  });
  const legacyDowntime = matrix.some((r) => r.totalStallMs === undefined);
  return { cells, policies, workloads, summary, perPolicy, oracle, legacyDowntime };
}
