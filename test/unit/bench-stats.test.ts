import { describe, expect, it } from 'vitest';
import {
  bootstrapGeoRatio,
  bootstrapMedian,
  bootstrapRatio,
  hashSeed,
  ratioOf,
  verdictOf,
} from '../../src/bench/stats.js';
import { seededRandom } from '../../src/util/random.js';
import { est, ratioText, rel } from '../../src/bench/report.js';

describe('seeded bootstrap', () => {
  it('is deterministic: the same key and samples give the same interval', () => {
    const v = [10, 12, 9, 15, 11, 30, 10.5];
    expect(bootstrapMedian(v, 'a|b')).toEqual(bootstrapMedian(v, 'a|b'));
    expect(hashSeed('x')).toBe(hashSeed('x'));
    expect(hashSeed('x')).not.toBe(hashSeed('y'));
    const r1 = seededRandom(42);
    const r2 = seededRandom(42);
    const xs = Array.from({ length: 1000 }, () => r1());
    expect(xs).toEqual(Array.from({ length: 1000 }, () => r2()));
    expect(Math.min(...xs)).toBeGreaterThanOrEqual(0);
    expect(Math.max(...xs)).toBeLessThan(1);
    // Roughly uniform.
    expect(xs.filter((x) => x < 0.5).length).toBeGreaterThan(430);
    expect(xs.filter((x) => x < 0.5).length).toBeLessThan(570);
  });

  it('brackets the median within the samples; one sample has no interval; constants have a point', () => {
    const v = [10, 12, 9, 15, 11];
    const m = bootstrapMedian(v, 'k');
    expect(m.estimate).toBe(11);
    expect(m.lo).toBeLessThanOrEqual(11);
    expect(m.hi).toBeGreaterThanOrEqual(11);
    expect(m.lo).toBeGreaterThanOrEqual(9);
    expect(m.hi).toBeLessThanOrEqual(15);
    const one = bootstrapMedian([7], 'k');
    expect(one.estimate).toBe(7);
    expect(one.lo).toBeNaN();
    expect(bootstrapMedian([5, 5, 5], 'k')).toEqual({ estimate: 5, lo: 5, hi: 5 });
    expect(bootstrapMedian([], 'k').estimate).toBeNaN();
    // Non-finite values (a run without the figure) are not samples.
    expect(bootstrapMedian([NaN, 4, 6], 'k').estimate).toBe(5);
  });

  it('a ratio whose interval lies under 1 is better, over 1 worse, across 1 a tie', () => {
    const fast = [100, 105, 98, 102, 101];
    const slow = [200, 210, 190, 205, 199];
    const better = bootstrapRatio(fast, slow, 'k');
    expect(better.estimate).toBeCloseTo(101 / 200, 9);
    expect(better.hi).toBeLessThan(1);
    expect(verdictOf(better)).toBe('better');
    expect(verdictOf(bootstrapRatio(slow, fast, 'k'))).toBe('worse');
    const noisy = bootstrapRatio([90, 130, 100, 70, 120], [100, 95, 140, 80, 105], 'k');
    expect(noisy.lo).toBeLessThan(1);
    expect(noisy.hi).toBeGreaterThan(1);
    expect(verdictOf(noisy)).toBe('tie');
    expect(verdictOf(bootstrapRatio([1], [2, 3], 'k'))).toBe('unknown');
    expect(verdictOf(undefined)).toBe('unknown');
  });

  it('zero medians: 0 ÷ 0 is 1, x ÷ 0 is ∞; a geometric mean with a 0 or ∞ ratio is NaN', () => {
    expect(ratioOf(0, 0)).toBe(1);
    expect(ratioOf(3, 0)).toBe(Infinity);
    expect(bootstrapRatio([0, 0, 0], [0, 0, 0], 'k')).toEqual({ estimate: 1, lo: 1, hi: 1 });
    expect(bootstrapRatio([0, 0, 10], [50, 60, 70], 'k').estimate).toBe(0);
    expect(
      bootstrapGeoRatio(
        [
          { a: [0, 0], b: [5, 6] },
          { a: [1, 2], b: [1, 2] },
        ],
        'k',
      ).estimate,
    ).toBeNaN();
    expect(bootstrapGeoRatio([{ a: [], b: [1] }], 'k').estimate).toBeNaN();
  });

  it('the geometric mean over workloads: exact estimate, interval from resampling every cell', () => {
    const g = bootstrapGeoRatio(
      [
        { a: [50, 50, 50], b: [100, 100, 100] },
        { a: [400, 400, 400], b: [100, 100, 100] },
      ],
      'k',
    );
    expect(g.estimate).toBeCloseTo(Math.sqrt(0.5 * 4), 9);
    expect(g.lo).toBeCloseTo(g.estimate, 9);
    expect(g.hi).toBeCloseTo(g.estimate, 9);
    const noisy = bootstrapGeoRatio(
      [
        { a: [40, 60, 50, 45, 70], b: [100, 90, 110, 95, 105] },
        { a: [80, 120, 100, 90, 110], b: [100, 90, 110, 95, 105] },
      ],
      'k',
    );
    expect(noisy.lo).toBeLessThan(noisy.estimate);
    expect(noisy.hi).toBeGreaterThan(noisy.estimate);
  });
});

describe('how intervals read in the report', () => {
  it('medians with intervals, ratios with intervals, ties marked', () => {
    expect(est({ median: 1234, p10: 0, p90: 0, n: 5, lo: 1100, hi: 1300 }, (x) => x.toFixed(0))).toBe(
      '1234 [1100–1300]',
    );
    expect(est({ median: 7, p10: 7, p90: 7, n: 1, lo: NaN, hi: NaN }, String)).toBe('7');
    expect(est({ median: NaN, p10: NaN, p90: NaN, n: 0, lo: NaN, hi: NaN }, String)).toBe('–');
    expect(ratioText({ estimate: 0.71, lo: 0.6, hi: 0.9 })).toBe('−29% [−40%, −10%]');
    expect(ratioText({ estimate: 0.95, lo: 0.8, hi: 1.12 })).toBe('tie −5% [−20%, +12%]');
    expect(ratioText({ estimate: 1.4, lo: NaN, hi: NaN })).toBe('+40% ?');
    expect(ratioText(undefined)).toBe('–');
    expect(rel(Infinity)).toBe('+∞');
    expect(rel(0)).toBe('−100%');
  });
});
