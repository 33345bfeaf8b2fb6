import type { Results, RunRecord } from './results.js';
import { geometricMean, spread, type Spread } from './stats.js';

export interface Cell {
  workload: string;
  policy: string;
  runs: number;
  successRate: number;
  sloRate: number;
  totalMs: Spread;
  guestDowntimeMs: Spread;
  qemuDowntimeMs: Spread;
  bytes: Spread;
  /** Medians relative to relaxed(L*) and to the oracle on the same workload (successful runs). */
  vsRelaxed?: { total: number; downtime: number; bytes: number };
  vsOracle?: { total: number; downtime: number; bytes: number };
}

export interface Summary {
  cells: Cell[];
  policies: string[];
  workloads: string[];
  /** Workloads where stock failed at least once: the memory-intensive ones. */
  memoryIntensive: string[];
  perPolicy: {
    policy: string;
    successRate: number;
    sloRate: number;
    geoVsRelaxed?: { total: number; downtime: number; bytes: number };
  }[];
  oracle: Record<string, string | undefined>;
}

const ok = (r: RunRecord) => r.success;

function cellOf(workload: string, policy: string, runs: RunRecord[]): Cell {
  const good = runs.filter(ok);
  return {
    workload,
    policy,
    runs: runs.length,
    successRate: runs.length ? good.length / runs.length : NaN,
    sloRate: runs.length ? runs.filter((r) => r.sloSuccess).length / runs.length : NaN,
    totalMs: spread(good.map((r) => r.totalTimeMs)),
    guestDowntimeMs: spread(good.map((r) => r.guestDowntimeMs ?? NaN)),
    qemuDowntimeMs: spread(good.map((r) => r.qemuDowntimeMs)),
    bytes: spread(good.map((r) => r.transferredBytes)),
  };
}

function ratio(a: Cell, b: Cell | undefined) {
  if (!b || !(b.totalMs.n > 0) || !(a.totalMs.n > 0)) return undefined;
  return {
    total: a.totalMs.median / b.totalMs.median,
    downtime: a.guestDowntimeMs.median / b.guestDowntimeMs.median,
    bytes: a.bytes.median / b.bytes.median,
  };
}

/** Every figure of the reports, from the per-run records alone. */
export function summarize(results: Results): Summary {
  const matrix = results.runs.filter((r) => r.role === 'matrix');
  const workloads = results.matrix.workloads;
  const policies = [...new Set(matrix.map((r) => r.policy))];
  // The oracle: per workload, the fixed choice with the least median guest downtime (ties: total).
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
      .sort(
        (a, b) => a.guestDowntimeMs.median - b.guestDowntimeMs.median || a.totalMs.median - b.totalMs.median,
      );
    oracleCells[w] = candidates[0]
      ? { ...candidates[0], policy: `oracle = ${candidates[0].policy}` }
      : undefined;
    oracle[w] = candidates[0]?.policy;
  }
  const cells: Cell[] = [];
  for (const w of workloads) {
    const relaxed = policies.find((p) => p.startsWith('relaxed('));
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
  const memoryIntensive = workloads.filter((w) =>
    matrix.some((r) => r.workload === w && r.policyName === 'stock' && !r.success),
  );
  const perPolicy = policies.map((p) => {
    const runs = matrix.filter((r) => r.policy === p);
    const mine = cells.filter((c) => c.policy === p && memoryIntensive.includes(c.workload) && c.vsRelaxed);
    return {
      policy: p,
      successRate: runs.filter(ok).length / runs.length,
      sloRate: runs.filter((r) => r.sloSuccess).length / runs.length,
      geoVsRelaxed: mine.length
        ? {
            total: geometricMean(mine.map((c) => c.vsRelaxed!.total)),
            downtime: geometricMean(mine.map((c) => c.vsRelaxed!.downtime)),
            bytes: geometricMean(mine.map((c) => c.vsRelaxed!.bytes)),
          }
        : undefined,
    };
  });
  return { cells, policies, workloads, memoryIntensive, perPolicy, oracle };
}
