import { describe, expect, it } from 'vitest';
import { parsePolicyOptions, resolvePolicy, type ControllerState } from '../../src/policy/index.js';

const base: ControllerState = {
  elapsedMs: 0,
  status: 'active',
  passes: [],
  currentPass: 1,
  atPassEnd: false,
  ramBytes: 512 * 2 ** 20,
  remainingBytes: 512 * 2 ** 20,
  transferredBytes: 0,
  bandwidthBps: 125e6,
  downtimeBudgetMs: 300,
  deadlineMs: 30_000,
  downtimeLimitMs: 300,
  postcopyPermitted: false,
  progressWatermark: { remainingBytes: 0, atMs: 0 },
  actions: [],
};

describe('policy registry', () => {
  it('resolves names and validates options', () => {
    expect(resolvePolicy('stock').policy.name).toBe('stock');
    expect(resolvePolicy('switch-at-pass', parsePolicyOptions(['pass=3'])).config).toEqual({ pass: 3 });
    expect(() => resolvePolicy('nope')).toThrow(
      /unknown policy 'nope': choose one of stock, relaxed, nova, kubevirt, auto-converge, postcopy-after, switch-at-pass/,
    );
    expect(() => resolvePolicy('switch-at-pass', { pass: '1' })).toThrow(
      /bad option for policy switch-at-pass: pass:/,
    );
    expect(() => resolvePolicy('switch-at-pass', { pass: 2, x: 1 })).toThrow(/unknown option x/);
    // A required option left out says which, and how to give it (not "received NaN").
    expect(() => resolvePolicy('switch-at-pass')).toThrow(
      /bad option for policy switch-at-pass: it needs option pass \(--policy-opt pass=…/,
    );
    expect(() => resolvePolicy('stock', { pass: 2 })).toThrow(/unknown option pass/);
    expect(() => parsePolicyOptions(['nokey'])).toThrow(/use key=value/);
  });
});

describe('stock', () => {
  it('starts at the budget and never acts', () => {
    const { policy, config } = resolvePolicy('stock');
    expect(policy.setup(config, { downtimeBudgetMs: 500, postcopyPermitted: true })).toEqual({
      downtimeLimitMs: 500,
      postcopy: false,
      autoConverge: false,
    });
    expect(policy.decide({ ...base, currentPass: 40, elapsedMs: 1e6 }, config).kind).toBe('continue');
  });
});

describe('switch-at-pass', () => {
  const { policy, config } = resolvePolicy('switch-at-pass', { pass: 3 });
  it('continues before pass K, switches over when it begins, once', () => {
    expect(policy.decide({ ...base, currentPass: 2 }, config).kind).toBe('continue');
    const a = policy.decide({ ...base, currentPass: 3 }, config);
    expect(a).toMatchObject({ kind: 'switchover', downtimeLimitMs: undefined });
    expect(a.reason).toMatch(/pass 3 began/);
    const after = { ...base, currentPass: 4, actions: [{ kind: 'switchover' as const, atMs: 1, pass: 3 }] };
    expect(policy.decide(after, config).kind).toBe('continue');
  });
});

const at = (elapsedMs: number, extra: Partial<ControllerState> = {}): ControllerState => ({
  ...base,
  progressWatermark: { remainingBytes: 100, atMs: elapsedMs },
  elapsedMs,
  ...extra,
});

describe('relaxed', () => {
  it('runs at its own downtime-limit and never acts', () => {
    const { policy, config } = resolvePolicy('relaxed', { downtimeLimitMs: '1500' });
    expect(policy.setup(config, { downtimeBudgetMs: 300, postcopyPermitted: false }).downtimeLimitMs).toBe(
      1500,
    );
    expect(policy.decide(at(1e6), config).kind).toBe('continue');
  });
});

describe('auto-converge', () => {
  it("asks for QEMU's capability with its throttle steps", () => {
    const { policy, config } = resolvePolicy('auto-converge');
    expect(policy.setup(config, { downtimeBudgetMs: 300, postcopyPermitted: false })).toMatchObject({
      autoConverge: true,
      parameters: { 'cpu-throttle-initial': 20, 'cpu-throttle-increment': 10, 'max-cpu-throttle': 99 },
    });
  });
});

describe('adaptive with xbzrle', () => {
  it("asks for xbzrle with Proxmox's cache share only when the option is on", () => {
    const ctx = { downtimeBudgetMs: 300, postcopyPermitted: false };
    const off = resolvePolicy('adaptive');
    expect(off.policy.setup(off.config, ctx)).not.toHaveProperty('xbzrle');
    const on = resolvePolicy('adaptive', { xbzrle: 'true' });
    expect(on.policy.setup(on.config, ctx)).toMatchObject({
      autoConverge: false,
      xbzrle: { cacheRamShare: 0.1, roundUpToPowerOf2: true },
    });
  });
});

describe('postcopy-after', () => {
  const { policy, config } = resolvePolicy('postcopy-after', { pass: '2' });
  it('switches to post-copy when pass K ends, once, and enables the capability', () => {
    expect(policy.setup(config, { downtimeBudgetMs: 300, postcopyPermitted: false }).postcopy).toBe(true);
    expect(policy.decide(at(0, { currentPass: 2 }), config).kind).toBe('continue');
    expect(policy.decide(at(0, { currentPass: 3 }), config).kind).toBe('postcopy');
    const done = at(0, { currentPass: 4, actions: [{ kind: 'postcopy', atMs: 0, pass: 3 }] });
    expect(policy.decide(done, config).kind).toBe('continue');
  });
});

describe('nova', () => {
  it("computes Nova's downtime ladder (data_gb = max(2, RAM GiB))", async () => {
    const { novaDowntimeSteps, NovaConfigSchema } = await import('../../src/policy/nova.js');
    const steps = novaDowntimeSteps(NovaConfigSchema.parse({}), 512 * 2 ** 20);
    expect(steps[0]).toEqual({ atMs: 0, downtimeMs: 50 });
    expect(steps[1]).toEqual({ atMs: 150_000, downtimeMs: 95 });
    expect(steps[10]).toEqual({ atMs: 1_500_000, downtimeMs: 500 });
    // Nova's own docstring example: 10 steps, 30 s delay, 3 GB, 400 ms → every 90 s, 40, 76, …, 400.
    const doc = novaDowntimeSteps(NovaConfigSchema.parse({ downtimeMs: 400, delayS: 30 }), 3 * 2 ** 30);
    expect(doc.map((s) => s.downtimeMs)).toEqual([40, 76, 112, 148, 184, 220, 256, 292, 328, 364, 400]);
    expect(doc[3]!.atMs).toBe(270_000);
  });

  it('raises downtime-limit along the ladder, then aborts at the completion timeout', () => {
    const { policy, config } = resolvePolicy('nova', {});
    expect(policy.setup(config, { downtimeBudgetMs: 300, postcopyPermitted: false }).downtimeLimitMs).toBe(
      50,
    );
    expect(policy.decide(at(100_000, { downtimeLimitMs: 50 }), config).kind).toBe('continue');
    expect(policy.decide(at(151_000, { downtimeLimitMs: 50 }), config)).toMatchObject({
      kind: 'setDowntimeLimit',
      downtimeLimitMs: 95,
    });
    expect(policy.decide(at(151_000, { downtimeLimitMs: 95 }), config).kind).toBe('continue');
    expect(policy.decide(at(1_600_001, { downtimeLimitMs: 500 }), config)).toMatchObject({ kind: 'abort' });
  });

  it('force-completes with post-copy if permitted, else pause; never times out in post-copy', () => {
    const { policy, config } = resolvePolicy('nova', { timeoutAction: 'force_complete', scale: '0.01' });
    const late = at(16_001, { downtimeLimitMs: 500 });
    expect(policy.decide(late, config).kind).toBe('pause');
    expect(policy.decide({ ...late, postcopyPermitted: true }, config).kind).toBe('postcopy');
    expect(policy.decide({ ...late, status: 'postcopy-active' }, config).kind).toBe('continue');
    expect(policy.setup(config, { downtimeBudgetMs: 300, postcopyPermitted: true }).postcopy).toBe(true);
  });
});

describe('kubevirt', () => {
  const ram = 512 * 2 ** 20; // 0.54 GB → 1 GB → 150 s
  it('aborts when remaining stops dropping for the progress timeout', () => {
    const { policy, config } = resolvePolicy('kubevirt', {});
    const s = at(100_000, { ramBytes: ram, progressWatermark: { remainingBytes: 1, atMs: 10_000 } });
    expect(policy.decide(s, config).kind).toBe('continue');
    const stalled = at(160_001, { ramBytes: ram, progressWatermark: { remainingBytes: 1, atMs: 10_000 } });
    expect(policy.decide(stalled, config)).toMatchObject({
      kind: 'abort',
      reason: expect.stringMatching(/no progress/),
    });
  });

  it('aborts past the completion time without workload disruption', () => {
    const { policy, config } = resolvePolicy('kubevirt', {});
    expect(policy.decide(at(150_001, { ramBytes: ram }), config)).toMatchObject({
      kind: 'abort',
      reason: expect.stringMatching(/completion/),
    });
  });

  it('with allowPostCopy switches to post-copy; with disruption only, pauses and doubles the time', () => {
    const pc = resolvePolicy('kubevirt', { allowPostCopy: 'true' });
    expect(pc.policy.decide(at(150_001, { ramBytes: ram, postcopyPermitted: true }), pc.config).kind).toBe(
      'postcopy',
    );
    const pause = resolvePolicy('kubevirt', { allowWorkloadDisruption: 'true' });
    expect(pause.policy.decide(at(150_001, { ramBytes: ram }), pause.config).kind).toBe('pause');
    const paused = at(200_000, { ramBytes: ram, actions: [{ kind: 'pause', atMs: 150_001, pass: 9 }] });
    expect(pause.policy.decide(paused, pause.config).kind).toBe('continue');
    expect(
      pause.policy.decide(
        { ...paused, elapsedMs: 300_001, progressWatermark: paused.progressWatermark },
        pause.config,
      ).kind,
    ).toBe('abort');
    expect(resolvePolicy('kubevirt', { allowPostCopy: 'false' }).config).toMatchObject({
      allowPostCopy: false,
    });
    // Once post-copy is requested, no abort may cut the switch, even with progress stalled.
    const switching = at(160_000, {
      ramBytes: ram,
      progressWatermark: { remainingBytes: 1, atMs: 0 },
      actions: [{ kind: 'postcopy', atMs: 150_001, pass: 9 }],
    });
    expect(pc.policy.decide(switching, pc.config).kind).toBe('continue');
  });
});
