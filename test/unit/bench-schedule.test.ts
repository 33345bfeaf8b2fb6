import { describe, expect, it } from 'vitest';
import { BENCH_CONFIGS, benchConfig } from '../../src/bench/config.js';
import { defaultLadder, optionsFromConfig, planOf, validateBench } from '../../src/bench/run.js';
import {
  benchSchedule,
  benchUnits,
  completeReps,
  interleave,
  keepWholeReps,
  oracleCandidates,
  parseMatrixPolicy,
  rotationOffset,
  type Unit,
} from '../../src/bench/schedule.js';

const units = (names: string[]): Unit[] =>
  names.map((n) => ({ role: 'matrix', policyName: n, config: {}, label: n }));

describe('what runs on every rep', () => {
  it('matrix policies, every ladder rung and every oracle candidate, interleaved by kind', () => {
    const u = benchUnits({
      policies: ['stock', 'relaxed', 'mp', 'oracle'],
      ladder: [2000, 1000, 2000],
      oracleMaxPass: 2,
      postcopyPermitted: true,
    });
    expect(u.map((x) => x.label)).toEqual([
      'stock', 'relaxed(1000)', 'switch-at-pass(2)',
      'mp', 'relaxed(2000)', 'switch-at-pass(3)',
      'postcopy-after(1)', 'postcopy-after(2)',
    ]); // prettier-ignore
    expect(u.filter((x) => x.role === 'ladder').map((x) => x.config)).toEqual([
      { downtimeLimitMs: 1000 },
      { downtimeLimitMs: 2000 },
    ]);
  });

  it('the oracle: switch after pass k = switch-at-pass(k+1); post-copy after pass k only when permitted', () => {
    expect(oracleCandidates(3, false).map((u) => u.label)).toEqual([
      'switch-at-pass(2)',
      'switch-at-pass(3)',
      'switch-at-pass(4)',
    ]);
    expect(oracleCandidates(1, true).map((u) => u.label)).toEqual(['switch-at-pass(2)', 'postcopy-after(1)']);
    // The oracle needs the ladder (its "let QEMU converge" candidates) even without relaxed.
    const u = benchUnits({ policies: ['oracle'], ladder: [500], oracleMaxPass: 1, postcopyPermitted: false });
    expect(u.map((x) => x.role)).toEqual(['ladder', 'oracle']);
    expect(
      benchUnits({ policies: ['stock'], ladder: [500], oracleMaxPass: 1, postcopyPermitted: true }),
    ).toHaveLength(1);
  });

  it('interleave takes one of each group in turn', () => {
    expect(interleave<unknown>([[1, 2, 3], ['a'], [true, false]])).toEqual([1, 'a', true, 2, false, 3]);
    expect(interleave([])).toEqual([]);
  });

  it('the default ladder stops at the first rung that sends all of RAM in one stop', () => {
    // 512 MiB at 1 Gbit/s: 4.3 s → up to 5000 ms.
    expect(defaultLadder(512, '1gbit')).toEqual([300, 500, 750, 1000, 1500, 2000, 3000, 5000]);
    expect(defaultLadder(512, '10gbit')).toEqual([300, 500]);
    expect(defaultLadder(512, 'none').at(-1)).toBe(21000);
  });
});

describe('the run order', () => {
  const W = ['w1', 'w2'];
  const U = units(['a', 'b', 'c', 'd', 'e']);

  it('gives rep by rep the order of each workload, rotated', () => {
    const plan = benchSchedule(W, U, 3);
    const order = (rep: number, w: string) =>
      plan.filter((p) => p.rep === rep && p.workload === w).map((p) => p.label);
    expect(order(0, 'w1')).toEqual(['a', 'b', 'c', 'd', 'e']);
    expect(order(1, 'w1')).toEqual(['b', 'c', 'd', 'e', 'a']);
    // Offsets ⌊rep × 5 / 3⌋ = 0, 1, 3: the reps' starts spread over the order.
    expect(order(2, 'w1')).toEqual(['d', 'e', 'a', 'b', 'c']);
    // Workloads rotate too; a rep is finished before the next begins.
    expect(plan.filter((p) => p.rep === 1)[0]!.workload).toBe('w2');
    expect(plan.map((p) => p.rep)).toEqual([...plan.map((p) => p.rep)].sort());
    expect(plan[0]!.key).toBe('matrix|w1|a|0');
  });

  it('is complete: every unit on every workload once per rep, nothing else', () => {
    for (const reps of [1, 2, 5, 7]) {
      const plan = benchSchedule(W, U, reps);
      expect(plan).toHaveLength(W.length * U.length * reps);
      expect(new Set(plan.map((p) => p.key)).size).toBe(plan.length);
      for (let rep = 0; rep < reps; rep++)
        for (const w of W)
          expect(
            plan
              .filter((p) => p.rep === rep && p.workload === w)
              .map((p) => p.label)
              .sort(),
          ).toEqual(['a', 'b', 'c', 'd', 'e']);
    }
  });

  it('rotates like a Latin square: while reps ≤ units, no unit holds the same place twice', () => {
    const many = units(Array.from({ length: 20 }, (_, i) => `u${i}`));
    for (const reps of [2, 5, 20]) {
      const plan = benchSchedule(['w'], many, reps);
      for (const u of many) {
        const places = Array.from({ length: reps }, (_, rep) =>
          plan.filter((p) => p.rep === rep).findIndex((p) => p.label === u.label),
        );
        expect(new Set(places).size).toBe(reps);
      }
    }
    // Spread over the whole order: with 20 units and 5 reps, each rep starts 4 further on.
    expect([0, 1, 2, 3, 4].map((r) => rotationOffset(20, 5, r))).toEqual([0, 4, 8, 12, 16]);
    expect(rotationOffset(0, 3, 1)).toBe(0);
  });

  it('the committed configs plan every policy, rung and candidate on every rep', () => {
    for (const name of Object.keys(BENCH_CONFIGS)) {
      const c = benchConfig(name);
      const plan = planOf(optionsFromConfig(c, { out: '/tmp/x' }));
      const perRep = plan.filter((p) => p.rep === 0).length;
      expect(plan).toHaveLength(perRep * c.reps);
      const matrix = c.policies.filter((p) => p !== 'relaxed' && p !== 'oracle').length;
      const oracle = c.policies.includes('oracle') ? c.oracleMaxPass! * (c.postcopyPermitted ? 2 : 1) : 0;
      expect(perRep).toBe(c.workloads.length * (matrix + c.ladder!.length + oracle));
    }
  });
});

describe('a re-run replaces whole reps', () => {
  const plan = benchSchedule(['w'], units(['a', 'b', 'c']), 3);
  const rec = (key: string) => ({ key, rep: Number(key.split('|').at(-1)) });

  it('keeps the complete reps and drops a rep cut short, whatever policy it stopped at', () => {
    const runs = [...plan.slice(0, 3), ...plan.slice(3, 5)].map((p) => rec(p.key));
    expect([...completeReps(plan, runs)]).toEqual([0]);
    const { kept, dropped } = keepWholeReps(plan, runs);
    expect(kept.map((r) => r.rep)).toEqual([0, 0, 0]);
    expect(dropped.map((r) => r.key)).toEqual(plan.slice(3, 5).map((p) => p.key));
  });

  it('drops runs the plan no longer has, and keeps a later complete rep after an incomplete one', () => {
    const runs = [...plan.slice(0, 2), ...plan.slice(6, 9)].map((p) => rec(p.key));
    runs.push(rec('matrix|w|old|0'));
    const { kept, dropped } = keepWholeReps(plan, runs);
    expect(kept.every((r) => r.rep === 2)).toBe(true);
    expect(kept).toHaveLength(3);
    expect(dropped).toHaveLength(3);
  });
});

describe('policy variants in the matrix', () => {
  it('runs NAME[key=value;…] as its own unit, labelled as written, beside the plain policy', () => {
    const u = benchUnits({
      policies: ['adaptive', 'adaptive[xbzrle=true]', 'proxmox[autoConverge=false; xbzrle=true]'],
      ladder: [2000],
      oracleMaxPass: 1,
      postcopyPermitted: false,
    });
    expect(u.map((x) => [x.label, x.policyName, x.config])).toEqual([
      ['adaptive', 'adaptive', {}],
      ['adaptive[xbzrle=true]', 'adaptive', { xbzrle: 'true' }],
      ['proxmox[autoConverge=false; xbzrle=true]', 'proxmox', { autoConverge: 'false', xbzrle: 'true' }],
    ]);
  });

  it('refuses what is not NAME or NAME[key=value;…] in one line', () => {
    expect(() => parseMatrixPolicy('adaptive[xbzrle]')).toThrow(/option 'xbzrle' is not key=value/);
    expect(() => parseMatrixPolicy('adaptive[x=1')).toThrow(/write NAME or NAME\[key=value;key=value\]/);
  });

  it("checks a variant's options with the policy's own schema before anything runs", () => {
    const opts = optionsFromConfig(benchConfig('production'), { out: '/tmp/x' });
    expect(() => validateBench({ ...opts, policies: ['adaptive[xbzrle=true]'] })).not.toThrow();
    expect(() => validateBench({ ...opts, policies: ['adaptive[nope=1]'] })).toThrow(/nope/);
    // A workload that does not fit the guest is refused before anything boots, not at its first run.
    expect(() => validateBench({ ...opts, workloads: ['random:200', 'hotcold:48:384:80'] })).toThrow(
      /hotcold:48:384:80 needs more RAM than a 512 MiB guest has/,
    );
    expect(() => validateBench({ ...opts, policies: ['nosuch[x=1]'] })).toThrow(/unknown policy 'nosuch'/);
  });
});
