import { describe, expect, it } from 'vitest';
import {
  resolvePolicy,
  workingSetCurve,
  predictOptions,
  type ControllerState,
  type PassRecord,
} from '../../src/policy/index.js';
import { AdaptiveConfigSchema } from '../../src/policy/adaptive.js';

const MiB = 2 ** 20;
const B = 119 * MiB; // ~1 Gbit/s

/** A synthetic history: pass j lasted seconds[j] and left dirty[j] MiB. */
function history(
  seconds: number[],
  dirtyMiB: number[],
  extra: Partial<ControllerState> = {},
): ControllerState {
  let t = 0;
  const passes: PassRecord[] = seconds.map((s, j) => {
    const rec: PassRecord = {
      pass: j + 1,
      startMs: t,
      endMs: t + s * 1000,
      bytesSent: s * B,
      // Consistent page counts: full pages for the bytes sent; the bulk pass sends the rest as zero pages.
      normalPages: Math.round((s * B) / 4096),
      zeroPages: j === 0 ? Math.max(0, Math.round((512 * MiB - s * B) / 4096)) : 0,
      remainingAtStartBytes: j === 0 ? 512 * MiB : dirtyMiB[j - 1]! * MiB,
      dirtyAtEndBytes: dirtyMiB[j]! * MiB,
      bandwidthBps: B,
      qemuMbps: 1000,
      dirtyPagesRate: 0,
      downtimeLimitMs: 300,
    };
    t += s * 1000;
    return rec;
  });
  return {
    elapsedMs: t,
    status: 'active',
    passes,
    currentPass: passes.length + 1,
    atPassEnd: true,
    ramBytes: 512 * MiB,
    remainingBytes: dirtyMiB.at(-1)! * MiB,
    transferredBytes: seconds.reduce((a, s) => a + s * B, 0),
    bandwidthBps: B,
    downtimeBudgetMs: 300,
    deadlineMs: 60_000,
    downtimeLimitMs: 300,
    postcopyPermitted: false,
    progressWatermark: { remainingBytes: 0, atMs: 0 },
    actions: [],
    ...extra,
  };
}

/** Region sets: `n` passes each dirtying the given region indices. */
const regions = (...perPass: number[][]) => ({
  source: 'tap' as const,
  regionBytes: 2 * MiB,
  regionCount: 256,
  perPass,
});
const range = (from: number, to: number) => Array.from({ length: to - from }, (_, i) => from + i);

describe('frs', () => {
  const { policy, config } = resolvePolicy('frs');
  it('continues while the dirty set shrinks, switches over once it stops', () => {
    expect(policy.decide(history([4, 1.7], [210, 150]), config).kind).toBe('continue');
    const a = policy.decide(history([4, 1.7, 1.3], [210, 150, 145]), config);
    expect(a.kind).toBe('switchover');
    expect(a.reason).toMatch(/145\.0 MiB ≥ 0\.90 × previous 150\.0 MiB/);
  });
  it('never acts after one pass, between pass ends, or while QEMU converges by itself (idle)', () => {
    expect(policy.decide(history([4], [210]), config).kind).toBe('continue');
    expect(policy.decide(history([4, 1.7, 1.3], [210, 150, 145], { atPassEnd: false }), config).kind).toBe(
      'continue',
    );
    // 7 MiB fits in 300 ms at 1 Gbit: QEMU finishes on its own.
    expect(policy.decide(history([0.8, 0.05], [7, 7]), config).kind).toBe('continue');
  });
  it('does not force a switchover while the dirty set still shrinks near QEMU’s threshold (rate workload)', () => {
    // threshold = 119 MiB/s × 0.3 s ≈ 35.7 MiB; 39.5 → 36.5 MiB is ≥ 0.9× but still shrinking.
    expect(policy.decide(history([4.4, 1.3, 0.6, 0.35, 0.33], [158, 78, 45, 39.5, 36.5]), config).kind).toBe(
      'continue',
    );
    // Flat at the same size: stopped shrinking → switch.
    expect(policy.decide(history([4.4, 1.3, 0.6, 0.35, 0.33], [158, 78, 45, 39.5, 39.6]), config).kind).toBe(
      'switchover',
    );
  });
  it('switches over at maxPasses', () => {
    const { policy: p, config: c } = resolvePolicy('frs', { maxPasses: '4' });
    expect(p.decide(history([4, 2, 1.4, 1], [240, 170, 120, 100]), c)).toMatchObject({
      kind: 'switchover',
      reason: expect.stringMatching(/maxPasses/),
    });
  });
  it('handles a bandwidth drop mid-migration: a stalling dirty set still switches', () => {
    const s = history([4, 1.7, 2.5], [210, 150, 148], { bandwidthBps: B / 4 });
    expect(policy.decide(s, config).kind).toBe('switchover');
  });
});

describe('mp', () => {
  const { policy, config } = resolvePolicy('mp');
  it('falls back to FRS without a region source, and says so', () => {
    const a = policy.decide(history([4, 1.7, 1.3], [210, 150, 145]), config);
    expect(a.kind).toBe('switchover');
    expect(a.reason).toMatch(/^mp \(no region source: FRS fallback\)/);
  });
  it('converging: continues', () => {
    const a = policy.decide(
      history([4, 1.3], [160, 80], { regions: regions(range(0, 100), range(0, 100)) }),
      config,
    );
    expect(a).toMatchObject({ kind: 'continue', reason: expect.stringMatching(/converging/) });
  });
  it('uniform-heavy: switches over right after the bulk pass', () => {
    // The bulk pass sent 4 s × B and the guest re-dirtied ≥ 80% of that, everywhere it writes.
    const s = history([2.2], [210], { regions: regions(range(0, 100)) });
    expect(policy.decide(s, config)).toMatchObject({
      kind: 'switchover',
      reason: expect.stringMatching(/uniform-heavy/),
    });
  });
  it('uniform-heavy with post-copy permitted and downtime far over budget: post-copy', () => {
    const s = history([2.2], [210], { regions: regions(range(0, 100)), postcopyPermitted: true });
    expect(policy.decide(s, config).kind).toBe('postcopy');
  });
  it('hot/cold: a stable hot set the size of the dirty set → switchover', () => {
    // 32 hot regions (64 MiB) dirtied every pass; the cold 128 regions only during the bulk pass.
    const hot = range(0, 32);
    const s = history([4, 0.9, 0.6], [100, 66, 64], {
      regions: regions([...hot, ...range(32, 160)], hot, hot),
    });
    expect(policy.decide(s, config)).toMatchObject({
      kind: 'switchover',
      reason: expect.stringMatching(/hot\/cold/),
    });
  });
  it('phase change: a moving hot set with a shrinking dirty set → one more pass', () => {
    // The hot window moved from A to B two passes ago.
    const [A, B2] = [range(0, 32), range(32, 64)];
    const s = history([4, 1.2, 0.9, 0.85, 0.8], [150, 110, 100, 95, 90], {
      regions: regions(A, A, A, B2, B2),
    });
    expect(policy.decide(s, config)).toMatchObject({
      kind: 'continue',
      reason: expect.stringMatching(/phase change/),
    });
  });
  it('idle: never acts while QEMU can converge', () => {
    const s = history([0.8, 0.05], [7, 7], { regions: regions([1, 2], [1, 2]) });
    expect(policy.decide(s, config).kind).toBe('continue');
  });
});

describe('adaptive', () => {
  const cfg = AdaptiveConfigSchema.parse({});
  it('without short-window samples, a line through the origin would keep it waiting (why it asks for them)', () => {
    const { policy, config } = resolvePolicy('adaptive');
    expect(
      policy.setup(config, { downtimeBudgetMs: 300, postcopyPermitted: false }).workingSetWindowsMs,
    ).toEqual([125, 500]);
    expect(policy.decide(history([2.3, 1.7], [210, 195]), config).kind).toBe('continue');
  });

  it('fits a monotone, saturating working-set curve', () => {
    const W = workingSetCurve([
      { seconds: 4, bytes: 160 },
      { seconds: 1, bytes: 80 },
    ]);
    expect(W(0)).toBe(0);
    expect(W(0.5)).toBe(40);
    expect(W(2.5)).toBe(120);
    expect(W(10)).toBe(160);
  });
  it('predicts shrinking passes for a converging guest and keeps going', () => {
    const { policy, config } = resolvePolicy('adaptive');
    const s = history([4.4, 1.3], [158, 78], { downtimeLimitMs: 300 });
    const options = predictOptions(s, cfg);
    expect(options[1]!.downtimeMs).toBeLessThan(options[0]!.downtimeMs);
    expect(policy.decide(s, config).kind).toBe('continue');
  });
  it('switches now, with a finite limit from its prediction, when the working set is saturated', () => {
    const { policy, config } = resolvePolicy('adaptive');
    // calc-dirty-rate saw the whole working set dirtied within 125 ms.
    const samples = [{ seconds: 0.125, bytes: 200 * MiB, atMs: 1000 }];
    const a = policy.decide(history([2.3, 1.7], [210, 195], { workingSetSamples: samples }), config);
    expect(a.kind).toBe('switchover');
    if (a.kind !== 'switchover') return;
    expect(a.prediction!.downtimeMs).toBeCloseTo((195 / 119) * 1000 + 40, -1);
    expect(a.downtimeLimitMs).toBe(Math.round(a.prediction!.downtimeMs * 1.3));
  });
  it('waits for a second pass before fitting, and forces if its finite limit did not stop QEMU', () => {
    const { policy, config } = resolvePolicy('adaptive');
    expect(policy.decide(history([2.3], [210]), config).kind).toBe('continue');
    const after = history([2.3, 1.7, 1.7], [210, 200, 200], {
      downtimeLimitMs: 2300,
      currentPass: 5,
      actions: [{ kind: 'switchover', atMs: 4000, pass: 3 }],
    });
    const forced = policy.decide(after, config);
    expect(forced.kind).toBe('switchover');
    expect(forced.kind === 'switchover' && forced.downtimeLimitMs).toBeFalsy();
  });
  it('switches when the passes refute its curve: the dirty set stopped shrinking (sequential writer)', () => {
    const { policy, config } = resolvePolicy('adaptive');
    // A curve that predicts gains (points from short windows), but the last pass did not shrink.
    const samples = [{ seconds: 0.125, bytes: 50 * MiB, atMs: 100 }];
    const a = policy.decide(
      history([2.3, 2.1, 2.1], [256, 250, 252], { workingSetSamples: samples }),
      config,
    );
    expect(a).toMatchObject({ kind: 'switchover', reason: expect.stringMatching(/did not shrink/) });
  });

  it('with post-copy permitted, post-copies during the bulk pass once a steady guest shows a working set too big for the budget', () => {
    const { policy, config } = resolvePolicy('adaptive');
    const busy = [0.15, 0.7, 1.1, 1.7].map((t, i) => ({
      seconds: i % 2 ? 0.5 : 0.125,
      bytes: 200 * MiB,
      atMs: t * 1000,
    }));
    const bulk = (elapsedMs: number, extra: Partial<ControllerState> = {}): ControllerState => ({
      ...history([1], [0]),
      passes: [],
      currentPass: 1,
      atPassEnd: false,
      elapsedMs,
      remainingBytes: 300 * MiB,
      transferredBytes: 200 * MiB,
      workingSetSamples: busy.filter((s) => s.atMs <= elapsedMs),
      ...extra,
    });
    // Not permitted: never.
    expect(policy.decide(bulk(1800), config).kind).toBe('continue');
    // Permitted, but watched for less than observeMs: not yet.
    expect(policy.decide(bulk(1200, { postcopyPermitted: true }), config).kind).toBe('continue');
    const a = policy.decide(bulk(1800, { postcopyPermitted: true }), config);
    expect(a).toMatchObject({ kind: 'postcopy', reason: expect.stringMatching(/cannot fit the budget/) });
    if (a.kind !== 'postcopy') return;
    // The rest of RAM once, and a stall until the 125 ms working set has crossed.
    expect(a.prediction!.bytes).toBe(500 * MiB);
    expect(a.prediction!.downtimeMs).toBeCloseTo(40 + (200 / 119) * 1000, -1);
    // A guest whose working set fits the budget is left to QEMU.
    const light = busy.map((s) => ({ ...s, bytes: 2 * MiB }));
    expect(
      policy.decide(bulk(1800, { postcopyPermitted: true, workingSetSamples: light }), config).kind,
    ).toBe('continue');
  });
  it('post-copies rather than stop-and-copy when no pre-copy option meets the budget, only if permitted', () => {
    const { policy, config } = resolvePolicy('adaptive');
    const samples = [{ seconds: 0.125, bytes: 30 * MiB, atMs: 100 }];
    const s = history([2.3, 2.1, 2.1], [256, 250, 252], { workingSetSamples: samples });
    expect(policy.decide(s, config).kind).toBe('switchover');
    expect(policy.decide({ ...s, postcopyPermitted: true }, config)).toMatchObject({
      kind: 'postcopy',
      reason: expect.stringMatching(/did not shrink/),
    });
    expect(policy.setup(config, { downtimeBudgetMs: 300, postcopyPermitted: true }).postcopy).toBe(true);
    expect(policy.setup(config, { downtimeBudgetMs: 300, postcopyPermitted: false }).postcopy).toBe(false);
  });
  it('waits for a quiet phase when the dirty rate drops at times (bursts), within quietWaitS and the deadline', () => {
    const { policy, config } = resolvePolicy('adaptive');
    const rates = [200, 200, 2, 200, 200, 2]; // MiB per 125 ms window
    const samples = rates.map((m, i) => ({ seconds: 0.125, bytes: m * MiB, atMs: 500 + i * 600 }));
    const s = history([2.3, 1.5, 1.5], [209, 199, 199], { workingSetSamples: samples });
    expect(policy.decide(s, config)).toMatchObject({
      kind: 'continue',
      reason: expect.stringMatching(/quiet phase/),
    });
    // Past the wait (the first quiet sample 31 s ago), it judges the guest as if it had no quiet phases.
    const later = (ms: number) => samples.map((x) => ({ ...x, atMs: x.atMs + ms }));
    const late = { ...s, elapsedMs: 33_000, workingSetSamples: [...samples, ...later(25_000)] };
    expect(policy.decide(late, config).kind).toBe('switchover');
    // Near the deadline too.
    expect(policy.decide({ ...s, deadlineMs: 2000 }, config).kind).toBe('switchover');
    // A steady guest (no quiet samples) does not wait.
    const steady = samples.map((x) => ({ ...x, bytes: 200 * MiB }));
    expect(policy.decide({ ...s, workingSetSamples: steady }, config).kind).toBe('switchover');
  });

  it('respects the deadline: no waiting past it', () => {
    const { policy, config } = resolvePolicy('adaptive');
    expect(policy.decide(history([4.4, 1.3], [158, 78], { deadlineMs: 5800 }), config).kind).toBe(
      'switchover',
    );
  });
});
