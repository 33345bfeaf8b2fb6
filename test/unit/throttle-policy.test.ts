import { describe, expect, it } from 'vitest';
import { resolvePolicy } from '../../src/policy/index.js';
import type { ControllerState, PassRecord } from '../../src/policy/types.js';

const MiB = 2 ** 20;
const pass = (n: number, startMs: number, endMs: number, dirtyMiB: number, bw = 120 * MiB): PassRecord => ({
  pass: n,
  startMs,
  endMs,
  bytesSent: ((endMs - startMs) / 1000) * bw,
  normalPages: 0,
  zeroPages: 0,
  remainingAtStartBytes: 0,
  dirtyAtEndBytes: dirtyMiB * MiB,
  bandwidthBps: bw,
  qemuMbps: 1000,
  dirtyPagesRate: 0,
  downtimeLimitMs: 300,
});
const state = (passes: PassRecord[], throttlePercent = 0): ControllerState => ({
  elapsedMs: passes.at(-1)!.endMs,
  status: 'active',
  passes,
  currentPass: passes.length + 1,
  atPassEnd: true,
  ramBytes: 512 * MiB,
  remainingBytes: 0,
  transferredBytes: 0,
  bandwidthBps: 120 * MiB,
  downtimeBudgetMs: 300,
  deadlineMs: 60_000,
  downtimeLimitMs: 300,
  postcopyPermitted: false,
  progressWatermark: { remainingBytes: 0, atMs: 0 },
  throttlePercent,
  actions: [],
});

describe('throttle (SDPS-like)', () => {
  const { policy, config } = resolvePolicy('throttle');
  it('sets up auto-converge with no throttle yet', () => {
    const s = policy.setup(config, { downtimeBudgetMs: 300, postcopyPermitted: false });
    expect(s.autoConverge).toBe(true);
    expect(s.parameters?.['max-cpu-throttle']).toBe(1);
  });

  it('throttles so the dirty rate falls under 80% of the send rate', () => {
    // 240 MiB dirtied in 1 s against 120 MiB/s sent: t = 1 − 0.8 × 120 / 240 = 60%.
    const a = policy.decide(state([pass(1, 0, 2000, 200), pass(2, 2000, 3000, 240)]), config);
    expect(a).toMatchObject({ kind: 'throttle', percent: 60 });
  });

  it('accounts for the throttle already in force, and leaves small changes alone', () => {
    // Measured 96 MiB/s under 60%: the guest's own rate is 240 MiB/s → still 60%.
    expect(policy.decide(state([pass(1, 0, 2000, 200), pass(2, 2000, 3000, 96)], 60), config).kind).toBe(
      'continue',
    );
  });

  it('does nothing on a guest that dirties less than the link sends', () => {
    expect(policy.decide(state([pass(1, 0, 2000, 200), pass(2, 2000, 3000, 30)]), config).kind).toBe(
      'continue',
    );
  });
});
