import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
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
  passTimeline: never[];
  decisions: { kind: string; pass: number }[];
}

const actions = (ds: { kind: string; pass: number }[]) =>
  ds.filter((d) => d.kind !== 'continue').map((d) => `${d.kind}@${d.pass}`);

describe.each(['docs/results', 'docs/results-postcopy'])('replaying %s through the core', (dir) => {
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
      });
      expect(
        actions(replayed.map((d) => ({ kind: d.action.kind, pass: d.pass }))),
        `${run.workload} ${run.policyName}`,
      ).toEqual(actions(run.decisions));
    }
  });
});
