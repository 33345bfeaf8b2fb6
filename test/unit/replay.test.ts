import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import type { PassRecord } from '../../src/policy/types.js';
import { replayRun } from '../../src/sim/replay.js';

// The committed benchmark runs, replayed through today's controller core: every policy whose
// inputs are all in the results file (passes and time) must take the same actions at the same
// passes. mp and adaptive also read region sets and calc-dirty-rate samples, which the results do
// not keep, so they are not replayed here.
const PASS_ONLY = new Set(['stock', 'relaxed', 'frs', 'switch-at-pass', 'postcopy-after']);

interface Run {
  workload: string;
  policyName: string;
  policyConfig: unknown;
  outcome: string;
  /** `guest-check-only`: a post-copy run (the destination ran before the last page arrived). */
  verification?: string;
  passTimeline: PassRecord[];
  decisions: Action[];
}
interface Action {
  kind: string;
  pass: number;
  reason?: string;
}

/**
 * The actions as `kind@pass`. A deadline abort comes at the first observation past the deadline:
 * live, a poll (every 50 ms plus the query's round trip) or a pass event, whichever comes first;
 * the replay polls at the deadline itself. When a pass ends in between, the two disagree by one
 * pass about the same moment, so a deadline abort is counted at the pass in progress at the
 * deadline (the recorded one is checked separately never to come before the deadline).
 */
const actions = (ds: Action[], run: Run, deadlineMs: number) => {
  const atDeadline = run.passTimeline.find((p) => p.startMs <= deadlineMs && deadlineMs < p.endMs)?.pass;
  return ds
    .filter((d) => d.kind !== 'continue')
    .map((d) => {
      const pass = d.kind === 'abort' && /deadline/.test(d.reason ?? '') ? (atDeadline ?? d.pass) : d.pass;
      return `${d.kind}@${pass}`;
    });
};

describe.each(['docs/results', 'docs/results-postcopy', 'docs/results-production'])(
  'replaying %s through the core',
  (dir) => {
    const results = JSON.parse(readFileSync(`${dir}/results.json`, 'utf8')) as {
      matrix: { ramMiB: number; downtimeBudgetMs: number; deadlineS: number };
      runs: Run[];
    };
    const runs = results.runs.filter((r) => PASS_ONLY.has(r.policyName));
    it(`takes the same actions in all ${runs.length} pass-only runs`, () => {
      expect(runs.length).toBeGreaterThan(20);
      const m = results.matrix;
      for (const run of runs) {
        const replayed = replayRun({
          policyName: run.policyName,
          policyConfig: run.policyConfig,
          passTimeline: run.passTimeline,
          ramBytes: m.ramMiB * 2 ** 20,
          downtimeBudgetMs: m.downtimeBudgetMs,
          deadlineMs: m.deadlineS * 1000,
          postcopyPermitted: true,
          outcome: run.outcome,
          endedInPostcopy: run.verification === 'guest-check-only',
        });
        const deadlineMs = m.deadlineS * 1000;
        expect(
          actions(
            replayed.map((d) => ({ kind: d.action.kind, pass: d.pass, reason: d.action.reason })),
            run,
            deadlineMs,
          ),
          `${run.workload} ${run.policyName}`,
        ).toEqual(actions(run.decisions, run, deadlineMs));
        for (const d of run.decisions.filter((x) => /deadline/.test(x.reason ?? '')))
          expect((d as Action & { atMs: number }).atMs).toBeGreaterThanOrEqual(deadlineMs);
      }
    });
  },
);
