import { describe, expect, it } from 'vitest';
import { guestStall, type Beat, type GuestStallInput } from '../../src/lab/guest-stall.js';

const P = 50;
/** Beats every `step` ms in [from, to), writing `wps` pages/s. */
function beats(from: number, to: number, step = P, wps = 1000, writes0 = 0): Beat[] {
  const out: Beat[] = [];
  for (let t = from; t < to; t += step) out.push({ at: t, writes: writes0 + ((t - from) * wps) / 1000 });
  return out;
}
const run = (b: Beat[], over: Partial<GuestStallInput> = {}) =>
  guestStall({ beats: b, periodMs: P, window: { from: 1000, to: 3000 }, ...over });

describe('guestStall: total stall', () => {
  it('a guest beating steadily felt nothing', () => {
    const r = run(beats(0, 4000));
    expect(r).toMatchObject({ totalStallMs: 0, longestSilenceMs: 50, stalls: 0, resumed: true });
  });

  it('one silence counts beyond one period', () => {
    const r = run([...beats(0, 1500), ...beats(1800, 4000)]);
    // Last beat 1450, next 1800: a 350 ms silence, 300 ms beyond the missed beat.
    expect(r.totalStallMs).toBe(300);
    expect(r.longestSilenceMs).toBe(350);
    expect(r.stalls).toBe(1);
  });

  it('a silence of two periods or less is jitter, not a stall; just over counts in full beyond one period', () => {
    expect(run([...beats(0, 1500), ...beats(1550, 4000)]).totalStallMs).toBe(0); // 1450 → 1550: 100 ms
    const r = run([...beats(0, 1500), { at: 1551 }, ...beats(1601, 4000)]);
    expect(r.totalStallMs).toBe(51);
    expect(r.stalls).toBe(1);
    expect(r.longestSilenceMs).toBe(101);
  });

  it('sums repeated stalls (post-copy page faults) where the longest silence sees one', () => {
    // Five 200 ms silences: a longest-gap metric says 200, the guest lost 5 × 150 ms.
    const b: Beat[] = [];
    for (let t = 0; t < 4000; t += t >= 1000 && t < 2000 ? 200 : 50) b.push({ at: t });
    const r = run(b);
    expect(r.longestSilenceMs).toBe(200);
    expect(r.stalls).toBe(5);
    expect(r.totalStallMs).toBe(750);
  });

  it('merges both consoles in any order (source until the switch, destination after)', () => {
    const source = beats(0, 2000);
    const destination = beats(2400, 4000, P, 1000, 2000);
    const a = run([...source, ...destination]);
    const b = run([...destination.slice().reverse(), ...source.slice().reverse()]);
    expect(a).toEqual(b);
    expect(a.totalStallMs).toBe(2400 - 1950 - P);
  });

  it('clips a silence that began before `migrate` at the window start', () => {
    const r = run([...beats(0, 900), ...beats(1200, 4000)]); // silence 850 → 1200
    expect(r.totalStallMs).toBe(200); // only [1000, 1200]
    expect(r.longestSilenceMs).toBe(350);
  });

  it('counts whole a silence that began in the window and ended after it', () => {
    const r = run([...beats(0, 2900), ...beats(3500, 4000)]); // 2850 → 3500
    expect(r.totalStallMs).toBe(600);
    expect(r.resumed).toBe(true);
  });

  it('ignores silences that begin after the window (e.g. the integrity check)', () => {
    const r = run([...beats(0, 3100), ...beats(4000, 5000)]);
    expect(r.totalStallMs).toBe(0);
    expect(r.longestSilenceMs).toBe(50);
  });

  it('a guest that never beats again: the window end closes the silence, and says so', () => {
    const r = run(beats(0, 2000));
    expect(r.resumed).toBe(false);
    expect(r.totalStallMs).toBe(3000 - 1950 - P);
    expect(r.longestSilenceMs).toBe(1050);
  });

  it('no beats at all: the whole window is one silence', () => {
    const r = run([]);
    expect(r).toMatchObject({ totalStallMs: 1950, longestSilenceMs: 2000, stalls: 1, resumed: false });
    expect(r.slowdown).toBeNull();
  });

  it('cuts out the verification hold (destination kept paused by the lab)', () => {
    // Source stops beating at 1950; the destination completes at 2000, the lab holds it until
    // 5000, `cont`, first destination beat at 5020: the guest felt 1950 → 2000 and 5000 → 5020.
    const b = [...beats(0, 2000), ...beats(5020, 7000)];
    const held = run(b, { window: { from: 1000, to: 5500 }, exclude: [{ from: 2000, to: 5000 }] });
    expect(held.longestSilenceMs).toBeCloseTo(70, 9);
    expect(held.totalStallMs).toBe(0); // 70 ms ≤ two periods
    const b2 = [...beats(0, 2000), ...beats(5250, 7000)];
    const r = run(b2, { window: { from: 1000, to: 5500 }, exclude: [{ from: 2000, to: 5000 }] });
    expect(r.totalStallMs).toBe(50 + 250 - P);
    // Without the cut, the hold would count.
    expect(run(b2, { window: { from: 1000, to: 5500 } }).totalStallMs).toBe(5250 - 1950 - P);
  });

  it('overlapping and empty exclusions are cut once', () => {
    const b = [...beats(0, 2000), ...beats(5250, 7000)];
    const once = run(b, { window: { from: 1000, to: 5500 }, exclude: [{ from: 2000, to: 5000 }] });
    const twice = run(b, {
      window: { from: 1000, to: 5500 },
      exclude: [
        { from: 3000, to: 5000 },
        { from: 2000, to: 4000 },
        { from: 2500, to: 2500 },
        { from: 4000, to: 3000 },
      ],
    });
    expect(twice).toEqual(once);
  });

  it('skips beats with no time, tolerates duplicates', () => {
    const b = beats(0, 4000);
    const r = run([...b, ...b, { at: NaN }]);
    expect(r.totalStallMs).toBe(0);
    expect(r.longestSilenceMs).toBe(50);
  });

  it('a line repeating an old heartbeat (replayed console buffer) is not a beat', () => {
    const src = beats(0, 2000).map((b, i) => ({ ...b, seq: i + 1 }));
    const dst = beats(2400, 4000).map((b, i) => ({ ...b, seq: src.length + 1 + i }));
    const replay = { at: 2010, seq: src.length };
    expect(run([...src, replay, ...dst]).totalStallMs).toBe(400);
    // Without counters a line is taken at its word.
    expect(run([...src, { at: 2010 }, ...dst]).totalStallMs).toBe(340);
  });

  it('rejects a non-positive period', () => {
    expect(() => guestStall({ beats: [], periodMs: 0, window: { from: 0, to: 1 } })).toThrow(RangeError);
  });

  it('agrees with a millisecond-by-millisecond count on random timelines', () => {
    let seed = 7;
    const rand = () => (seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
    for (let trial = 0; trial < 300; trial++) {
      const b: Beat[] = [];
      for (let t = Math.floor(rand() * 200); t < 4000;) {
        b.push({ at: t });
        t += rand() < 0.1 ? 60 + Math.floor(rand() * 700) : 20 + Math.floor(rand() * 60);
      }
      const from = 500 + Math.floor(rand() * 500);
      const to = from + 500 + Math.floor(rand() * 2500);
      const got = guestStall({ beats: b, periodMs: P, window: { from, to } });
      // Reference: a millisecond counts when it lies beyond one period into a silence longer
      // than two periods that began before the window's end, and not before the window.
      const times = b.map((x) => x.at);
      if (!(times[0]! <= from)) times.unshift(from);
      if (!(times.at(-1)! >= to)) times.push(to);
      let stall = 0;
      for (let ms = from; ms < 6000; ms++) {
        const i = times.findIndex((t) => t > ms);
        if (i <= 0) continue;
        const a = times[i - 1]!;
        const e = times[i]!;
        if (a < to && e - a > 2 * P && ms >= a + P) stall++;
      }
      expect(got.totalStallMs).toBe(stall);
      expect(got.totalStallMs).toBeLessThanOrEqual(got.stalls * (got.longestSilenceMs - P) + 1e-9);
    }
  });

  it('another beat never adds stall', () => {
    const base = [...beats(0, 1500), ...beats(2000, 4000)];
    const before = run(base).totalStallMs;
    for (let t = 1460; t < 2000; t += 37)
      expect(run([...base, { at: t }]).totalStallMs).toBeLessThanOrEqual(before);
  });
});

describe('guestStall: slowdown', () => {
  it('is 1 for a guest that kept its pace', () => {
    const r = run(beats(0, 4000));
    expect(r.slowdown).toBeCloseTo(1, 9);
    expect(r.slowdownBasis).toBe('writes');
  });

  it('compares the workload’s writes per second during pre-copy with before', () => {
    const before = beats(0, 1000, P, 2000);
    const during = beats(1000, 3000, P, 1000, 2000);
    const r = run([...before, ...during], { precopyEnd: 2500 });
    expect(r.slowdown).toBeCloseTo(0.5, 9);
  });

  it('counts heartbeats for a guest that writes nothing', () => {
    const b = [...beats(0, 1000, P, 0), ...beats(1000, 3000, 100, 0)];
    const r = run(b);
    expect(r.slowdownBasis).toBe('heartbeats');
    expect(r.slowdown).toBeCloseTo(0.5, 9);
  });

  it('measures only up to the end of pre-copy', () => {
    const b = [...beats(0, 2000, P, 1000), ...beats(2000, 4000, P, 100, 2000)];
    expect(run(b, { precopyEnd: 2000 }).slowdown).toBeCloseTo(1, 9);
    expect(run(b).slowdown!).toBeLessThan(1);
  });

  it('uses only the baseline window before `migrate`', () => {
    const b = [...beats(0, 500, P, 5000), ...beats(500, 4000, P, 1000, 2500)];
    expect(run(b, { baselineMs: 400 }).slowdown).toBeCloseTo(1, 9);
  });

  it('is null when a phase has fewer than two beats', () => {
    expect(run(beats(1000, 4000)).slowdown).toBeNull(); // nothing before
    expect(run(beats(0, 1000)).slowdown).toBeNull(); // nothing during
    expect(
      run([{ at: 900 }, { at: 950 }, ...beats(1000, 4000)].map((x) => ({ at: x.at }))).slowdown,
    ).toBeCloseTo(1, 9); // no write counts: heartbeats
  });
});
