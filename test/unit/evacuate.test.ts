import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { evacuees, parsePlan, predictionFleet, readPlan, scheduleFor } from '../../src/bench/evacuate.js';
import { slotExitCode } from '../../src/migration/evacuate.js';
import { checkLibvirtMigrateUri } from '../../src/libvirt/evacuate.js';
import { makespanMs, runQueue, worstExitCode } from '../../src/util/queue.js';
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

/** The plan is refused with one line naming the file and saying `msg`. */
function expectRefused(data: unknown, msg: RegExp): void {
  let err: unknown;
  try {
    parsePlan(data, 'p.json');
  } catch (e) {
    err = e;
  }
  expect(err).toBeInstanceOf(UsageError);
  expect((err as Error).message).toMatch(msg);
  expect((err as Error).message).toMatch(/^p\.json: /);
  expect((err as Error).message).not.toContain('\n');
}

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
    expectRefused(plan(change), msg);
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

const lvm = (name: string, extra: Record<string, unknown> = {}) => ({
  name,
  libvirt: 'qemu+unix:///system?socket=/run/src/libvirt-sock',
  to: 'qemu+unix:///system?socket=/run/dst/libvirt-sock',
  ramMiB: 128,
  ...extra,
});

describe('evacuation plan: QMP monitors or libvirt domains', () => {
  it('a libvirt VM: its domain defaults to its name; evacuees go to the libvirt driver with their session options', () => {
    const p = parsePlan(
      plan({
        deadlineS: 40,
        vms: [
          lvm('web1', { migrateUri: 'tcp:10.0.0.2:49152', listenAddress: '10.0.0.2' }),
          lvm('db', { domain: 'db-prod' }),
        ],
      }),
    );
    expect(p.vms.map((v) => v.kind)).toEqual(['libvirt', 'libvirt']);
    const e = evacuees(p, scheduleFor(p, 2), () => 1);
    expect(e.driver).toBe('libvirt');
    expect(e.vms).toEqual([
      expect.objectContaining({
        name: 'web1',
        libvirt: 'qemu+unix:///system?socket=/run/src/libvirt-sock',
        domain: 'web1',
        to: 'qemu+unix:///system?socket=/run/dst/libvirt-sock',
        migrateUri: 'tcp:10.0.0.2:49152',
        listenAddress: '10.0.0.2',
        deadlineMs: 40_000,
        downtimeBudgetMs: 300,
      }),
      expect.objectContaining({ name: 'db', domain: 'db-prod', migrateUri: undefined }),
    ]);
    // The simulator sees a libvirt VM as any other: RAM, workload, policy.
    expect(predictionFleet(p).vms.map((v) => v.name)).toEqual(['web1', 'db']);
    expect(evacuees(parsePlan(plan()), scheduleFor(parsePlan(plan()), 2), () => 1).driver).toBe('qmp');
  });

  it('planner caps reach libvirt VMs as the QMP ones', () => {
    const p = parsePlan(
      plan({
        strategy: 'planner',
        vms: ['a', 'b', 'c', 'd'].map((n) => lvm(n, { workload: 'rate:24:2000' })),
      }),
    );
    const s = scheduleFor(p, 'planner');
    const e = evacuees(p, s, () => 1);
    expect(e.driver).toBe('libvirt');
    for (const v of e.vms) expect(v.maxBandwidthBps).toBe(s.capsBps.get(v.name));
  });

  it.each([
    [
      [vm('a', { libvirt: 'qemu:///system', to: 'qemu+unix:///system?socket=/d' })],
      /vms\.0: either QMP monitors \(source, destination, uri\) or a libvirt domain \(libvirt, domain, to\), not both/,
    ],
    [[vm('a', { domain: 'a' })], /vms\.0: either QMP monitors .* not both/],
    [
      [{ name: 'a', ramMiB: 128 }],
      /vms\.0: name its QMP monitors \(source, destination, uri\) or its libvirt domain \(libvirt, domain, to\)/,
    ],
    [[lvm('a', { to: undefined })], /vms\.0\.to: /],
    [[lvm('a', { libvirt: undefined, domain: 'a' })], /vms\.0\.libvirt: /],
    [[lvm('a', { source: undefined, extra: 1 })], /vms\.0: Unrecognized key/],
    [[lvm('a', { domain: 'x/y' })], /vms\.0\.domain: a domain name has no slash/],
    [[lvm('a', { libvirt: 'qemu+ssh://h/system' })], /vms\.0 \(a\): unsupported libvirt URI/],
    [[lvm('a', { migrateUri: 'exec:sh' })], /vms\.0 \(a\): .*exec: runs a shell/],
    [[lvm('a', { migrateUri: 'fd:3' })], /vms\.0 \(a\): .*libvirt takes tcp:, unix: or rdma:/],
    [[lvm('a'), lvm('b', { domain: 'a' })], /vms\.1 \(b\): domain a on .* is also a's/],
    [
      [vm('a'), lvm('b')],
      /vms\.1 \(b\) is a libvirt domain but vms\.0 \(a\) names QMP monitors: one plan evacuates through one driver/,
    ],
    [[lvm('a'), vm('b')], /vms\.1 \(b\) names QMP monitors but vms\.0 \(a\) is a libvirt domain/],
  ])('refuses a VM %j in one line', (vms, msg) => {
    expectRefused(plan({ vms }), msg);
  });

  it("libvirt's migrate URI: tcp:HOST:PORT as `migrate --libvirt` takes it", () => {
    expect(checkLibvirtMigrateUri('tcp:10.0.0.2:49152')).toBe('tcp://10.0.0.2:49152');
    expect(checkLibvirtMigrateUri('tcp://10.0.0.2:49152')).toBe('tcp://10.0.0.2:49152');
    expect(checkLibvirtMigrateUri('unix:/run/m.sock')).toBe('unix:/run/m.sock');
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
      const list = evacuees(p, s, () => 60_000).vms;
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
    const list = evacuees(p, { ...scheduleFor(p, 2), order: ['d', 'c', 'b', 'a'] }, () => 1).vms;
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
