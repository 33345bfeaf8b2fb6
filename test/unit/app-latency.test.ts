import { describe, expect, it } from 'vitest';
import { appLatency, hostRequests } from '../../src/lab/app-latency.js';
import { parseAppLine, type AppStream } from '../../src/lab/serial.js';

/**
 * A guest whose clock runs with the host's (offset 1000 ms) except while paused: from host
 * `pauseAt` for `pauseMs`, the guest's clock stops, so afterwards host = guest + 1000 + pauseMs.
 * Lines arrive `lagMs` after they are printed.
 */
function guest(opts: { pauseAt?: number; pauseMs?: number; lagMs?: number; until: number }) {
  const pauseAt = opts.pauseAt ?? Infinity;
  const pauseMs = opts.pauseMs ?? 0;
  const lag = opts.lagMs ?? 2;
  const hostOf = (g: number) => (g + 1000 < pauseAt ? g + 1000 : g + 1000 + pauseMs);
  const stream: AppStream = { samples: [], clock: [] };
  const line = (text: string, g: number) => parseAppLine(text, hostOf(g) + lag, stream);
  for (let g = 0; g + 1000 < opts.until; g += 25) line(`AT ${g * 1000}`, g);
  /** A request that ran [g0, g1] by the guest's clock. */
  const request = (g0: number, g1: number) => line(`AL ${g1 * 1000} ${(g1 - g0) * 1000}`, g1);
  return { stream, request, hostOf };
}

describe('parseAppLine', () => {
  it('reads AL and AT lines, nothing else', () => {
    const s: AppStream = { samples: [], clock: [] };
    expect(parseAppLine('AL 123456 789', 10, s)).toBe(true);
    expect(parseAppLine('AT 5000', 11, s)).toBe(true);
    expect(parseAppLine('HB 1 2 3', 12, s)).toBe(false);
    expect(parseAppLine('AL 12 x', 12, s)).toBe(false);
    expect(parseAppLine('APP READY pgbench', 12, s)).toBe(false);
    expect(s).toEqual({
      samples: [{ endUs: 123456, latUs: 789, at: 10 }],
      clock: [{ guestUs: 5000, at: 11 }],
    });
  });
});

describe('application latency on the host clock', () => {
  it('a running guest: host latency equals the guest’s own', () => {
    const g = guest({ until: 10_000 });
    for (let t = 100; t < 8000; t += 10) g.request(t, t + 20);
    const reqs = hostRequests([g.stream]);
    for (const r of reqs) expect(r.latMs).toBeCloseTo(20, 6);
  });

  it('a request spanning a pause took the pause longer than the guest measured', () => {
    // Paused at host 5000 (guest 4000) for 800 ms.
    const g = guest({ pauseAt: 5000, pauseMs: 800, until: 10_000 });
    g.request(3900, 4100); // spans the pause: guest says 200 ms, the host saw 1000 ms
    g.request(3000, 3050);
    g.request(4500, 4530);
    const byGuest = new Map(hostRequests([g.stream]).map((r) => [r.guestLatMs, r]));
    expect(byGuest.get(200)!.latMs).toBeCloseTo(1000, 6);
    expect(byGuest.get(200)!.endAt).toBeCloseTo(g.hostOf(4100) + 2, 6); // when its line arrived
    expect(byGuest.get(50)!.latMs).toBeCloseTo(50, 6);
    expect(byGuest.get(30)!.latMs).toBeCloseTo(30, 6);
  });

  it('a line printed before the pause but delivered after it does not move the pause earlier', () => {
    const g = guest({ pauseAt: 5000, pauseMs: 800, until: 10_000 });
    // The guest printed at 3990 (host 4990) but the line sat in the UART until after the pause.
    parseAppLine('AT 3990000', 5805, g.stream);
    g.request(3960, 4100);
    expect(hostRequests([g.stream])[0]!.latMs).toBeCloseTo(940, 6);
  });

  it('the limit: a request begun after the last line that arrived before the pause looks begun after it', () => {
    // The guest prints its clock every 25 ms: the last prompt line before the pause (guest 4000)
    // is at 3975, so a request begun at 3980 is placed after the pause (error window ≤ 25 ms).
    const g = guest({ pauseAt: 5000, pauseMs: 800, until: 10_000 });
    g.request(3980, 4100);
    expect(hostRequests([g.stream])[0]!.latMs).toBeCloseTo(120, 6);
  });

  it('a request printed on both consoles counts once', () => {
    const g = guest({ until: 10_000 });
    g.request(1000, 1100);
    const copy: AppStream = { samples: g.stream.samples.map((s) => ({ ...s, at: s.at + 500 })), clock: [] };
    expect(hostRequests([g.stream, copy])).toHaveLength(1);
  });

  it('the lab’s verification hold is cut out, as for the heartbeat stall', () => {
    // Paused at host 5000 for 800 ms of which the lab held [5300, 5800) to compare RAM.
    const g = guest({ pauseAt: 5000, pauseMs: 800, until: 10_000 });
    g.request(3900, 4100);
    const [r] = hostRequests([g.stream], [{ from: 5300, to: 5800 }]);
    expect(r!.latMs).toBeCloseTo(500, 6);
  });

  it('p99 and max over the window, with the baseline before migrate and throughput during pre-copy', () => {
    const g = guest({ pauseAt: 5000, pauseMs: 800, until: 12_000 });
    // One request every 10 ms of 20 ms; from guest 2000 (host 3000, the migration) 40 ms, at half the rate.
    for (let t = 0; t < 2000; t += 10) g.request(t, t + 20);
    for (let t = 2000; t < 3960; t += 20) g.request(t, t + 40);
    g.request(3960, 4100); // spans the pause
    for (let t = 4100; t < 9000; t += 10) g.request(t, t + 20);
    const a = appLatency({ streams: [g.stream], window: { from: 3000, to: 6000 }, precopyEnd: 5000 })!;
    expect(a.maxMs).toBeCloseTo(940, 6);
    expect(a.guestClock.maxMs).toBeCloseTo(140, 6);
    expect(a.longestPauseInRequestMs).toBeCloseTo(800, 6);
    expect(a.baseline.p99Ms).toBeCloseTo(20, 6);
    expect(a.baseline.perSec).toBeCloseTo(100, 0);
    expect(a.p99Ms).toBeGreaterThanOrEqual(40);
    expect(a.throughputRatio).toBeCloseTo(0.5, 1);
    expect(a.complete).toBe(true);
  });

  it('no app lines: nothing to report', () => {
    expect(appLatency({ streams: [{ samples: [], clock: [] }], window: { from: 0, to: 1 } })).toBeUndefined();
  });
});
