import { describe, expect, it } from 'vitest';
import { Controller, type ControllerConfig } from '../../src/core/controller.js';
import { resolveEnding, type EndingFacts } from '../../src/core/ending.js';
import type { MigrationInfo } from '../../src/core/sample.js';
import { checkMigrationUri } from '../../src/core/uri.js';
import { resolvePolicy } from '../../src/policy/index.js';
import type { Policy } from '../../src/policy/types.js';

const MiB = 2 ** 20;
const sample = (
  status: string,
  syncs: number,
  transferred: number,
  remaining = 100 * MiB,
): MigrationInfo => ({
  status,
  ram: { transferred, remaining, total: 512 * MiB, duplicate: 0, normal: 0, 'dirty-sync-count': syncs },
});

/** A policy that answers whatever the test says, to drive the rules. */
function scripted(next: () => ReturnType<Policy['decide']>) {
  const policy: Policy = {
    name: 'scripted',
    summary: '',
    configSchema: resolvePolicy('stock').policy.configSchema,
    setup: () => ({ downtimeLimitMs: 300, postcopy: true, autoConverge: false }),
    decide: () => next(),
  };
  return { policy, config: {} };
}

const core = (extra: Partial<ControllerConfig> = {}) =>
  new Controller({
    policy: resolvePolicy('stock'),
    downtimeBudgetMs: 300,
    deadlineMs: 10_000,
    postcopyPermitted: false,
    ramBytes: 512 * MiB,
    ...extra,
  });

describe('the safety chain', () => {
  it('cancels at the deadline, once, and logs why', () => {
    const c = core();
    expect(c.observe(sample('active', 1, 1e6), 5000).commands).toEqual([]);
    expect(c.observe(sample('active', 1, 2e6), 10_000).commands).toEqual([{ kind: 'cancel' }]);
    expect(c.observe(sample('active', 1, 3e6), 10_050).commands).toEqual([]);
    expect(c.decisions.at(-1)?.action.reason).toMatch(/deadline of 10 s reached → abort/);
  });

  it('the deadline action can be a switchover', () => {
    const c = core({ onDeadline: 'switchover' });
    expect(c.observe(sample('active', 1, 1e6), 10_000).commands).toEqual([
      { kind: 'setDowntimeLimit', downtimeLimitMs: 2_000_000 },
    ]);
  });

  it('aborts when no byte moved for the stall timeout, not before', () => {
    const c = core({ stallTimeoutMs: 1000, deadlineMs: 60_000 });
    c.observe(sample('active', 1, 5e6), 100);
    expect(c.observe(sample('active', 1, 5e6), 1100).commands).toEqual([]);
    expect(c.observe(sample('active', 1, 5e6), 1101).commands).toEqual([{ kind: 'cancel' }]);
  });

  it('an interrupt cancels a pre-copy, but only waits during post-copy', () => {
    const pre = core();
    pre.interrupt();
    expect(pre.observe(sample('active', 1, 1), 10).commands).toEqual([{ kind: 'cancel' }]);
    const post = core();
    post.observe(sample('postcopy-active', 2, 1), 10);
    post.interrupt();
    expect(post.observe(sample('postcopy-active', 2, 2), 20).commands).toEqual([]);
    expect(post.decisions.map((d) => d.action.reason).join('\n')).toMatch(/cannot be cancelled/);
  });

  it('contact lost: cancels in pre-copy, never once post-copy may have begun', () => {
    const pre = core();
    pre.observe(sample('active', 1, 1), 10);
    expect(pre.contactLost('socket closed', 20)).toEqual([{ kind: 'cancel' }]);
    const c = core({
      policy: scripted(() => ({ kind: 'postcopy', reason: 'now' })),
      postcopyPermitted: true,
    });
    expect(c.observe(sample('active', 2, 1), 10).commands).toEqual([{ kind: 'startPostcopy' }]);
    // No reply, no event: the request alone latches post-copy.
    expect(c.postcopyLatched).toBe(true);
    expect(c.contactLost('socket closed', 20)).toEqual([]);
  });
});

describe('the action rules', () => {
  it('post-copy latches on a polled status alone (events can be lost)', () => {
    const c = core();
    c.observe(sample('postcopy-active', 2, 1), 10);
    expect(c.postcopyStarted).toBe(true);
    expect(c.guestMayHaveMoved).toBe(true);
  });

  it('an explicit refusal of migrate-start-postcopy unlatches it; a lost reply does not', () => {
    const c = core({
      policy: scripted(() => ({ kind: 'postcopy', reason: 'now' })),
      postcopyPermitted: true,
    });
    c.observe(sample('active', 2, 1), 10);
    c.commandFailed({ kind: 'startPostcopy' }, false);
    expect(c.postcopyLatched).toBe(true);
    c.commandFailed({ kind: 'startPostcopy' }, true);
    expect(c.postcopyLatched).toBe(false);
  });

  it('post-copy without the capability is refused; one-shot actions happen once; a switchover never lowers the limit', () => {
    let next: ReturnType<Policy['decide']> = { kind: 'postcopy', reason: 'x' };
    const p = scripted(() => next);
    const noPostcopy = {
      ...p,
      policy: { ...p.policy, setup: () => ({ downtimeLimitMs: 300, postcopy: false, autoConverge: false }) },
    };
    const c = core({ policy: noPostcopy });
    expect(c.observe(sample('active', 1, 1), 10).commands).toEqual([]);
    next = { kind: 'pause', reason: 'x' };
    expect(c.observe(sample('active', 1, 2), 20).commands).toEqual([{ kind: 'stopSource' }]);
    expect(c.observe(sample('active', 1, 3), 30).commands).toEqual([]);
    next = { kind: 'switchover', downtimeLimitMs: 5000, reason: 'x' };
    expect(c.observe(sample('active', 1, 4), 40).commands).toEqual([
      { kind: 'setDowntimeLimit', downtimeLimitMs: 5000 },
    ]);
    next = { kind: 'switchover', downtimeLimitMs: 1000, reason: 'x' };
    expect(c.observe(sample('active', 1, 5), 50).commands).toEqual([]);
    next = { kind: 'setDowntimeLimit', downtimeLimitMs: 9e9, reason: 'x' };
    expect(c.observe(sample('active', 1, 6), 60).commands).toEqual([
      { kind: 'setDowntimeLimit', downtimeLimitMs: 2_000_000 },
    ]);
    next = { kind: 'abort', reason: 'x' };
    expect(c.observe(sample('postcopy-active', 1, 7), 70).commands).toEqual([]);
  });
});

describe('how a migration ends', () => {
  const base: EndingFacts = {
    sourceStatus: 'completed',
    sourceRunState: 'postmigrate',
    postcopy: false,
    sourceWasRunning: true,
  };
  const cases: [string, Partial<EndingFacts>, string, string][] = [
    [
      'completed, destination has it',
      { destination: { verdict: 'completed', detail: '' } },
      'destination',
      'destination',
    ],
    ['completed, destination silent', { destination: { verdict: 'unknown', detail: '' } }, 'none', 'none'],
    ['completed, destination failed', { destination: { verdict: 'failed', detail: '' } }, 'source', 'source'],
    ['completed, destination gone', { destination: { verdict: 'gone', detail: '' } }, 'source', 'source'],
    [
      'post-copy, destination gone',
      { sourceStatus: 'postcopy-paused', destination: { verdict: 'gone', detail: '' } },
      'none',
      'none',
    ],
    [
      'post-copy requested, destination silent',
      { sourceStatus: 'active', postcopy: true, destination: { verdict: 'unknown', detail: '' } },
      'none',
      'none',
    ],
    ['cancelled pre-copy', { sourceStatus: 'cancelled', sourceRunState: 'running' }, 'source', 'none'],
    ['cancelled after a pause', { sourceStatus: 'cancelled', sourceRunState: 'paused' }, 'source', 'source'],
    [
      'source gone, destination completed',
      {
        sourceStatus: 'unknown',
        sourceRunState: undefined,
        destination: { verdict: 'completed', detail: '' },
      },
      'destination',
      'destination',
    ],
    [
      'source unreachable mid pre-copy',
      { sourceStatus: 'unknown', sourceRunState: undefined },
      'none',
      'none',
    ],
  ];
  it.each(cases)('%s', (_name, facts, runsOn, resume) => {
    const e = resolveEnding({ ...base, ...facts });
    expect(e.guestRunsOn).toBe(runsOn);
    expect(e.resume).toBe(resume);
  });
});

describe('migration URIs', () => {
  it('accepts tcp, unix, rdma and fd; refuses exec and the rest in one line', () => {
    for (const ok of ['tcp:h:1', 'unix:/x', 'rdma:h:1', 'fd:n']) expect(checkMigrationUri(ok)).toBe(ok);
    expect(() => checkMigrationUri('exec:rm -rf /')).toThrow(/exec: runs a shell command as root/);
    expect(() => checkMigrationUri('tcp:h:1\nexec:x')).toThrow(/control characters/);
  });
});

describe('operator requests go through the same rules', () => {
  it('force-complete raises the limit; abort is refused once post-copy began; set-downtime is bounded', () => {
    const events: string[] = [];
    const c = core({ onEvent: (e) => events.push(e.type) });
    c.observe(sample('active', 1, 1), 10);
    expect(c.request({ kind: 'force-complete' }, 20).commands).toEqual([
      { kind: 'setDowntimeLimit', downtimeLimitMs: 2_000_000 },
    ]);
    expect(c.request({ kind: 'postcopy' }, 30).refused).toMatch(/not permitted/);
    c.observe(sample('postcopy-active', 2, 2), 40);
    expect(c.request({ kind: 'abort' }, 50)).toMatchObject({
      commands: [],
      refused: expect.stringMatching(/cannot be cancelled/),
    });
    expect(events).toContain('command');
    expect(events).toContain('pass');
    expect(c.decisions.some((d) => d.action.reason === 'operator: force-complete')).toBe(true);
  });
});

describe('throttle: an action of the core', () => {
  it('steers the throttle only with auto-converge on, each value once', () => {
    let next: ReturnType<Policy['decide']> = { kind: 'throttle', percent: 40, reason: 'x' };
    const p = scripted(() => next);
    const withAc = {
      ...p,
      policy: { ...p.policy, setup: () => ({ downtimeLimitMs: 300, postcopy: false, autoConverge: true }) },
    };
    const c = core({ policy: withAc });
    expect(c.observe(sample('active', 1, 1), 10).commands).toEqual([{ kind: 'setThrottle', percent: 40 }]);
    expect(c.observe(sample('active', 1, 2), 20).commands).toEqual([]);
    next = { kind: 'throttle', percent: 120, reason: 'x' };
    expect(c.observe(sample('active', 1, 3), 30).commands).toEqual([{ kind: 'setThrottle', percent: 99 }]);
    c.observe(sample('active', 1, 4), 40);
    expect(c.latestState?.throttlePercent).toBe(99);
    const without = core({ policy: scripted(() => ({ kind: 'throttle', percent: 40, reason: 'x' })) });
    expect(without.observe(sample('active', 1, 1), 10).commands).toEqual([]);
  });
});
