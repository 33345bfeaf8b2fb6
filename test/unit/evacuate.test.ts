import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { evacuees, parsePlan, predictionFleet, readPlan, scheduleFor } from '../../src/bench/evacuate.js';
import { makespanMs, runQueue, slotExitCode, worstExitCode } from '../../src/migration/evacuate.js';
import { EXIT, MigrationSetupError, UsageError } from '../../src/util/errors.js';

const vm = (name: string, extra: Record<string, unknown> = {}) => ({
  name,
  source: `/run/${name}-src.qmp`,
  destination: `/run/${name}-dst.qmp`,
  uri: 'tcp:10.0.0.2:4444',
  ramMiB: 128,
  workload: 'rate:24:2000',
  ...extra,
});
const plan = (extra: Record<string, unknown> = {}) => ({
  strategy: 2,
  link: '1gbit',
  vms: [vm('a'), vm('b'), vm('c'), vm('d')],
  ...extra,
});

describe('evacuation plan', () => {
  it('defaults: frs, 300 ms budget; the prediction keeps the plan order', () => {
    const p = parsePlan(plan());
    expect(p.policy).toBe('frs');
    expect(p.downtimeBudgetMs).toBe(300);
    expect(predictionFleet(p).vms.map((v) => v.name)).toEqual(['a', 'b', 'c', 'd']);
  });

  it.each([
    [{ strategy: 0 }, /strategy/],
    [{ strategy: 'nova' }, /strategy/],
    [{ vms: [] }, /vms: Too small/],
    [{ vms: [vm('a'), vm('a')] }, /vms\.1: the name a is used twice/],
    [{ vms: [vm('a', { uri: 'exec:sh' })] }, /vms\.0 \(a\): .*exec:/],
    [{ vms: [vm('a', { policy: 'nope' })] }, /vms\.0 \(a\): .*nope/],
    [{ vms: [vm('a', { ramMiB: -1 })] }, /vms\.0\.ramMiB/],
    [
      { vms: [vm('a', { workload: 'random:4096' })] },
      /random:4096 writes \d+ MiB: more than the guest's 128 MiB/,
    ],
    [{ strategy: 'planner', link: undefined }, /planner needs the link/],
    [{ link: 'fast' }, /fast/],
    [{ extra: 1 }, /Unrecognized key/],
  ])('refuses %j in one line', (change, msg) => {
    let err: unknown;
    try {
      parsePlan(plan(change), 'p.json');
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(UsageError);
    expect((err as Error).message).toMatch(msg);
    expect((err as Error).message).toMatch(/^p\.json: /);
    expect((err as Error).message).not.toContain('\n');
  });

  it('reads YAML and JSON; a broken file is one line', async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'evac-plan-'));
    try {
      writeFileSync(path.join(dir, 'p.json'), JSON.stringify(plan()));
      writeFileSync(
        path.join(dir, 'p.yaml'),
        'strategy: planner\nlink: 1gbit\nvms:\n  - {name: a, source: s, destination: d, uri: "tcp:h:1", ramMiB: 128}\n',
      );
      writeFileSync(path.join(dir, 'bad.json'), '{"strategy": 2,');
      expect((await readPlan(path.join(dir, 'p.json'))).vms).toHaveLength(4);
      expect((await readPlan(path.join(dir, 'p.yaml'))).strategy).toBe('planner');
      await expect(readPlan(path.join(dir, 'bad.json'))).rejects.toThrow(/bad\.json: not JSON/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('schedules', () => {
  it('fixed N: the plan order, N at a time, no caps, predicted by simulating exactly that', () => {
    const s = scheduleFor(parsePlan(plan()), 2);
    expect(s).toMatchObject({ strategy: 'fixed:2', order: ['a', 'b', 'c', 'd'], concurrency: 2 });
    expect(s.capsBps.size).toBe(0);
    expect(s.predicted!.maxConcurrent).toBe(2);
    expect(s.predicted!.completed).toBe(4);
    // Two at a time over one 1 Gbit link: the pairs run one after the other.
    const [a, b, c] = s.predicted!.vms.sort((x, y) => x.startedAtMs - y.startedAtMs);
    expect(a!.startedAtMs).toBe(b!.startedAtMs);
    expect(c!.startedAtMs).toBeGreaterThanOrEqual(a!.endedAtMs);
  });

  it('without a link there is nothing to predict with', () => {
    expect(scheduleFor(parsePlan(plan({ link: undefined })), 3).predicted).toBeUndefined();
  });

  it('planner: its chosen simulation gives the order (by planned start) and the concurrency', () => {
    const p = parsePlan(
      plan({
        strategy: 'planner',
        vms: [
          vm('small', { ramMiB: 128, workload: 'idle' }),
          vm('big', { ramMiB: 512, workload: 'rate:200:20000' }),
        ],
      }),
    );
    const s = scheduleFor(p, 'planner');
    expect(s.strategy).toBe('planner');
    expect(s.chosen).toMatch(/calendar plan|at a time/);
    const start = new Map(s.predicted!.vms.map((v) => [v.vm, v.startedAtMs]));
    expect(s.order.map((n) => start.get(n))).toEqual([...start.values()].sort((a, b) => a - b));
    expect(s.concurrency).toBe(s.predicted!.maxConcurrent);
    expect(s.predicted!.completed).toBe(2);
  });

  it.each([
    ['idle', /at a time/],
    ['rate:24:2000', /calendar plan/],
  ])(
    'planner on four 128 MiB %s guests: a fixed choice runs as fixed N; a calendar plan keeps its starts and caps',
    (workload, chosen) => {
      const p = parsePlan(
        plan({ strategy: 'planner', vms: ['a', 'b', 'c', 'd'].map((n) => vm(n, { workload })) }),
      );
      const s = scheduleFor(p, 'planner');
      expect(s.chosen).toMatch(chosen);
      const list = evacuees(p, s, () => 60_000);
      expect(list.map((e) => e.name)).toEqual(s.order);
      for (const e of list) {
        expect(e.maxBandwidthBps).toBe(s.capsBps.get(e.name));
        expect(e.notBeforeMs).toBe(s.startAtMs.get(e.name));
        expect(e.deadlineMs).toBe(60_000);
      }
      if (/calendar/.test(s.chosen!)) {
        // Every VM has the share the plan booked for it, and its planned start.
        expect(s.capsBps.size).toBe(4);
        expect(s.startAtMs.size).toBe(4);
        for (const cap of s.capsBps.values()) expect(cap).toBeLessThanOrEqual(1e9 / 8);
      } else {
        expect(s.capsBps.size + s.startAtMs.size).toBe(0);
      }
    },
  );

  it('evacuees follow the schedule order and take the plan deadline when it gives one', () => {
    const p = parsePlan(plan({ deadlineS: 30 }));
    const list = evacuees(p, { ...scheduleFor(p, 2), order: ['d', 'c', 'b', 'a'] }, () => 1);
    expect(list.map((e) => e.name)).toEqual(['d', 'c', 'b', 'a']);
    expect(list.every((e) => e.deadlineMs === 30_000 && e.policy.policy.name === 'frs')).toBe(true);
  });
});

describe('runQueue', () => {
  const tick = (ms: number) => new Promise((r) => setTimeout(r, ms));

  it('at most N at a time, in order; the next starts when one releases', async () => {
    let running = 0;
    let most = 0;
    const order: string[] = [];
    const tasks = ['a', 'b', 'c', 'd', 'e'].map((name, i) => ({ name, ms: 20 + i * 5 }));
    const run = await runQueue(tasks, 2, async (t) => {
      order.push(t.name);
      most = Math.max(most, ++running);
      await tick(t.ms);
      running--;
      return t.name.toUpperCase();
    });
    expect(most).toBe(2);
    expect(order).toEqual(['a', 'b', 'c', 'd', 'e']);
    expect(run.slots.map((s) => s.result)).toEqual(['A', 'B', 'C', 'D', 'E']);
    expect(makespanMs(run)).toBeGreaterThan(0);
    // c started no earlier than a ended.
    expect(run.slots[2]!.startedAt!).toBeGreaterThanOrEqual(run.slots[0]!.endedAt!);
  });

  it('a task with a planned start waits for it even with a slot free', async () => {
    const run = await runQueue([{ name: 'a' }, { name: 'b', notBeforeMs: 80 }], 2, async () => tick(5));
    // a starts at once (before b, which waits for its planned start although a slot is free).
    expect(run.slots[0]!.startedAt!).toBeLessThan(run.slots[1]!.startedAt!);
    expect(run.slots[1]!.startedAt! - run.startedAt).toBeGreaterThanOrEqual(79);
  });

  it('release() frees the slot before the task settles; onAllOver fires once all released', async () => {
    let allOverAt = 0;
    let gate!: () => void;
    const verified = new Promise<void>((r) => (gate = r));
    const run = await runQueue(
      [{ name: 'a' }, { name: 'b' }, { name: 'c' }],
      1,
      async (_t, release) => {
        await tick(10);
        release();
        await verified; // the lab's verification waits for every migration
        return 1;
      },
      {
        onAllOver: () => {
          allOverAt = performance.now();
          gate();
        },
      },
    );
    expect(allOverAt).toBeGreaterThan(0);
    expect(allOverAt).toBeGreaterThanOrEqual(run.slots[2]!.endedAt!);
    expect(run.slots[1]!.startedAt!).toBeGreaterThanOrEqual(run.slots[0]!.endedAt!);
  });

  it('a failing task is recorded and the others run; an abort starts nothing more', async () => {
    const ctl = new AbortController();
    const run = await runQueue(
      [{ name: 'a' }, { name: 'b' }, { name: 'c' }],
      1,
      async (t) => {
        if (t.name === 'a') throw new MigrationSetupError('refused');
        ctl.abort();
        await tick(5);
        return t.name;
      },
      { signal: ctl.signal },
    );
    expect(run.slots[0]!.error).toBeInstanceOf(MigrationSetupError);
    expect(run.slots[1]!.result).toBe('b');
    expect(run.slots[2]!.startedAt).toBeUndefined();
  });
});

describe('exit codes', () => {
  const m = (outcome: string, guestRunsOn: string) =>
    ({ migration: { outcome, guestRunsOn } }) as unknown as Parameters<typeof slotExitCode>[0]['result'];
  it('per VM, then the worst', () => {
    expect(slotExitCode({ name: 'a', result: m('completed', 'destination') })).toBe(EXIT.ok);
    expect(slotExitCode({ name: 'a', result: { ...m('completed', 'destination')!, verified: false } })).toBe(
      EXIT.operatorNeeded,
    );
    expect(slotExitCode({ name: 'a', result: m('cancelled', 'source') })).toBe(EXIT.migrationFailed);
    expect(slotExitCode({ name: 'a', result: m('completed', 'none') })).toBe(EXIT.operatorNeeded);
    expect(slotExitCode({ name: 'a' })).toBe(EXIT.migrationFailed);
    expect(slotExitCode({ name: 'a', error: new MigrationSetupError('x') })).toBe(EXIT.migrationFailed);
    expect(slotExitCode({ name: 'a', error: new Error('bug') })).toBe(EXIT.operatorNeeded);
    expect(worstExitCode([EXIT.ok, EXIT.migrationFailed, EXIT.ok])).toBe(EXIT.migrationFailed);
    expect(worstExitCode([EXIT.migrationFailed, EXIT.operatorNeeded, EXIT.ok])).toBe(EXIT.operatorNeeded);
    expect(worstExitCode([])).toBe(EXIT.ok);
  });
});
