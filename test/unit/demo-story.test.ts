import { describe, expect, it } from 'vitest';
import { demoStory } from '../../src/bench/demo-story.js';
import type { Results, RunRecord } from '../../src/bench/results.js';
import { runRecord } from '../support/run-record.js';

const w = 'random:200';
const results = (runs: RunRecord[], relaxedLimitMs: number | null = 3000) =>
  ({ matrix: { downtimeBudgetMs: 300, deadlineS: 20 }, relaxedLimitMs, runs }) as unknown as Results;
const switched = (pass: number) => [{ atMs: 1000, pass, kind: 'switchover', reason: 'x' }];

describe('the demo story', () => {
  const pre = results([
    runRecord({ workload: w, policy: 'stock', success: false, totalTimeMs: 20_000 }),
    runRecord({ workload: w, policy: 'relaxed(2000)', role: 'ladder', success: false }),
    runRecord({ workload: w, policy: 'relaxed(3000)', role: 'ladder', totalStallMs: 2600 }),
    runRecord({ workload: w, policy: 'adaptive', totalStallMs: 1800, decisions: switched(3) }),
    runRecord({ workload: w, policy: 'kubevirt-stall', totalStallMs: 2400, decisions: switched(5) }),
    runRecord({ workload: w, policy: 'proxmox', totalStallMs: 2000 }),
  ]);
  const post = results(
    [
      runRecord({ workload: w, policy: 'adaptive', totalStallMs: 500 }),
      runRecord({ workload: w, policy: 'kubevirt-stall', success: false }),
    ],
    null,
  );
  const story = demoStory(pre, post);

  it('says stock failed, and the limit relaxed pre-copy needed with the rungs that did not finish', () => {
    expect(story).toMatch(/stock \(300 ms limit\) did not finish: cancelled after 20\.0 s/);
    expect(story).toMatch(
      /relaxed pre-copy finishes only with a 3000 ms limit \(relaxed\(2000\) did not\): 2600 ms stall/,
    );
  });

  it('compares adaptive with the best production rule that finished, per mode', () => {
    // proxmox (2000 ms) beat kubevirt-stall (2400 ms): it is the one compared.
    expect(story).toMatch(
      /pre-copy only: adaptive 1800 ms stall .*switchover at pass 3.*proxmox, 2000 ms stall .*: 10% less stall/,
    );
    expect(story).toMatch(
      /post-copy permitted: adaptive 500 ms stall .*; no production rule finished this guest within the 20 s deadline/,
    );
  });

  it('lists every run with what the policy did', () => {
    expect(story).toMatch(/\| kubevirt-stall \| pre-copy only \| completed \| switchover at pass 5 \|/);
    expect(story).toMatch(/\| proxmox \| pre-copy only \| completed \| left it to QEMU \|/);
  });
});
