import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { labEvacuation } from '../../src/bench/lab-evacuate.js';
import { leaksOf } from '../../src/lab/clean.js';
import { Lab } from '../../src/lab/lab.js';
import { parseLink } from '../../src/lab/link.js';
import { SharedLabLink } from '../../src/lab/shared-link.js';
import { parseLabWorkload } from '../../src/util/specs.js';
import { EXIT } from '../../src/util/errors.js';
import { kvmigrateChild, kvmigrateSync } from '../support/cli.js';

const gbit = parseLink('1gbit');
const dir = mkdtempSync(path.join(tmpdir(), 'evac-test-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const kvmigrate = (args: string[]) => kvmigrateSync(args, { timeoutMs: 60_000 });

describe('lab evacuation: three pairs over one shared emulated link', () => {
  it('two at a time: all complete, each verified byte for byte, never more than two at once, nothing left behind', async () => {
    const r = await labEvacuation(
      {
        vms: 3,
        ramMiB: 128,
        workload: parseLabWorkload('idle'),
        link: gbit,
        policy: 'frs',
        downtimeBudgetMs: 300,
        deadlineS: 60,
      },
      2,
    );
    expect(r.strategy).toBe('fixed:2');
    expect(r.vms.map((v) => v.outcome)).toEqual(['completed', 'completed', 'completed']);
    expect(r.exitCode).toBe(EXIT.ok);
    for (const run of r.runs) {
      expect(run!.success).toBe(true);
      expect(run!.verification!.ram!.differingPages).toBe(0);
      expect(run!.verification!.ram!.pagesCompared).toBe((128 * 2 ** 20) / 4096);
      expect(run!.verification!.guestCheck.ok).toBe(true);
      expect(run!.verification!.heartbeatResumed).toBe(true);
    }
    // The first two start together; the third only once one of them is over.
    const [a, b, c] = r.vms;
    expect(c!.startedAtMs!).toBeGreaterThanOrEqual(Math.min(a!.endedAtMs!, b!.endedAtMs!));
    expect(b!.startedAtMs!).toBeLessThan(a!.endedAtMs!);
    expect(r.makespanMs).toBeCloseTo(Math.max(...r.vms.map((v) => v.endedAtMs!)), 6);
    // The simulator's prediction of the same evacuation is beside it.
    expect(r.predictedMakespanMs).toBeGreaterThan(0);
    expect(r.predictionErrorPct).toBeCloseTo(
      ((r.makespanMs - r.predictedMakespanMs!) / r.predictedMakespanMs!) * 100,
      6,
    );
    expect(r.leaks).toEqual([]);
  });
});

/**
 * `n` lab pairs whose destinations listen behind one shared shaped link, their QMP sockets let
 * go (QEMU serves one client at a time: the CLI takes them over); torn down after `use`, and
 * nothing may be left behind under their tags.
 */
async function withSharedPairs(
  n: number,
  guest: { workload: string; ramMiB: number },
  use: (labs: Lab[], shared: SharedLabLink) => Promise<void>,
): Promise<void> {
  const shared = await SharedLabLink.create(gbit);
  const labs: Lab[] = [];
  try {
    for (let i = 0; i < n; i++)
      labs.push(
        await Lab.start({
          workload: parseLabWorkload(guest.workload),
          ramMiB: guest.ramMiB,
          link: gbit,
          sharedLink: shared.link,
          port: 4444 + i,
        }),
      );
    for (const l of labs) {
      l.source.releaseQmp();
      l.destination.releaseQmp();
    }
    await use(labs, shared);
  } finally {
    const pids = labs.flatMap((l) => [l.source.pid, l.destination.pid]);
    for (const l of labs) await l.destroy();
    await shared.destroy();
    for (const id of [shared.id, ...labs.map((l) => l.info.id)]) expect(await leaksOf(id, pids)).toEqual([]);
  }
}

/** Writes an evacuation plan naming each pair's monitors and migration URIs. */
function writePlan(file: string, labs: Lab[], plan: object, vm: object): string {
  const vms = labs.map((l, i) => ({
    name: `vm${i + 1}`,
    source: l.source.spec.qmpSocket,
    destination: l.destination.spec.qmpSocket,
    uri: l.migrateUri,
    incoming: l.incomingUri,
    ...vm,
  }));
  writeFileSync(path.join(dir, file), JSON.stringify({ ...plan, vms }));
  return path.join(dir, file);
}

/** At least three heartbeats within the next 300 ms on that console: the guest runs there. */
async function expectBeats(console: Lab['sourceConsole']): Promise<void> {
  const since = performance.now();
  await new Promise((r) => setTimeout(r, 300));
  expect(console.beatsAfter(since).length).toBeGreaterThanOrEqual(3);
}

describe('kvmigrate evacuate PLAN on real QEMU monitors', () => {
  it('two lab pairs sharing one link, one at a time: both land on their destinations, guests intact', async () => {
    await withSharedPairs(2, { workload: 'rate:16:1000', ramMiB: 128 }, async (labs, shared) => {
      // The destinations listen in the one netns behind the one shaped veth.
      expect(new Set(labs.map((l) => l.incomingUri.split(':')[1]))).toEqual(new Set([shared.link.nsAddr]));
      const plan = writePlan(
        'plan.json',
        labs,
        { strategy: 1, link: '1gbit', policy: 'frs' },
        { ramMiB: 128, workload: 'rate:16:1000' },
      );
      const { code, stdout, stderr } = await kvmigrateChild(['evacuate', plan]).exited;
      expect(code, stderr).toBe(EXIT.ok);
      const report = JSON.parse(stdout);
      expect(report.strategy).toBe('fixed:1');
      expect(report.vms.map((v: { outcome: string }) => v.outcome)).toEqual(['completed', 'completed']);
      expect(report.vms[1].startedAtMs).toBeGreaterThanOrEqual(report.vms[0].endedAtMs);
      expect(report.predictedMakespanMs).toBeGreaterThan(0);
      expect(stderr).toMatch(/fixed:1, 1 at a time: makespan [\d.]+ s; simulated [\d.]+ s/);
      for (const l of labs) {
        await l.source.reconnectQmp();
        await l.destination.reconnectQmp();
        expect((await l.source.qmp.execute<{ status: string }>('query-status')).status).toBe('postmigrate');
        expect((await l.destination.qmp.execute<{ status: string }>('query-status')).status).toBe('running');
        await expectBeats(l.destinationConsole);
        expect((await l.destinationConsole.integrityCheck()).ok).toBe(true);
      }
    });
  });

  it("Ctrl-C cancels every running migration by the core's rules: sources run on, nothing more starts, exit 1", async () => {
    // A guest stock pre-copy never converges on (64 MiB rewritten as fast as it can, 300 ms).
    await withSharedPairs(3, { workload: 'random:64', ramMiB: 192 }, async (labs) => {
      const plan = writePlan(
        'plan-int.json',
        labs,
        { strategy: 2, policy: 'stock', deadlineS: 60 },
        { ramMiB: 192 },
      );
      // Interrupted 1.5 s after the second migration started.
      const { code, stdout, stderr, interrupted } = await kvmigrateChild(['evacuate', plan], {
        interruptWhen: /vm2: migrating/,
        afterMs: 1500,
      }).exited;
      expect(interrupted, stderr).toBe(true);
      expect(code, stderr).toBe(EXIT.migrationFailed);
      const report = JSON.parse(stdout);
      expect(report.vms.map((v: { outcome: string }) => v.outcome)).toEqual([
        'cancelled',
        'cancelled',
        'not started',
      ]);
      expect(report.vms[0].reason).toMatch(/interrupted/);
      expect(report.vms.map((v: { exitCode: number }) => v.exitCode)).toEqual([1, 1, 1]);
      for (const l of labs) {
        await l.source.reconnectQmp();
        expect((await l.source.qmp.execute<{ status: string }>('query-status')).status).toBe('running');
        await expectBeats(l.sourceConsole);
      }
      // QEMU ends a cancelled incoming migration by exiting; the third was never touched.
      await Promise.all(labs.slice(0, 2).map((l) => l.destination.exited));
      expect(labs[2]!.destination.alive).toBe(true);
    });
  });

  it('bad input is one line and exit 2, before anything is touched', () => {
    const cases: [string, RegExp][] = [
      ['{"strategy":2,"vms":[]}', /vms: Too small/],
      [
        '{"strategy":"planner","vms":[{"name":"a","source":"s","destination":"d","uri":"tcp:h:1","ramMiB":128}]}',
        /planner needs the link/,
      ],
      [
        '{"strategy":2,"vms":[{"name":"a","source":"/nonexistent/s.qmp","destination":"/nonexistent/d.qmp","uri":"tcp:127.0.0.1:1","ramMiB":128}]}',
        /a: cannot reach the source's QMP at \/nonexistent\/s\.qmp/,
      ],
    ];
    for (const [text, msg] of cases) {
      const f = path.join(dir, `bad-${cases.findIndex((c) => c[0] === text)}.json`);
      writeFileSync(f, text);
      const r = kvmigrate(['evacuate', f]);
      expect(r.code).toBe(EXIT.usage);
      expect(r.stderr.split('\n')).toHaveLength(1);
      expect(r.stderr).toMatch(msg);
      expect(r.stdout).toBe('');
    }
    const r = kvmigrate(['evacuate', path.join(dir, 'none.json')]);
    expect(r.code).toBe(EXIT.usage);
    expect(r.stderr.split('\n')).toHaveLength(1);
  });
});
