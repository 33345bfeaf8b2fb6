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
  actions: [],
};

describe('policy registry', () => {
  it('resolves names and validates options', () => {
    expect(resolvePolicy('stock').policy.name).toBe('stock');
    expect(resolvePolicy('switch-at-pass', parsePolicyOptions(['pass=3'])).config).toEqual({ pass: 3 });
    expect(() => resolvePolicy('nope')).toThrow(/unknown policy 'nope': choose one of stock, switch-at-pass/);
    expect(() => resolvePolicy('switch-at-pass', { pass: '1' })).toThrow(
      /bad option for policy switch-at-pass: pass:/,
    );
    expect(() => resolvePolicy('switch-at-pass', { pass: 2, x: 1 })).toThrow(/unknown option x/);
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
