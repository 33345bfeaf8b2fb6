import { describe, expect, it } from 'vitest';
import { MAX_DEADLINE_S, resolveDeadline } from '../../src/cli/deadline.js';

const GiB = 2 ** 30;

describe('resolveDeadline', () => {
  it('--deadline wins over everything', () => {
    expect(resolveDeadline({ deadlineS: 45, perGiBS: 150, ramBytes: 64 * GiB, bandwidthBps: 1e6 }).ms).toBe(
      45_000,
    );
  });

  it('--completion-timeout-per-gib scales with RAM (KubeVirt/Nova style), capped at a week', () => {
    expect(resolveDeadline({ perGiBS: 150, ramBytes: 4 * GiB }).ms).toBe(600_000);
    expect(resolveDeadline({ perGiBS: 2, ramBytes: 512 * 2 ** 20 }).ms).toBe(1000);
    expect(resolveDeadline({ perGiBS: 86_400, ramBytes: 64 * GiB }).ms).toBe(MAX_DEADLINE_S * 1000);
  });

  it('default: max(120 s, 60 s + 3 × RAM ÷ bandwidth)', () => {
    // Small guests keep the 120 s floor.
    expect(resolveDeadline({ ramBytes: 512 * 2 ** 20, bandwidthBps: 125e6 }).ms).toBe(120_000);
    // 64 GiB at 10 Gbit/s: bulk pass 55 s → 60 + 165.
    const d = resolveDeadline({ ramBytes: 64 * GiB, bandwidthBps: 10e9 / 8 });
    expect(d.ms).toBeCloseTo((60 + (3 * 64 * GiB) / (10e9 / 8)) * 1000, 6);
    expect(d.why).toMatch(/^224\.9 s \(max\(120 s, 60 s \+ 3 × 64 GiB at 10 Gbit\/s/);
    // 64 GiB at QEMU's default cap of 128 MiB/s: 60 + 3 × 512 s.
    expect(resolveDeadline({ ramBytes: 64 * GiB, bandwidthBps: 128 * 2 ** 20 }).ms).toBe(1_596_000);
  });

  it('unknown bandwidth (or 0) assumes 1 Gbit/s and says so', () => {
    const d = resolveDeadline({ ramBytes: 64 * GiB, bandwidthBps: 0 });
    expect(d.ms).toBeCloseTo((60 + (3 * 64 * GiB) / 125e6) * 1000, 6);
    expect(d.why).toMatch(/assumed/);
    expect(resolveDeadline({ ramBytes: 64 * GiB }).ms).toBe(d.ms);
  });

  it('never beyond a week, however slow the link', () => {
    expect(resolveDeadline({ ramBytes: 1024 * GiB, bandwidthBps: 1000 }).ms).toBe(MAX_DEADLINE_S * 1000);
  });
});
