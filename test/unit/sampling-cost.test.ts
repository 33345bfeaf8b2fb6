import { describe, expect, it } from 'vitest';
import {
  ADAPTIVE_WINDOWS_MS,
  cell,
  paceOver,
  samplingTables,
  summary,
  type IdleBlock,
  type MigrationRun,
} from '../../src/bench/sampling-cost.js';
import type { Heartbeat } from '../../src/lab/serial.js';

/** Beats every 50 ms from t=0 to t=1000, one 300 ms silence at 400–700; 100 writes per beat. */
function beats(): Heartbeat[] {
  const out: Heartbeat[] = [];
  for (let t = 0, seq = 0; t <= 1000; t += 50) {
    if (t > 400 && t < 700) continue;
    out.push({ seq: seq++, writesPerSec: 0, writes: t * 2, at: t });
  }
  return out;
}

describe('sampling cost: pace of the guest over an interval', () => {
  it('counts the beats, the gap distribution and the workload progress inside the interval only', () => {
    const p = paceOver(beats(), 0, 1000);
    // 21 slots, 5 of them (450…650) silent.
    expect(p.beatsPerSec).toBeCloseTo(16, 6);
    expect(p.gapP50Ms).toBe(50);
    expect(p.gapMaxMs).toBe(300);
    expect(p.gapP99Ms).toBeGreaterThan(50);
    // writes = 2 per ms of host time.
    expect(p.writesPerSec).toBeCloseTo(2000, 6);
    expect(p.appPerSec).toBeNull();
    // Before the silence only: even beats.
    const q = paceOver(beats(), 0, 400);
    expect(q.gapMaxMs).toBe(50);
  });

  it('counts a real application’s requests that ended within the interval, and their p99', () => {
    const reqs = [
      { endAt: 100, latMs: 1 },
      { endAt: 200, latMs: 2 },
      { endAt: 1500, latMs: 50 },
    ];
    const p = paceOver(beats(), 0, 1000, reqs);
    expect(p.appPerSec).toBe(2);
    expect(p.appP99Ms).toBeCloseTo(2, 1);
  });

  it('says nothing rather than a number when the interval has no beats', () => {
    const p = paceOver(beats(), 2000, 3000);
    expect(p.beatsPerSec).toBe(0);
    expect(p.gapMaxMs).toBeNaN();
    expect(p.writesPerSec).toBeNull();
  });
});

describe('sampling cost: summaries and tables', () => {
  it('takes the median and range of the finite values only', () => {
    expect(summary([3, null, 1, 2, NaN])).toEqual({ median: 2, min: 1, max: 3, n: 3 });
    expect(cell([1, 2, 3], 1)).toBe('2.0 [1.0–3.0]');
    expect(cell([null])).toBe('–');
  });

  it('measures the windows adaptive asks for', () => {
    expect(ADAPTIVE_WINDOWS_MS).toEqual([125, 500]);
  });

  it('puts sampler off and on side by side per workload', () => {
    const block = (sampler: boolean): IdleBlock => ({
      ...paceOver(beats(), 0, 1000),
      workload: 'random:200',
      labId: 'x',
      sampler,
      samples: sampler ? 4 : 0,
      qmpCommands: sampler ? 12 : 0,
      qmpP50Ms: sampler ? 1 : null,
      qmpMaxMs: sampler ? 3 : null,
      qemuCpuPct: 90,
    });
    const run = (sampler: boolean): MigrationRun => ({
      workload: 'random:200',
      link: '1gbit',
      labId: 'x',
      sampler,
      outcome: 'completed',
      success: true,
      totalTimeMs: 5000,
      transferredBytes: 2 ** 30,
      totalStallMs: 2000,
      longestSilenceMs: 1500,
      slowdown: 0.8,
      samples: sampler ? 10 : 0,
      passes: 3,
      action: 'switchover at pass 2',
      appP99Ms: null,
      appThroughputRatio: null,
    });
    const slower = { ...block(true), gapMaxMs: 600 };
    const t = samplingTables([slower, block(false)], [run(false), run(true)]);
    const rows = t.split('\n').filter((l) => l.startsWith('| random:200'));
    const sampler = (r: string) =>
      r
        .split('|')
        .map((c) => c.trim())
        .find((c) => c === 'on' || c === 'off');
    const bySampler = rows.filter((r) => sampler(r) !== undefined);
    expect(bySampler.map(sampler)).toEqual(['off', 'on', 'off', 'on']);
    expect(bySampler[2]).toContain('| random:200 | 1gbit | off |');
    expect(bySampler[2]).toContain('| 1024 [1024–1024] |');
    expect(bySampler[3]).toContain('| 2.00 [2.00–2.00] | 1.50 [1.50–1.50] |');
    // The adjacent blocks of one lab are compared as a pair: on ÷ off.
    expect(rows).toContain('| random:200 | heartbeat gap max | 1 | 2.00 [2.00–2.00] | 1/1 |');
    expect(rows).toContain('| random:200 | heartbeats/s | 1 | 1.00 [1.00–1.00] | 0/1 |');
  });
});
