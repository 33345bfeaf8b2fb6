/**
 * Choices made in hindsight, from the runs alone (pure): relaxed(L*) from the ladder's rungs, and
 * the oracle — per workload and objective, the best fixed choice among the candidates (every
 * ladder rung as "let QEMU converge with this limit", switch after pass k, post-copy after pass
 * k), chosen on one half of the reps and reported on the other, so the runs that pick it are
 * never the runs that flatter it.
 */

import { ladderSearch } from '../policy/relaxed.js';
import type { RunRecord } from './results.js';
import { quantile } from './stats.js';

export const OBJECTIVES = ['total', 'stall', 'bytes'] as const;
export type Objective = (typeof OBJECTIVES)[number];

/** The figure an objective minimises; the stall is the guest's total stall. */
export function objectiveOf(r: RunRecord, o: Objective): number {
  if (o === 'total') return r.totalTimeMs;
  if (o === 'bytes') return r.transferredBytes;
  return r.totalStallMs ?? r.guestDowntimeMs ?? NaN;
}

/** A run that counts as completing a ladder rung: verified success within the deadline. */
export const completedInTime = (r: RunRecord, deadlineS: number) =>
  r.success && r.totalTimeMs <= deadlineS * 1000;

/**
 * relaxed(L*): per workload the smallest rung whose every run completed in time (the shared ladder
 * search), L* the largest of those. A workload no rung completes makes L* the top rung and is
 * named in `unfinished`.
 */
export function relaxedLimit(
  ladderRuns: RunRecord[],
  workloads: string[],
  deadlineS: number,
): { limitMs: number; perWorkload: Record<string, number | undefined>; unfinished: string[] } | undefined {
  const runs = ladderRuns.filter((r) => r.role === 'ladder' && r.policyName === 'relaxed');
  const limitOf = (r: RunRecord) => Number(r.policyConfig.downtimeLimitMs);
  const rungs = [...new Set(runs.map(limitOf))].sort((a, b) => a - b);
  if (rungs.length === 0) return undefined;
  const perWorkload: Record<string, number | undefined> = {};
  for (const w of workloads) {
    perWorkload[w] = ladderSearch(rungs, (l) => {
      const at = runs.filter((r) => r.workload === w && limitOf(r) === l);
      return at.length > 0 && at.every((r) => completedInTime(r, deadlineS));
    });
  }
  const unfinished = workloads.filter((w) => perWorkload[w] === undefined);
  const found = workloads.map((w) => perWorkload[w] ?? rungs.at(-1)!);
  return { limitMs: Math.max(...found), perWorkload, unfinished };
}

/** Reps that choose the oracle (even) and reps it is reported on (odd): interleaved against drift. */
export function splitReps(reps: number[]): { select: number[]; report: number[] } {
  const sorted = [...new Set(reps)].sort((a, b) => a - b);
  return { select: sorted.filter((r) => r % 2 === 0), report: sorted.filter((r) => r % 2 === 1) };
}

export interface OracleChoice {
  objective: Objective;
  /** The candidate chosen on the selection reps. */
  policy: string;
  /** Its runs on the held-out reps: what the reports show. */
  reportRuns: RunRecord[];
  selectReps: number[];
  reportReps: number[];
}

/** Candidates' runs on one workload: every ladder rung and every oracle candidate. */
export const candidateRuns = (runs: RunRecord[], workload: string) =>
  runs.filter((r) => r.workload === workload && (r.role === 'ladder' || r.role === 'oracle'));

/**
 * The oracle for one workload and objective: on the selection reps, the candidate with the highest
 * success rate, then the least median of the objective over its successful runs (then its name,
 * for a stable choice); reported on the held-out reps. Undefined without both halves or without
 * a successful candidate.
 */
export function chooseOracle(candidates: RunRecord[], objective: Objective): OracleChoice | undefined {
  const { select, report } = splitReps(candidates.map((r) => r.rep));
  if (select.length === 0 || report.length === 0) return undefined;
  const scored = [...new Set(candidates.map((r) => r.policy))].map((policy) => {
    const mine = candidates.filter((r) => r.policy === policy && select.includes(r.rep));
    const good = mine.filter((r) => r.success);
    return {
      policy,
      success: mine.length ? good.length / mine.length : 0,
      median: quantile(
        good.map((r) => objectiveOf(r, objective)),
        0.5,
      ),
    };
  });
  const best = scored
    .filter((c) => c.success > 0 && Number.isFinite(c.median))
    .sort((a, b) => b.success - a.success || a.median - b.median || a.policy.localeCompare(b.policy))[0];
  if (!best) return undefined;
  return {
    objective,
    policy: best.policy,
    reportRuns: candidates.filter((r) => r.policy === best.policy && report.includes(r.rep)),
    selectReps: select,
    reportReps: report,
  };
}
