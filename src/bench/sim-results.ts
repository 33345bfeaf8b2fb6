import { hostEnvironment, referenceResults, type Results, type RunRecord } from './results.js';
import { quantile } from './stats.js';
import { resolvePolicy } from '../policy/index.js';
import { simulate } from '../sim/simulate.js';
import { linkBps, simClasses, type SweepOptions, type SweepRun } from '../sim/sweep.js';

const MiB = 2 ** 20;

// The simulator's runs in the benchmark's results format, and its validation against a real bench:
// bench reads the simulator (the simulator never reads the bench).

/** The sweep in the benchmark's results format, so `report` renders it like a bench run. */
export function sweepResults(o: SweepOptions, runs: SweepRun[]): Results {
  const multi = o.ramMiB.length > 1 || o.links.length > 1;
  const name = (r: SweepRun) => (multi ? `${r.workload}@${r.ramMiB}MiB/${r.link}` : r.workload);
  const relaxed = runs
    .filter((r) => r.policyName === 'relaxed')
    .map((r) => r.policyConfig.downtimeLimitMs as number);
  return {
    version: 1,
    createdAt: new Date().toISOString(),
    environment: hostEnvironment('simulated', 'sim'),
    matrix: {
      workloads: [...new Set(runs.map(name))],
      policies: o.policies,
      ramMiB: o.ramMiB[0]!,
      link: o.links.join(','),
      reps: 1,
      downtimeBudgetMs: o.downtimeBudgetMs,
      deadlineS: o.deadlineS,
      postcopyPermitted: Boolean(o.postcopyPermitted),
    },
    relaxedLimitMs: relaxed.length ? Math.max(...relaxed) : null,
    runs: runs.map((r): RunRecord => {
      const s = r.result;
      const ok = s.outcome === 'completed';
      return {
        key: `sim|${name(r)}|${r.policy}`,
        workload: name(r),
        policy: r.policyName === 'relaxed' ? 'relaxed(L*)' : r.policy,
        policyName: r.policyName,
        policyConfig: r.policyConfig,
        rep: 0,
        role: 'matrix',
        startedAt: new Date().toISOString(),
        success: ok,
        sloSuccess: ok && s.downtimeMs <= o.downtimeBudgetMs,
        outcome: s.outcome,
        reason: s.reason,
        totalTimeMs: s.totalTimeMs,
        wallMs: s.totalTimeMs,
        qemuDowntimeMs: s.postcopy ? 0 : s.downtimeMs,
        guestDowntimeMs: ok ? s.downtimeMs : null,
        transferredBytes: s.transferredBytes,
        linkBytes: null,
        passes: s.passes.length,
        differingPages: null,
        guestCheckOk: null,
        controllerCpuPct: 0,
        actionLatencyMs: null,
        predictedDowntimeMs: null,
        predictedTotalMs: null,
        predictedBytes: null,
        passTimeline: s.passes,
        decisions: s.decisions.map((d) => ({
          atMs: d.atMs,
          pass: d.pass,
          kind: d.action.kind,
          reason: d.action.reason,
        })),
      };
    }),
  };
}

export interface ValidationRow {
  workload: string;
  policy: string;
  realRuns: number;
  real: { totalMs: number; downtimeMs: number; bytes: number };
  sim: { outcome: string; totalMs: number; downtimeMs: number; bytes: number };
  error: { total: number; downtime: number; bytes: number };
}

/**
 * The simulator against a real bench run: for each workload × policy of its matrix, the same
 * policy and configuration simulated on the same RAM, link, budget and deadline, against the
 * median of the real successful runs.
 */
export function validate(real: Results): {
  rows: ValidationRow[];
  rankings: { workload: string; real: string[]; sim: string[] }[];
} {
  const { bps, rttMs } = linkBps(real.matrix.link);
  const rows: ValidationRow[] = [];
  // One driver's runs: with several, the reference driver's (the others are in the report's drivers section).
  const matrix = referenceResults(real).runs.filter((r) => r.role === 'matrix');
  const cells = [...new Set(matrix.map((r) => `${r.workload}\u0000${r.policy}`))];
  for (const cell of cells) {
    const [workload, policyLabel] = cell.split('\u0000') as [string, string];
    const rs = matrix.filter((r) => r.workload === workload && r.policy === policyLabel && r.success);
    if (rs.length === 0) continue;
    const first = rs[0]!;
    const policy = resolvePolicy(first.policyName, first.policyConfig);
    const s = simulate({
      ramBytes: real.matrix.ramMiB * MiB,
      linkBps: bps,
      rttMs,
      classes: simClasses(workload),
      policy,
      downtimeBudgetMs: real.matrix.downtimeBudgetMs,
      deadlineMs: real.matrix.deadlineS * 1000,
      postcopyPermitted: real.matrix.postcopyPermitted,
    });
    const med = (f: (r: RunRecord) => number | null) =>
      quantile(
        rs.map(f).filter((x): x is number => x !== null),
        0.5,
      );
    const realCell = {
      totalMs: med((r) => r.totalTimeMs),
      downtimeMs: med((r) => r.guestDowntimeMs),
      bytes: med((r) => r.transferredBytes),
    };
    const e = (simV: number, realV: number) => (s.outcome === 'completed' ? (simV - realV) / realV : NaN);
    rows.push({
      workload,
      policy: policyLabel,
      realRuns: rs.length,
      real: realCell,
      sim: {
        outcome: s.outcome,
        totalMs: s.totalTimeMs,
        downtimeMs: s.downtimeMs,
        bytes: s.transferredBytes,
      },
      error: {
        total: e(s.totalTimeMs, realCell.totalMs),
        downtime: e(s.downtimeMs, realCell.downtimeMs),
        bytes: e(s.transferredBytes, realCell.bytes),
      },
    });
  }
  // Policy ranking per workload by guest downtime, real vs simulated.
  const rankings = [...new Set(rows.map((r) => r.workload))].map((workload) => {
    const ws = rows.filter((r) => r.workload === workload);
    const order = (f: (r: ValidationRow) => number) =>
      [...ws].sort((a, b) => f(a) - f(b)).map((r) => r.policy);
    return {
      workload,
      real: order((r) => r.real.downtimeMs),
      sim: order((r) => (r.sim.outcome === 'completed' ? r.sim.downtimeMs : Infinity)),
    };
  });
  return { rows, rankings };
}

export function validationTable(v: ReturnType<typeof validate>): string {
  const pct = (x: number) =>
    Number.isFinite(x) ? `${x >= 0 ? '+' : '−'}${Math.abs(Math.round(x * 100))}%` : 'n/a';
  const lines = [
    '| workload | policy | real runs | total s real / sim | error | guest downtime ms real / sim | error | MiB real / sim | error |',
    '|---|---|---:|---:|---:|---:|---:|---:|---:|',
    ...v.rows.map(
      (r) =>
        `| ${r.workload} | ${r.policy} | ${r.realRuns} | ${(r.real.totalMs / 1000).toFixed(2)} / ${r.sim.outcome === 'completed' ? (r.sim.totalMs / 1000).toFixed(2) : r.sim.outcome} | ${pct(r.error.total)} | ${r.real.downtimeMs.toFixed(0)} / ${r.sim.outcome === 'completed' ? r.sim.downtimeMs.toFixed(0) : '-'} | ${pct(r.error.downtime)} | ${(r.real.bytes / MiB).toFixed(0)} / ${(r.sim.bytes / MiB).toFixed(0)} | ${pct(r.error.bytes)} |`,
    ),
    '',
    ...v.rankings.map(
      (k) =>
        `${k.workload}: ranking by guest downtime — real ${k.real.join(' < ')}; sim ${k.sim.join(' < ')}${k.real.join() === k.sim.join() ? ' (same)' : ' (differs)'}`,
    ),
  ];
  const abs = (f: (r: ValidationRow) => number) => {
    const xs = v.rows.map(f).filter(Number.isFinite).map(Math.abs);
    return xs.length ? pct(quantile(xs, 0.5)) : 'n/a';
  };
  lines.push(
    '',
    `median |error|: total ${abs((r) => r.error.total)}, downtime ${abs((r) => r.error.downtime)}, data ${abs((r) => r.error.bytes)}`,
  );
  return lines.join('\n');
}
