import { describe, expect, it } from 'vitest';
import {
  BENCH_WORKLOADS,
  CONSTANT_CHECKS,
  checkConstant,
  clearlyWorse,
  fitTable,
  OTHER_WORKLOADS,
  type ConstantFit,
} from '../../src/bench/constants-check.js';
import { parseWorkload } from '../../src/util/specs.js';

/**
 * What docs/constants.md reports, per constant and setting: the verdict, and the workloads where
 * the default is clearly worse than another tried value. A change to a policy or to the simulator
 * that moves these must update docs/constants.md with it.
 */
const EXPECTED: Record<string, { verdict: ConstantFit['verdict']; worseOn: string[] }> = {
  'adaptive.observeMs@pc30': {
    verdict: 'off on the bench too',
    worseOn: ['sweep:256:400', 'burst:200:2000:2500', 'burst:200:3000:3000', 'burst:400:1000:2500'],
  },
  'adaptive.quietShare@pc30': { verdict: 'no effect', worseOn: [] },
  'adaptive.quietWaitS@pc30': { verdict: 'robust', worseOn: [] },
  'adaptive.quietWaitS@120': { verdict: 'fits only the bench', worseOn: ['burst:400:1000:2500'] },
  'adaptive.minGainMs@20': {
    verdict: 'fits only the bench',
    worseOn: ['burst:200:2000:2500', 'burst:200:3000:3000', 'burst:100:1000:2500', 'sweep:128:200'],
  },
  'adaptive.postcopyTouchMs@pc30': { verdict: 'fits only the bench', worseOn: ['rate:200:30000'] },
  'adaptive.limitMargin@20': { verdict: 'no effect', worseOn: [] },
  'adaptive.refuteEpsilon@20': { verdict: 'robust', worseOn: [] },
  'adaptive.switchCostMs@20': { verdict: 'no effect', worseOn: [] },
  'adaptive.horizon@20': { verdict: 'fits only the bench', worseOn: ['sweep:128:200'] },
  'mp.heavyRatio@pc30': {
    verdict: 'off on the bench too',
    worseOn: [
      'burst:200:1000:2500', 'burst:200:500:2500', 'burst:200:2000:2500', 'burst:200:3000:3000', 'burst:200:1000:6000',
    ],
  },
  'mp.maxOverrun@pc30': { verdict: 'robust', worseOn: [] },
  'mp.hotSetTolerance@20': { verdict: 'no effect', worseOn: [] },
  'mp.convergingRatio@20': { verdict: 'no effect', worseOn: [] },
  'mp.stableJaccard@20': { verdict: 'no effect', worseOn: [] },
  'mp.movingJaccard@20': { verdict: 'no effect', worseOn: [] },
  'mp.uniformCoverage@20': { verdict: 'no effect', worseOn: [] },
  'frs.epsilon@20': { verdict: 'fits only the bench', worseOn: ['rate:200:30000'] },
}; // prettier-ignore

const id = (c: (typeof CONSTANT_CHECKS)[number]) =>
  `${c.policy}.${c.constant}@${c.postcopy ? 'pc' : ''}${c.deadlineS}`;

describe('policy constants on workloads other than the bench’s (simulator)', () => {
  it('checks on workloads whose parameters differ from every bench workload, of the same kinds', () => {
    expect(OTHER_WORKLOADS.filter((w) => BENCH_WORKLOADS.includes(w))).toEqual([]);
    const kinds = (ws: string[]) => new Set<string>(ws.map((w) => parseWorkload(w).kind));
    for (const k of ['burst', 'hotcold', 'phase', 'rate', 'sweep'])
      expect(kinds(OTHER_WORKLOADS).has(k)).toBe(true);
    expect(BENCH_WORKLOADS).toContain('burst:200:1000:2500');
    // Every check tries its default and at least one value on each side of it, or two on one.
    for (const c of CONSTANT_CHECKS) {
      expect(c.values).toContain(c.defaultValue);
      expect(c.values.length).toBeGreaterThanOrEqual(3);
    }
    expect(Object.keys(EXPECTED).sort()).toEqual(CONSTANT_CHECKS.map(id).sort());
  });

  it('judges "clearly worse" by stall first, total time only when stalls are alike', () => {
    const o = (stallMs: number, totalMs: number, ok = true) => ({ ok, stallMs, totalMs, postcopy: false });
    expect(clearlyWorse(o(1000, 5000), o(800, 5000))).toBe(true);
    expect(clearlyWorse(o(300, 5000), o(290, 5000))).toBe(false);
    expect(clearlyWorse(o(300, 100_000), o(300, 10_000))).toBe(true);
    expect(clearlyWorse(o(300, 100_000), o(3000, 10_000))).toBe(false);
    expect(clearlyWorse(o(0, 0, false), o(3000, 10_000))).toBe(true);
    expect(clearlyWorse(o(3000, 10_000), o(0, 0, false))).toBe(false);
  });

  for (const c of CONSTANT_CHECKS) {
    it(`${id(c)}: as docs/constants.md reports`, () => {
      const f = checkConstant(c);
      if (process.env.KVM_CONSTANTS_TABLE) process.stdout.write(`\n${fitTable(f)}\n`);
      expect({
        verdict: f.verdict,
        worseOn: f.rows.filter((r) => r.defaultWorse).map((r) => r.workload),
      }).toEqual(EXPECTED[id(c)]);
    });
  }
});
