/**
 * Issue 17's comparison: our policies against the strongest baseline on each workload — relaxed(L*)
 * or a production rule (KubeVirt's, Proxmox's, Xen's, Nova's, SDPS-like throttling) run in the
 * same bench. "Strongest" is fixed by rule, not picked per objective: the baseline with the lowest
 * median guest stall among those that completed every run of the workload (a rule that fails some
 * runs would otherwise be judged on its lucky ones). Pure: from the run records alone.
 */
import { referenceResults, type Results, type RunRecord } from './results.js';
import { geoRatiosOf, labelRuns, ratiosOf, relaxedRuns, type Ratios, type Summary } from './summary.js';

/** The production rules kvmigrate is measured against (policy names in src/policy). */
export const PRODUCTION_RULES = [
  'kubevirt-stall',
  'kubevirt-ramp',
  'kubevirt',
  'proxmox',
  'xen',
  'throttle',
  'nova',
  'auto-converge',
] as const;

/** Ours: what the comparison is about. */
export const OUR_POLICIES = ['adaptive', 'mp', 'frs'] as const;

export interface StrongestBaseline {
  workload: string;
  /** Its label (`relaxed(2000)`, `proxmox`), or undefined when no baseline completed every run. */
  policy?: string;
  stallMs?: number;
  /** Every baseline that ran on the workload: success rate, median stall and median slowdown. */
  candidates: { policy: string; successRate: number; stallMs: number; slowdown: number }[];
}

export interface VsBaselines {
  strongest: StrongestBaseline[];
  /** Per our policy and workload: its ratios against that workload's strongest baseline. */
  perWorkload: { policy: string; workload: string; ratios?: Ratios }[];
  /** Per our policy, the geometric mean over the summary workloads (none if one has no ratio). */
  geo: { policy: string; ratios?: Ratios; missing: string[] }[];
}

/** undefined when the results hold no production rule (the older benches): nothing to compare. */
export function vsBaselines(all: Results, sum: Summary): VsBaselines | undefined {
  const results = referenceResults(all);
  const rules = sum.policies.filter((p) => (PRODUCTION_RULES as readonly string[]).includes(p));
  if (rules.length === 0) return undefined;
  // Ours with options too (bench variants such as adaptive[throttle=true]); a rule only as shipped.
  const ours = sum.policies.filter((p) =>
    (OUR_POLICIES as readonly string[]).includes(p.replace(/\[.*\]$/, '')),
  );
  const relaxed = relaxedRuns(results);
  const baselines = [...(relaxed.label ? [relaxed.label] : []), ...rules];
  const runsOf = (policy: string, w: string): RunRecord[] =>
    labelRuns(results, relaxed, policy).filter((r) => r.workload === w);

  const strongest = sum.workloads.map((w): StrongestBaseline => {
    const candidates = baselines.flatMap((p) => {
      const c = sum.cells.find((x) => x.workload === w && x.policy === p);
      return c && c.runs > 0
        ? [{ policy: p, successRate: c.successRate, stallMs: c.stallMs.median, slowdown: c.slowdown.median }]
        : [];
    });
    const complete = candidates.filter((c) => c.successRate === 1 && Number.isFinite(c.stallMs));
    const best = complete.reduce<(typeof complete)[number] | undefined>(
      (a, b) => (a === undefined || b.stallMs < a.stallMs ? b : a),
      undefined,
    );
    return { workload: w, policy: best?.policy, stallMs: best?.stallMs, candidates };
  });
  const bestOf = (w: string) => strongest.find((s) => s.workload === w)?.policy;

  const perWorkload = ours.flatMap((p) =>
    sum.workloads.map((w) => {
      const b = bestOf(w);
      return {
        policy: p,
        workload: w,
        ratios: b ? ratiosOf(runsOf(p, w), runsOf(b, w), `${w}|${p}|vs-strongest`) : undefined,
      };
    }),
  );
  const geo = ours.map((p) => {
    const set = sum.summary.workloads;
    const missing = set.filter((w) => {
      const b = bestOf(w);
      return !b || !runsOf(p, w).some((r) => r.success);
    });
    const pairs = set.map((w) => ({ a: runsOf(p, w), b: bestOf(w) ? runsOf(bestOf(w)!, w) : [] }));
    return {
      policy: p,
      ratios: missing.length ? undefined : geoRatiosOf(pairs, `geo|${p}|vs-strongest`),
      missing,
    };
  });
  return { strongest, perWorkload, geo };
}
