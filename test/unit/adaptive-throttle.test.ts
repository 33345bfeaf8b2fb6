import { describe, expect, it } from 'vitest';
import { resolvePolicy } from '../../src/policy/index.js';
import { predictThrottled, throttleSleepMs } from '../../src/policy/throttle-plan.js';
import type { ControllerState, PassRecord } from '../../src/policy/types.js';
import { workingSetCurve } from '../../src/policy/working-set.js';
import { simulate } from '../../src/sim/simulate.js';
import { TCG_GUEST, workloadClasses } from '../../src/sim/model.js';
import { linkBps } from '../../src/sim/sweep.js';
import { parseWorkload } from '../../src/util/specs.js';

const MiB = 2 ** 20;
const BW = 110 * MiB;
const pass = (n: number, startMs: number, endMs: number, dirtyMiB: number): PassRecord => ({
  pass: n,
  startMs,
  endMs,
  bytesSent: ((endMs - startMs) / 1000) * BW,
  normalPages: 0,
  zeroPages: 0,
  remainingAtStartBytes: 0,
  dirtyAtEndBytes: dirtyMiB * MiB,
  bandwidthBps: BW,
  qemuMbps: 900,
  dirtyPagesRate: 0,
  downtimeLimitMs: 300,
});

/**
 * A guest whose working set grows over seconds (calc-dirty-rate: 40 MiB in 125 ms, 120 MiB in
 * 500 ms, ~290 MiB after 3 s): switching now stalls it ~2.6 s, and at 80% throttle it runs 0.2 s
 * per second, where it dirties a fraction of that.
 */
const growing = (over: Partial<ControllerState> = {}): ControllerState => ({
  elapsedMs: 5900,
  status: 'active',
  passes: [pass(1, 0, 3200, 294), pass(2, 3200, 5900, 286)],
  currentPass: 3,
  atPassEnd: true,
  ramBytes: 512 * MiB,
  remainingBytes: 286 * MiB,
  transferredBytes: 800 * MiB,
  bandwidthBps: BW,
  downtimeBudgetMs: 300,
  deadlineMs: 60_000,
  downtimeLimitMs: 300,
  postcopyPermitted: false,
  progressWatermark: { remainingBytes: 286 * MiB, atMs: 5900 },
  workingSetSamples: [
    { seconds: 0.125, bytes: 40 * MiB, atMs: 5000 },
    { seconds: 0.5, bytes: 120 * MiB, atMs: 5500 },
  ],
  actions: [],
  ...over,
});

/** The same pass counts, but the working set is whole within 125 ms: no throttle ≤ 80% shrinks it. */
const saturated = (): ControllerState =>
  growing({
    workingSetSamples: [
      { seconds: 0.125, bytes: 270 * MiB, atMs: 5000 },
      { seconds: 0.5, bytes: 286 * MiB, atMs: 5500 },
    ],
  });

const adaptive = (opts: Record<string, string> = {}) => resolvePolicy('adaptive', opts);

describe('throttle plan', () => {
  it("QEMU's sleep per 10 ms slice: p/(1−p) × 10 ms", () => {
    expect(throttleSleepMs(50)).toBeCloseTo(10);
    expect(throttleSleepMs(80)).toBeCloseTo(40);
    expect(throttleSleepMs(99)).toBeCloseTo(990);
  });

  it('predicts the throttled guest from the unthrottled curve at its running time', () => {
    const s = growing();
    const W = workingSetCurve([
      { seconds: 0.125, bytes: 40 * MiB },
      { seconds: 0.5, bytes: 120 * MiB },
      { seconds: 3.2, bytes: 294 * MiB },
    ]);
    const opts = { switchCostMs: 40, epsilon: 0.05, maxPasses: 30 };
    const at80 = predictThrottled(s, W, 80, opts)!;
    const at10 = predictThrottled(s, W, 10, opts)!;
    // 80%: the dirty set falls under the budget's 33 MiB; 10% barely slows it: it stalls seconds.
    expect(at80.downtimeMs).toBeLessThanOrEqual(300 + 40);
    expect(at10.downtimeMs).toBeGreaterThan(1500);
    // The pass under way runs unthrottled: nothing is taken in it.
    expect(at80.takenMs).toBeLessThan(0.8 * (at80.totalMs - s.elapsedMs));
    expect(at80.totalMs).toBeGreaterThan(s.elapsedMs + 2000);
    // Past the deadline there is no option.
    expect(predictThrottled({ ...s, deadlineMs: 8000 }, W, 80, opts)).toBeUndefined();
  });
});

describe('adaptive: throttling (issue 17)', () => {
  it('off by default: the same switchover as before, and auto-converge stays off', () => {
    const { policy, config } = adaptive();
    expect(policy.decide(growing(), config).kind).toBe('switchover');
    expect(policy.setup(config, { downtimeBudgetMs: 300, postcopyPermitted: false }).autoConverge).toBe(
      false,
    );
  });

  it('on: steers auto-converge from 1%, and throttles a guest whose working set grows over seconds', () => {
    const { policy, config } = adaptive({ throttle: 'true' });
    const setup = policy.setup(config, { downtimeBudgetMs: 300, postcopyPermitted: false });
    expect(setup).toMatchObject({ autoConverge: true, parameters: { 'max-cpu-throttle': 1 } });
    const a = policy.decide(growing(), config);
    expect(a.kind).toBe('throttle');
    if (a.kind !== 'throttle') return;
    expect(a.percent).toBeGreaterThanOrEqual(10);
    expect(a.percent).toBeLessThanOrEqual(80);
    expect(a.reason).toMatch(/switching now would stall \d+ ms → throttle \d+%: predicted \d+ ms stall/);
  });

  it('never throttles past maxThrottlePct', () => {
    const { policy, config } = adaptive({ throttle: 'true', maxThrottlePct: '30' });
    // At 30% it still pays here (2.6 s → ~1.5 s predicted); it would take 80% unbounded.
    expect(policy.decide(growing(), config)).toMatchObject({ kind: 'throttle', percent: 30 });
    expect(policy.decide(growing(), adaptive({ throttle: 'true' }).config)).toMatchObject({ percent: 80 });
  });

  it('where the model sees no clear gain, it probes once at the highest level (its short windows err most)', () => {
    const { policy, config } = adaptive({ throttle: 'true' });
    expect(policy.decide(saturated(), config)).toMatchObject({
      kind: 'throttle',
      percent: 80,
      reason: expect.stringMatching(/not predicted to pay .* → probe: throttle 80%/),
    });
  });

  it('neither throttles nor probes when the slowdown is weighed as heavily as a stall', () => {
    const { policy, config } = adaptive({ throttle: 'true', slowdownWeight: '1' });
    expect(policy.decide(growing(), config).kind).toBe('switchover');
  });

  it('once throttled: waits for a throttled pass, goes on while it shrinks, switches when it stops', () => {
    const { policy, config } = adaptive({ throttle: 'true' });
    const throttled = { actions: [{ kind: 'throttle' as const, atMs: 5900, pass: 3 }], throttlePercent: 80 };
    const p = [pass(1, 0, 3200, 294), pass(2, 3200, 5900, 286)];
    // Pass 3 ran before QEMU applied it (it may take two syncs): no judgement yet.
    const s3 = growing({
      ...throttled,
      passes: [...p, pass(3, 5900, 8500, 290)],
      currentPass: 4,
      elapsedMs: 8500,
    });
    expect(policy.decide(s3, config)).toMatchObject({
      kind: 'continue',
      reason: expect.stringMatching(/waiting for a pass that ran/),
    });
    // Pass 4 may still have run before it (QEMU acts at every second rate period): no judgement yet.
    const p4 = [...p, pass(3, 5900, 8500, 290), pass(4, 8500, 11100, 120)];
    const s4 = growing({ ...throttled, passes: p4, currentPass: 5, elapsedMs: 11100 });
    expect(policy.decide(s4, config)).toMatchObject({
      kind: 'continue',
      reason: expect.stringMatching(/waiting for a pass that ran/),
    });
    // Pass 5 ran throttled and shrank the dirty set: QEMU is left to converge.
    const shrunk = growing({
      ...throttled,
      passes: [...p4, pass(5, 11100, 12200, 80)],
      currentPass: 6,
      elapsedMs: 12200,
    });
    expect(policy.decide(shrunk, config)).toMatchObject({
      kind: 'continue',
      reason: expect.stringMatching(/throttled 80%, the dirty set shrinks \(120\.0 MiB → 80\.0 MiB\)/),
    });
    const p5 = [...p4, pass(5, 11100, 12200, 118)];
    const s5 = growing({ ...throttled, passes: p5, currentPass: 6, elapsedMs: 12200 });
    const a = policy.decide(s5, config);
    expect(a).toMatchObject({
      kind: 'switchover',
      reason: expect.stringMatching(/stopped shrinking at 118\.0 MiB/),
    });
    // A finite limit from the prediction, so QEMU may still switch at a dip within the pass.
    if (a.kind === 'switchover') expect(a.downtimeLimitMs).toBeLessThan(2000);
    // With post-copy permitted, a throttle that left more than the budget is weighed against it again.
    expect(policy.decide({ ...s5, postcopyPermitted: true }, config)).toMatchObject({
      kind: 'postcopy',
      reason: expect.stringMatching(
        /stopped shrinking at 118\.0 MiB \(stopping: \+0 passes: .*\) → post-copy now \(post-copy: downtime/,
      ),
    });
    // Below the highest level, a throttle that did not bite is raised once, to the highest.
    expect(policy.decide({ ...s5, throttlePercent: 30 }, config)).toMatchObject({
      kind: 'throttle',
      percent: 80,
      reason: expect.stringMatching(/did not shrink/),
    });
    // With the last fifth of the deadline left it switches whatever the trend.
    expect(policy.decide({ ...s4, elapsedMs: 50_000 }, config).kind).toBe('switchover');
  });
});

describe('adaptive with throttle in the simulator (same core, QEMU model)', () => {
  const run = (classes: ReturnType<typeof workloadClasses>, throttle: boolean) =>
    simulate({
      policy: adaptive({ throttle: String(throttle) }),
      classes,
      ramBytes: 512 * MiB,
      linkBps: linkBps('1gbit').bps,
      downtimeBudgetMs: 300,
      deadlineMs: 60_000,
    });

  it('a guest that writes as fast as it runs, about twice what the link sends: throttled, it stalls about the budget', () => {
    // Uniform random writes over 256 MiB by a vCPU that does other work too: 60k pages/s unthrottled.
    const classes = workloadClasses(parseWorkload('random:256'), { ...TCG_GUEST, maxWriteRate: 60_000 });
    const off = run(classes, false);
    const on = run(classes, true);
    expect([off.outcome, on.outcome]).toEqual(['completed', 'completed']);
    expect(on.decisions.some((d) => d.action.kind === 'throttle')).toBe(true);
    expect(on.downtimeMs).toBeLessThan(0.5 * off.downtimeMs);
    expect(on.downtimeMs).toBeLessThan(400);
  });

  it('a paced writer catches up under the throttle: raised once, then a switchover, never stuck', () => {
    const on = run(workloadClasses(parseWorkload('sweep:256:150')), true);
    expect(on.outcome).toBe('completed');
    const throttles = on.decisions.filter((d) => d.action.kind === 'throttle');
    expect(throttles.length).toBeGreaterThanOrEqual(1);
    expect(throttles.length).toBeLessThanOrEqual(2);
    expect(on.decisions.at(-1)!.action.kind).toBe('switchover');
  });
});

describe('adaptive: a starting limit below the budget (startLimitShare)', () => {
  it('sets QEMU’s first downtime-limit to that share of the budget; the default is the budget', () => {
    const ctx = { downtimeBudgetMs: 300, postcopyPermitted: false };
    expect(adaptive().policy.setup(adaptive().config, ctx).downtimeLimitMs).toBe(300);
    const low = adaptive({ startLimitShare: '0.33' });
    expect(low.policy.setup(low.config, ctx).downtimeLimitMs).toBe(99);
  });

  it('a guest QEMU converges by itself stalls less under the lower limit (simulator)', () => {
    const run = (share: string) =>
      simulate({
        policy: adaptive({ startLimitShare: share }),
        classes: workloadClasses(parseWorkload('rate:200:10000')),
        ramBytes: 512 * MiB,
        linkBps: linkBps('1gbit').bps,
        downtimeBudgetMs: 300,
        deadlineMs: 60_000,
      });
    const budget = run('1');
    const low = run('0.33');
    expect([budget.outcome, low.outcome]).toEqual(['completed', 'completed']);
    expect(low.downtimeMs).toBeLessThan(0.6 * budget.downtimeMs);
  });
});
