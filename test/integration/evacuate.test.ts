import { spawn } from 'node:child_process';
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
import { kvmigrateSync } from '../support/cli.js';

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

describe('kvmigrate evacuate PLAN on real QEMU monitors', () => {
  it('two lab pairs sharing one link, one at a time: both land on their destinations, guests intact', async () => {
    const shared = await SharedLabLink.create(gbit);
    const labs: Lab[] = [];
    try {
      for (let i = 0; i < 2; i++)
        labs.push(
          await Lab.start({
            workload: parseLabWorkload('rate:16:1000'),
            ramMiB: 128,
            link: gbit,
            sharedLink: shared.link,
            port: 4444 + i,
          }),
        );
      // The destinations listen in the one netns behind the one shaped veth.
      expect(new Set(labs.map((l) => l.incomingUri.split(':')[1]))).toEqual(new Set([shared.link.nsAddr]));
      // QEMU serves one QMP client at a time: the CLI takes them over.
      for (const l of labs) {
        l.source.releaseQmp();
        l.destination.releaseQmp();
      }
      const plan = path.join(dir, 'plan.json');
      writeFileSync(
        plan,
        JSON.stringify({
          strategy: 1,
          link: '1gbit',
          policy: 'frs',
          vms: labs.map((l, i) => ({
            name: `vm${i + 1}`,
            source: l.source.spec.qmpSocket,
            destination: l.destination.spec.qmpSocket,
            uri: l.migrateUri,
            incoming: l.incomingUri,
            ramMiB: 128,
            workload: 'rate:16:1000',
          })),
        }),
      );
      const child = spawn('node', ['bin/kvmigrate.js', 'evacuate', plan], {
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let stdout = '';
      let stderr = '';
      child.stdout.on('data', (d) => (stdout += d));
      child.stderr.on('data', (d) => (stderr += d));
      const code = await new Promise<number | null>((res) => child.on('exit', res));
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
        const since = performance.now();
        await new Promise((r) => setTimeout(r, 300));
        expect(l.destinationConsole.beatsAfter(since).length).toBeGreaterThanOrEqual(3);
        expect((await l.destinationConsole.integrityCheck()).ok).toBe(true);
      }
    } finally {
      const pids = labs.flatMap((l) => [l.source.pid, l.destination.pid]);
      for (const l of labs) await l.destroy();
      await shared.destroy();
      for (const id of [shared.id, ...labs.map((l) => l.info.id)])
        expect(await leaksOf(id, pids)).toEqual([]);
    }
  });

  it("Ctrl-C cancels every running migration by the core's rules: sources run on, nothing more starts, exit 1", async () => {
    const shared = await SharedLabLink.create(gbit);
    const labs: Lab[] = [];
    try {
      // A guest stock pre-copy never converges on (64 MiB rewritten as fast as it can, 300 ms).
      for (let i = 0; i < 3; i++)
        labs.push(
          await Lab.start({
            workload: parseLabWorkload('random:64'),
            ramMiB: 192,
            link: gbit,
            sharedLink: shared.link,
            port: 4444 + i,
          }),
        );
      for (const l of labs) {
        l.source.releaseQmp();
        l.destination.releaseQmp();
      }
      const plan = path.join(dir, 'plan-int.json');
      writeFileSync(
        plan,
        JSON.stringify({
          strategy: 2,
          policy: 'stock',
          deadlineS: 60,
          vms: labs.map((l, i) => ({
            name: `vm${i + 1}`,
            source: l.source.spec.qmpSocket,
            destination: l.destination.spec.qmpSocket,
            uri: l.migrateUri,
            incoming: l.incomingUri,
            ramMiB: 192,
          })),
        }),
      );
      const child = spawn('node', ['bin/kvmigrate.js', 'evacuate', plan], {
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let stdout = '';
      let stderr = '';
      child.stdout.on('data', (d) => (stdout += d));
      child.stderr.on('data', (d) => (stderr += d));
      const exited = new Promise<number | null>((res) => child.on('exit', res));
      const until = performance.now() + 60_000;
      while (!/vm2: migrating/.test(stderr) && performance.now() < until)
        await new Promise((r) => setTimeout(r, 50));
      await new Promise((r) => setTimeout(r, 1500));
      child.kill('SIGINT');
      expect(await exited, stderr).toBe(EXIT.migrationFailed);
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
        const since = performance.now();
        await new Promise((r) => setTimeout(r, 300));
        expect(l.sourceConsole.beatsAfter(since).length).toBeGreaterThanOrEqual(3);
      }
      // QEMU ends a cancelled incoming migration by exiting; the third was never touched.
      await Promise.all(labs.slice(0, 2).map((l) => l.destination.exited));
      expect(labs[2]!.destination.alive).toBe(true);
    } finally {
      const pids = labs.flatMap((l) => [l.source.pid, l.destination.pid]);
      for (const l of labs) await l.destroy();
      await shared.destroy();
      for (const id of [shared.id, ...labs.map((l) => l.info.id)])
        expect(await leaksOf(id, pids)).toEqual([]);
    }
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
