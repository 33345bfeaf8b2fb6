import { describe, expect, it } from 'vitest';
import { PassTracker } from '../../src/core/pass-tracker.js';
import type { MigrationInfo } from '../../src/core/sample.js';

const MiB = 2 ** 20;
const sample = (
  sync: number,
  transferred: number,
  remaining: number,
  normal = 0,
  duplicate = 0,
): MigrationInfo => ({
  status: 'active',
  ram: {
    transferred,
    remaining,
    total: 512 * MiB,
    normal,
    duplicate,
    'dirty-sync-count': sync,
    mbps: 950,
    'dirty-pages-rate': 50_000,
  },
});

describe('PassTracker', () => {
  it('cuts passes at each dirty-sync-count change and measures each', () => {
    const t = new PassTracker();
    expect(t.observe(sample(1, 10 * MiB, 500 * MiB), 100, 300)).toBe(false);
    expect(t.currentPass).toBe(1);
    expect(t.observe(sample(1, 200 * MiB, 300 * MiB, 40_000, 10_000), 1500, 300)).toBe(false);
    expect(t.observe(sample(2, 250 * MiB, 200 * MiB, 60_000, 20_000), 2000, 300)).toBe(true);
    expect(t.currentPass).toBe(2);
    expect(t.observe(sample(3, 450 * MiB, 190 * MiB, 110_000, 20_000), 3600, 300)).toBe(true);
    expect(t.passes.map((p) => p.pass)).toEqual([1, 2]);
    const [bulk, second] = t.passes;
    expect(bulk).toMatchObject({
      startMs: 0,
      endMs: 2000,
      bytesSent: 250 * MiB,
      remainingAtStartBytes: 512 * MiB,
      dirtyAtEndBytes: 200 * MiB,
    });
    expect(bulk!.normalPages).toBe(60_000);
    expect(bulk!.bandwidthBps).toBeCloseTo((250 * MiB) / 2, 0);
    expect(second).toMatchObject({
      startMs: 2000,
      endMs: 3600,
      bytesSent: 200 * MiB,
      remainingAtStartBytes: 200 * MiB,
      dirtyAtEndBytes: 190 * MiB,
    });
    expect(second!.normalPages).toBe(50_000);
  });

  it('gives zero-length passes to syncs that happened between two samples', () => {
    const t = new PassTracker();
    t.observe(sample(1, 0, 500 * MiB), 0, 300);
    t.observe(sample(4, 300 * MiB, 1 * MiB), 900, 300);
    expect(t.passes.map((p) => [p.pass, p.endMs - p.startMs])).toEqual([
      [1, 900],
      [2, 0],
      [3, 0],
    ]);
    expect(t.currentPass).toBe(4);
  });

  it('closes the last pass at finish with nothing left dirty', () => {
    const t = new PassTracker();
    t.observe(sample(1, 0, 500 * MiB), 0, 300);
    t.finish({ status: 'completed', ram: sample(1, 520 * MiB, 0).ram }, 4000);
    expect(t.passes).toHaveLength(1);
    expect(t.passes[0]).toMatchObject({ pass: 1, endMs: 4000, bytesSent: 520 * MiB, dirtyAtEndBytes: 0 });
  });

  it('ignores samples before the first sync', () => {
    const t = new PassTracker();
    expect(t.observe({ status: 'setup' }, 5, 300)).toBe(false);
    expect(t.observe(sample(0, 0, 0), 5, 300)).toBe(false);
    expect(t.currentPass).toBe(0);
  });
});
