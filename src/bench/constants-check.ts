/**
 * Are the policies' tunable constants fitted to the bench's own workloads? Each constant is tried
 * at a few values in the simulator (the same policy code, src/sim) on the bench's workloads and on
 * workloads whose parameters differ (other burst on/off lengths, other region sizes, other rates),
 * and the default is judged against the best tried value per workload. A constant "fits only the
 * bench" when its default is (near) best on every bench workload but clearly worse on another.
 * Deterministic; docs/constants.md is its table.
 */

import { resolvePolicy } from '../policy/index.js';
import { simulate } from '../sim/simulate.js';
import { simClasses } from '../sim/sweep.js';
import { BENCH_CONFIGS } from './config.js';

const MiB = 2 ** 20;

/** Every workload of the committed bench configs. */
export const BENCH_WORKLOADS = [
  ...new Set(Object.values(BENCH_CONFIGS).flatMap((c) => c.workloads as readonly string[])),
];

/** Workloads like the bench's with other parameters: on/off lengths, region sizes, rates. */
export const OTHER_WORKLOADS = [
  'burst:200:500:2500',
  'burst:200:2000:2500',
  'burst:200:3000:3000',
  'burst:200:1000:6000',
  'burst:400:1000:2500',
  'burst:100:1000:2500',
  'hotcold:8:256:90',
  'hotcold:96:256:90',
  'hotcold:32:384:80',
  'phase:256:64:5',
  'phase:384:128:10',
  'rate:200:30000',
  'sweep:128:200',
];

export interface ConstantCheck {
  policy: string;
  constant: string;
  defaultValue: number;
  values: number[];
  /** The setting it is checked in: post-copy permitted or not, and the deadline. */
  postcopy: boolean;
  deadlineS: number;
}

/** The constants checked, each at its default and around it, in the bench's settings. */
export const CONSTANT_CHECKS: ConstantCheck[] = [
  { policy: 'adaptive', constant: 'observeMs', defaultValue: 1500, values: [500, 1000, 1500, 2500, 4000], postcopy: true, deadlineS: 30 },
  { policy: 'adaptive', constant: 'quietShare', defaultValue: 0.2, values: [0.1, 0.2, 0.4], postcopy: true, deadlineS: 30 },
  { policy: 'adaptive', constant: 'quietWaitS', defaultValue: 30, values: [5, 10, 30, 60], postcopy: true, deadlineS: 30 },
  { policy: 'adaptive', constant: 'quietWaitS', defaultValue: 30, values: [5, 10, 30, 60], postcopy: false, deadlineS: 120 },
  { policy: 'adaptive', constant: 'minGainMs', defaultValue: 30, values: [0, 30, 100], postcopy: false, deadlineS: 20 },
  { policy: 'adaptive', constant: 'postcopyTouchMs', defaultValue: 125, values: [60, 125, 250, 500], postcopy: true, deadlineS: 30 },
  { policy: 'adaptive', constant: 'limitMargin', defaultValue: 1.3, values: [1, 1.3, 2], postcopy: false, deadlineS: 20 },
  { policy: 'adaptive', constant: 'refuteEpsilon', defaultValue: 0.05, values: [0.02, 0.05, 0.15], postcopy: false, deadlineS: 20 },
  { policy: 'adaptive', constant: 'switchCostMs', defaultValue: 40, values: [20, 40, 80], postcopy: false, deadlineS: 20 },
  { policy: 'adaptive', constant: 'horizon', defaultValue: 6, values: [3, 6, 12], postcopy: false, deadlineS: 20 },
  { policy: 'mp', constant: 'heavyRatio', defaultValue: 0.8, values: [0.5, 0.8, 1.2], postcopy: true, deadlineS: 30 },
  { policy: 'mp', constant: 'maxOverrun', defaultValue: 4, values: [2, 4, 8], postcopy: true, deadlineS: 30 },
  { policy: 'mp', constant: 'hotSetTolerance', defaultValue: 0.15, values: [0.05, 0.15, 0.3], postcopy: false, deadlineS: 20 },
  { policy: 'mp', constant: 'convergingRatio', defaultValue: 0.7, values: [0.5, 0.7, 0.9], postcopy: false, deadlineS: 20 },
  { policy: 'mp', constant: 'stableJaccard', defaultValue: 0.8, values: [0.6, 0.8, 0.9], postcopy: false, deadlineS: 20 },
  { policy: 'mp', constant: 'movingJaccard', defaultValue: 0.5, values: [0.3, 0.5, 0.7], postcopy: false, deadlineS: 20 },
  { policy: 'mp', constant: 'uniformCoverage', defaultValue: 0.8, values: [0.6, 0.8, 0.95], postcopy: false, deadlineS: 20 },
  { policy: 'frs', constant: 'epsilon', defaultValue: 0.1, values: [0.05, 0.1, 0.2], postcopy: false, deadlineS: 20 },
]; // prettier-ignore

/** One simulated run, reduced to what the judgement uses. */
export interface Outcome {
  ok: boolean;
  stallMs: number;
  totalMs: number;
  postcopy: boolean;
}

/** The bench's lab setting: 512 MiB, 1 Gbit/s, budget 300 ms. */
export function simulateWith(c: ConstantCheck, workload: string, value: number): Outcome {
  const r = simulate({
    ramBytes: 512 * MiB,
    linkBps: 125e6,
    classes: simClasses(workload),
    policy: resolvePolicy(c.policy, { [c.constant]: value }),
    downtimeBudgetMs: 300,
    deadlineMs: c.deadlineS * 1000,
    postcopyPermitted: c.postcopy,
  });
  const ok = r.outcome === 'completed' && r.totalTimeMs <= c.deadlineS * 1000;
  return { ok, stallMs: r.downtimeMs, totalMs: r.totalTimeMs, postcopy: r.postcopy };
}

/**
 * Whether `a` is clearly worse than `b`: failed where b completed, a stall over 1.1 × b's + 20 ms,
 * or (stalls alike) a total time over 1.5 × b's.
 */
export function clearlyWorse(a: Outcome, b: Outcome): boolean {
  if (!a.ok) return b.ok;
  if (!b.ok) return false;
  if (a.stallMs > b.stallMs * 1.1 + 20) return true;
  return a.stallMs >= b.stallMs - 20 && a.totalMs > b.totalMs * 1.5;
}

export interface WorkloadFit {
  workload: string;
  bench: boolean;
  outcomes: Outcome[];
  /** The tried value with the least stall (then total time) among completed runs. */
  best: number;
  /** The default is clearly worse than the best tried value here. */
  defaultWorse: boolean;
}

export type Verdict = 'robust' | 'fits only the bench' | 'off on the bench too' | 'no effect';

export interface ConstantFit {
  check: ConstantCheck;
  rows: WorkloadFit[];
  verdict: Verdict;
}

/** Judges one constant on every bench and other workload. */
export function checkConstant(
  c: ConstantCheck,
  workloads = [...BENCH_WORKLOADS, ...OTHER_WORKLOADS],
): ConstantFit {
  const rows = workloads.map((workload): WorkloadFit => {
    const outcomes = c.values.map((v) => simulateWith(c, workload, v));
    const order = c.values
      .map((v, i) => ({ v, o: outcomes[i]! }))
      .sort(
        (x, y) => Number(y.o.ok) - Number(x.o.ok) || x.o.stallMs - y.o.stallMs || x.o.totalMs - y.o.totalMs,
      );
    const best = order[0]!;
    const dflt = outcomes[c.values.indexOf(c.defaultValue)]!;
    return {
      workload,
      bench: BENCH_WORKLOADS.includes(workload),
      outcomes,
      best: best.v,
      defaultWorse: clearlyWorse(dflt, best.o),
    };
  });
  return { check: c, rows, verdict: verdictOf(rows) };
}

export function verdictOf(rows: WorkloadFit[]): Verdict {
  const same = rows.every((r) =>
    r.outcomes.every((o) => !clearlyWorse(o, r.outcomes[0]!) && !clearlyWorse(r.outcomes[0]!, o)),
  );
  if (same) return 'no effect';
  if (rows.some((r) => r.bench && r.defaultWorse)) return 'off on the bench too';
  return rows.some((r) => !r.bench && r.defaultWorse) ? 'fits only the bench' : 'robust';
}

const fmt = (o: Outcome) =>
  o.ok
    ? `${o.stallMs.toFixed(0)} ms / ${(o.totalMs / 1000).toFixed(1)} s${o.postcopy ? ' pc' : ''}`
    : 'failed';

/** The check as a Markdown table per constant: one row per workload, one column per value. */
export function fitTable(f: ConstantFit): string {
  const c = f.check;
  const head = `| workload | ${c.values.map((v) => (v === c.defaultValue ? `**${v}** (default)` : String(v))).join(' | ')} | best |`;
  const rule = `|---|${c.values.map(() => '---:').join('|')}|---:|`;
  const rows = f.rows.map(
    (r) =>
      `| ${r.workload}${r.bench ? ' (bench)' : ''} | ${r.outcomes.map((o, i) => (c.values[i] === c.defaultValue && r.defaultWorse ? `**${fmt(o)}** ✗` : fmt(o))).join(' | ')} | ${r.best} |`,
  );
  return [
    `### ${c.policy}.${c.constant} = ${c.defaultValue} — ${f.verdict}`,
    '',
    `Post-copy ${c.postcopy ? 'permitted' : 'not permitted'}, deadline ${c.deadlineS} s; cells: guest stall / total time (pc = post-copy); ✗ = the default is clearly worse than the best tried value.`,
    '',
    head,
    rule,
    ...rows,
  ].join('\n');
}
