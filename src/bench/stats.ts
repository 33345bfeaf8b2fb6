import { seededRandom } from '../util/random.js';

/** Small, exact statistics for benchmark tables: medians and percentile spreads of few samples. */

export function quantile(values: number[], q: number): number {
  const sorted = values.filter((v) => Number.isFinite(v)).sort((a, b) => a - b);
  if (sorted.length === 0) return NaN;
  const pos = (sorted.length - 1) * q;
  const lo = Math.floor(pos);
  const hi = Math.ceil(pos);
  return sorted[lo]! + (sorted[hi]! - sorted[lo]!) * (pos - lo);
}

export interface Spread {
  median: number;
  p10: number;
  p90: number;
  n: number;
}

export function spread(values: number[]): Spread {
  const v = values.filter((x) => Number.isFinite(x));
  return { median: quantile(v, 0.5), p10: quantile(v, 0.1), p90: quantile(v, 0.9), n: v.length };
}

export function geometricMean(values: number[]): number {
  const v = values.filter((x) => Number.isFinite(x) && x > 0);
  if (v.length === 0) return NaN;
  return Math.exp(v.reduce((s, x) => s + Math.log(x), 0) / v.length);
}

/** A 95% interval around an estimate; `lo`/`hi` are NaN when the samples cannot give one. */
export interface Interval {
  estimate: number;
  lo: number;
  hi: number;
}

/** Resamples per bootstrap: enough for stable 2.5/97.5 percentiles of small samples. */
export const BOOTSTRAP_RESAMPLES = 2000;
/** The bench's fixed seed: the same results always give the same intervals. */
export const BOOTSTRAP_SEED = 0x6b766d;

/** FNV-1a, 32 bit: a stable seed from a cell's name. */
export function hashSeed(text: string, seed = BOOTSTRAP_SEED): number {
  let h = (0x811c9dc5 ^ seed) >>> 0;
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i);
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h;
}

const finite = (values: number[]) => values.filter((x) => Number.isFinite(x));

/** The median of a resample with replacement of `v` (same size): the bootstrap's inner loop, kept lean. */
function resampledMedian(v: number[], rnd: () => number, buf: Float64Array): number {
  for (let i = 0; i < v.length; i++) buf[i] = v[Math.floor(rnd() * v.length)]!;
  buf.sort();
  const mid = (v.length - 1) / 2;
  return (buf[Math.floor(mid)]! + buf[Math.ceil(mid)]!) / 2;
}

/** The 2.5th and 97.5th percentiles of bootstrap statistics; infinities sort to the ends. */
function percentileInterval(stats: number[]): { lo: number; hi: number } {
  const v = stats.filter((x) => !Number.isNaN(x)).sort((a, b) => a - b);
  if (v.length === 0) return { lo: NaN, hi: NaN };
  const at = (q: number) => {
    const pos = (v.length - 1) * q;
    const lo = v[Math.floor(pos)]!;
    const hi = v[Math.ceil(pos)]!;
    return lo === hi ? lo : lo + (hi - lo) * (pos - Math.floor(pos));
  };
  return { lo: at(0.025), hi: at(0.975) };
}

/**
 * The median with a percentile-bootstrap 95% interval, seeded by `key` (deterministic). One
 * sample gives the median and no interval.
 */
export function bootstrapMedian(values: number[], key: string, B = BOOTSTRAP_RESAMPLES): Interval {
  const v = finite(values);
  const estimate = quantile(v, 0.5);
  if (v.length < 2) return { estimate, lo: NaN, hi: NaN };
  const rnd = seededRandom(hashSeed(key));
  const buf = new Float64Array(v.length);
  const stats = Array.from({ length: B }, () => resampledMedian(v, rnd, buf));
  return { estimate, ...percentileInterval(stats) };
}

/** a ÷ b, where two zeros are equal (1) rather than undefined. */
export function ratioOf(a: number, b: number): number {
  if (a === 0 && b === 0) return 1;
  return a / b;
}

/**
 * A ratio of medians, median(a) ÷ median(b), with a 95% interval from resampling both groups
 * independently (seeded by `key`). Either group under 2 samples: the estimate alone.
 */
export function bootstrapRatio(a: number[], b: number[], key: string, B = BOOTSTRAP_RESAMPLES): Interval {
  return bootstrapGeoRatio([{ a, b }], key, B);
}

/**
 * The geometric mean over pairs of groups of median(a) ÷ median(b), with a 95% interval from
 * resampling every group independently (seeded by `key`). A pair with an empty group, or a
 * ratio that is zero or infinite, gives NaN (no mean rather than a flattering one).
 */
export function bootstrapGeoRatio(
  pairs: { a: number[]; b: number[] }[],
  key: string,
  B = BOOTSTRAP_RESAMPLES,
): Interval {
  const groups = pairs.map((p) => ({ a: finite(p.a), b: finite(p.b) }));
  // Resamples may hit a zero median (a ratio of 0 or ∞): those are the interval's ends, not gaps.
  const lenient = (rs: number[]) => Math.exp(rs.reduce((s, r) => s + Math.log(r), 0) / rs.length);
  const geo = (rs: number[]) =>
    rs.length > 0 && rs.every((r) => Number.isFinite(r) && r > 0) ? lenient(rs) : NaN;
  const med = (v: number[]) => quantile(v, 0.5);
  if (groups.length === 0 || groups.some((g) => g.a.length === 0 || g.b.length === 0))
    return { estimate: NaN, lo: NaN, hi: NaN };
  const ratios = groups.map((g) => ratioOf(med(g.a), med(g.b)));
  // One pair is a plain ratio (0 and ∞ are answers); a mean over several needs every one positive.
  const estimate = ratios.length === 1 ? ratios[0]! : geo(ratios);
  if (Number.isNaN(estimate) || groups.some((g) => g.a.length < 2 || g.b.length < 2))
    return { estimate, lo: NaN, hi: NaN };
  const rnd = seededRandom(hashSeed(key));
  const bufs = groups.map((g) => ({ a: new Float64Array(g.a.length), b: new Float64Array(g.b.length) }));
  const stats = Array.from({ length: B }, () =>
    lenient(
      groups.map((g, i) =>
        ratioOf(resampledMedian(g.a, rnd, bufs[i]!.a), resampledMedian(g.b, rnd, bufs[i]!.b)),
      ),
    ),
  );
  return { estimate, ...percentileInterval(stats) };
}

/**
 * How a ratio's interval reads: `better` (wholly under 1), `worse` (wholly over 1), `tie` (it
 * contains 1), or `unknown` (no interval: too few samples).
 */
export type Verdict = 'better' | 'worse' | 'tie' | 'unknown';

export function verdictOf(r: Interval | undefined): Verdict {
  if (!r || Number.isNaN(r.lo) || Number.isNaN(r.hi)) return 'unknown';
  if (r.hi < 1) return 'better';
  if (r.lo > 1) return 'worse';
  return 'tie';
}
