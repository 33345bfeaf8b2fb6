import { DEFAULT_SUMMARY, type SummaryConfig } from './config.js';
import {
  candidateRuns,
  chooseOracle,
  objectiveOf,
  OBJECTIVES,
  relaxedLimit,
  type Objective,
  type OracleChoice,
} from './oracle.js';
import {
  referenceResults,
  verificationOf,
  type Results,
  type RunRecord,
  type VerificationKind,
} from './results.js';
import {
  bootstrapGeoRatio,
  bootstrapMedian,
  ratioOf,
  spread,
  verdictOf,
  type Interval,
  type Spread,
  type Verdict,
} from './stats.js';

/** A median with its p10–p90 spread and its bootstrap 95% interval (lo–hi). */
export interface Estimate extends Spread {
  lo: number;
  hi: number;
}

/** Ratios of medians (this ÷ the reference), each with its 95% interval; under 1 = less. */
export type Ratios = Record<Objective, Interval>;

export interface Cell {
  workload: string;
  policy: string;
  /** What the row is: a matrix policy, relaxed(L*) (the ladder's runs at L*), or the oracle for one objective. */
  kind: 'policy' | 'relaxed' | 'oracle';
  runs: number;
  successRate: number;
  sloRate: number;
  totalMs: Estimate;
  /** The guest's total stall (every downtime figure and ranking uses it). */
  stallMs: Estimate;
  longestSilenceMs: Estimate;
  /** Progress during pre-copy ÷ before (1 = unaffected). */
  slowdown: Estimate;
  qemuDowntimeMs: Estimate;
  bytes: Estimate;
  /** How many of the cell's runs were verified each way. */
  verified: Record<VerificationKind, number>;
  /** Against relaxed(L*) on the same workload (successful runs). */
  vsRelaxed?: Ratios;
  /** Against the oracle of each objective, on the oracle's held-out reps only (both sides). */
  vsOracle?: Partial<Ratios>;
}

export interface PolicySummary {
  policy: string;
  successRate: number;
  sloRate: number;
  /** Geometric mean over every summary workload, with its interval; absent unless each has a ratio. */
  geoVsRelaxed?: Ratios;
  /** Summary workloads without a ratio (no successful run, or no relaxed(L*) one). */
  missing: string[];
}

export interface Summary {
  cells: Cell[];
  policies: string[];
  workloads: string[];
  /** How the headline is summarised: fixed in the bench config before the run. */
  summary: SummaryConfig;
  perPolicy: PolicySummary[];
  /** Per workload and objective, the candidate chosen on the selection reps. */
  oracle: Record<string, Partial<Record<Objective, OracleChoice>>>;
  /** relaxed(L*)'s label, when there is one. */
  relaxed?: string;
  /** Runs recorded before the total stall existed: their downtime is an older single-gap figure. */
  legacyDowntime: boolean;
}

const ok = (r: RunRecord) => r.success;

/** The guest's total stall of a run; older and simulated results only have `guestDowntimeMs`. */
export const stallOf = (r: RunRecord): number => r.totalStallMs ?? r.guestDowntimeMs ?? NaN;

/** a ÷ b, where two zero stalls are equal (1) rather than undefined. */
export const medianRatio = ratioOf;

function estimate(values: number[], key: string): Estimate {
  const ci = bootstrapMedian(values, key);
  return { ...spread(values), lo: ci.lo, hi: ci.hi };
}

export function cellOf(
  workload: string,
  policy: string,
  runs: RunRecord[],
  kind: Cell['kind'] = 'policy',
): Cell {
  const good = runs.filter(ok);
  const key = (metric: string) => `${workload}|${policy}|${metric}`;
  const verified: Record<VerificationKind, number> = { 'byte-for-byte': 0, 'guest-check-only': 0, none: 0 };
  for (const r of runs) verified[verificationOf(r)]++;
  return {
    workload,
    policy,
    kind,
    runs: runs.length,
    successRate: runs.length ? good.length / runs.length : NaN,
    sloRate: runs.length ? runs.filter((r) => r.sloSuccess).length / runs.length : NaN,
    totalMs: estimate(
      good.map((r) => r.totalTimeMs),
      key('total'),
    ),
    stallMs: estimate(good.map(stallOf), key('stall')),
    longestSilenceMs: estimate(
      good.map((r) => r.longestSilenceMs ?? NaN),
      key('longest'),
    ),
    slowdown: estimate(
      good.map((r) => r.slowdown ?? NaN),
      key('slowdown'),
    ),
    qemuDowntimeMs: estimate(
      good.map((r) => r.qemuDowntimeMs),
      key('qemu'),
    ),
    bytes: estimate(
      good.map((r) => r.transferredBytes),
      key('bytes'),
    ),
    verified,
  };
}

/** Per objective, the successful runs' figures: what ratios compare. */
const figures = (runs: RunRecord[], o: Objective) => runs.filter(ok).map((r) => objectiveOf(r, o));

/**
 * Every objective's ratio of medians, a's runs over b's, with bootstrap intervals (seeded by
 * `key`); undefined when either side has no successful run.
 */
export function ratiosOf(a: RunRecord[], b: RunRecord[], key: string): Ratios | undefined {
  if (!a.some(ok) || !b.some(ok)) return undefined;
  const r = (o: Objective) => bootstrapGeoRatio([{ a: figures(a, o), b: figures(b, o) }], `${key}|${o}`);
  return { total: r('total'), stall: r('stall'), bytes: r('bytes') };
}

/**
 * The geometric mean of each objective's ratio over the fixed workload set, with intervals, or
 * undefined when a workload has no ratio; a zero or infinite ratio gives NaN (no mean).
 */
export function geoRatiosOf(pairs: { a: RunRecord[]; b: RunRecord[] }[], key: string): Ratios | undefined {
  if (pairs.length === 0 || pairs.some((p) => !p.a.some(ok) || !p.b.some(ok))) return undefined;
  const g = (o: Objective) =>
    bootstrapGeoRatio(
      pairs.map((p) => ({ a: figures(p.a, o), b: figures(p.b, o) })),
      `${key}|${o}`,
    );
  return { total: g('total'), stall: g('stall'), bytes: g('bytes') };
}

/** Each ratio's verdict: better, worse, tie (its interval contains 1) or unknown (no interval). */
export function verdicts(r: Ratios | undefined): Record<Objective, Verdict> | undefined {
  return r && { total: verdictOf(r.total), stall: verdictOf(r.stall), bytes: verdictOf(r.bytes) };
}

/**
 * relaxed(L*)'s runs: a matrix cell labelled relaxed(…) (older and simulated results), else the
 * ladder's runs at L* (every rung runs on every rep).
 */
export function relaxedRuns(results: Results): { label?: string; runs: RunRecord[] } {
  const matrix = results.runs.filter((r) => r.role === 'matrix');
  const label = matrix.find((r) => r.policy.startsWith('relaxed('))?.policy;
  if (label) return { label, runs: matrix.filter((r) => r.policy === label) };
  const limit =
    results.relaxedLimitMs ??
    relaxedLimit(results.runs, results.matrix.workloads, results.matrix.deadlineS)?.limitMs;
  if (limit === undefined || limit === null) return { runs: [] };
  const runs = results.runs.filter(
    (r) => r.role === 'ladder' && r.policyName === 'relaxed' && r.policyConfig.downtimeLimitMs === limit,
  );
  return runs.length ? { label: `relaxed(${limit})`, runs } : { runs: [] };
}

/** The matrix policies' labels in the order the config names them, relaxed(L*) where `relaxed` stands. */
function policyOrder(results: Results, relaxed: string | undefined): string[] {
  const labels = [...new Set(results.runs.filter((r) => r.role === 'matrix').map((r) => r.policy))];
  if (relaxed && !labels.includes(relaxed)) labels.push(relaxed);
  const rank = (l: string) => {
    const i = results.matrix.policies.indexOf(l === relaxed ? 'relaxed' : l);
    return i < 0 ? Infinity : i;
  };
  return labels
    .map((l, i) => ({ l, i }))
    .sort((a, b) => rank(a.l) - rank(b.l) || a.i - b.i)
    .map((x) => x.l);
}

/** One workload's rows: every policy, relaxed(L*), and the oracle of each objective (held-out reps). */
function workloadCells(
  results: Results,
  w: string,
  policies: string[],
  relaxed: { label?: string; runs: RunRecord[] },
  oracle: Partial<Record<Objective, OracleChoice>>,
): Cell[] {
  const matrix = results.runs.filter((r) => r.role === 'matrix' && r.workload === w);
  const relaxedHere = relaxed.runs.filter((r) => r.workload === w);
  const runsOf = (p: string) => (p === relaxed.label ? relaxedHere : matrix.filter((r) => r.policy === p));
  const withRatios = (c: Cell, runs: RunRecord[]): Cell => {
    if (c.policy !== relaxed.label) c.vsRelaxed = ratiosOf(runs, relaxedHere, `${w}|${c.policy}|vs-relaxed`);
    const vsOracle: Partial<Ratios> = {};
    for (const o of OBJECTIVES) {
      const choice = oracle[o];
      if (!choice) continue;
      const mine = runs.filter((r) => choice.reportReps.includes(r.rep));
      const r = ratiosOf(mine, choice.reportRuns, `${w}|${c.policy}|vs-oracle-${o}`);
      if (r) vsOracle[o] = r[o];
    }
    if (Object.keys(vsOracle).length) c.vsOracle = vsOracle;
    return c;
  };
  const cells = policies.map((p) =>
    withRatios(cellOf(w, p, runsOf(p), p === relaxed.label ? 'relaxed' : 'policy'), runsOf(p)),
  );
  for (const o of OBJECTIVES) {
    const choice = oracle[o];
    if (choice)
      cells.push(
        withRatios(
          cellOf(w, `oracle(${o}) = ${choice.policy}`, choice.reportRuns, 'oracle'),
          choice.reportRuns,
        ),
      );
  }
  return cells;
}

/** Every figure of the reports, from the per-run records alone. */
export function summarize(all: Results): Summary {
  const results = referenceResults(all);
  const workloads = results.matrix.workloads;
  const summary = results.config?.summary ?? { ...DEFAULT_SUMMARY, workloads };
  const relaxed = relaxedRuns(results);
  const policies = policyOrder(results, relaxed.label);
  const oracle: Summary['oracle'] = {};
  for (const w of workloads) {
    const cands = candidateRuns(results.runs, w);
    oracle[w] = {};
    for (const o of OBJECTIVES) {
      const c = chooseOracle(cands, o);
      if (c) oracle[w]![o] = c;
    }
  }
  const cells = workloads.flatMap((w) => workloadCells(results, w, policies, relaxed, oracle[w]!));
  const perPolicy = policies.map((p) => policySummary(results, p, relaxed, summary.workloads));
  const legacyDowntime = results.runs.some((r) => r.role === 'matrix' && r.totalStallMs === undefined);
  return { cells, policies, workloads, summary, perPolicy, oracle, relaxed: relaxed.label, legacyDowntime };
}

/** A row's runs over every workload: relaxed(L*)'s ladder runs at L*, else the matrix policy's. */
export function labelRuns(
  results: Results,
  relaxed: { label?: string; runs: RunRecord[] },
  label: string,
): RunRecord[] {
  return label === relaxed.label
    ? relaxed.runs
    : results.runs.filter((r) => r.role === 'matrix' && r.policy === label);
}

/** One policy over the matrix: success, SLO success, and its geometric means vs relaxed(L*). */
function policySummary(
  results: Results,
  p: string,
  relaxed: { label?: string; runs: RunRecord[] },
  summaryWorkloads: string[],
): PolicySummary {
  const runs = labelRuns(results, relaxed, p);
  const base = {
    policy: p,
    successRate: runs.length ? runs.filter(ok).length / runs.length : NaN,
    sloRate: runs.length ? runs.filter((r) => r.sloSuccess).length / runs.length : NaN,
  };
  if (p === relaxed.label) return { ...base, missing: [] };
  // Over the fixed workload set, whatever the results: a missing ratio voids the mean.
  const pairs = summaryWorkloads.map((w) => ({
    a: runs.filter((r) => r.workload === w),
    b: relaxed.runs.filter((r) => r.workload === w),
  }));
  const missing = summaryWorkloads.filter((_, i) => !pairs[i]!.a.some(ok) || !pairs[i]!.b.some(ok));
  return { ...base, geoVsRelaxed: geoRatiosOf(pairs, `geo|${p}|vs-relaxed`), missing };
}
