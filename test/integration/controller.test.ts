import { spawn, spawnSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { migrateLab, type Lab } from '../../src/lab/lab.js';
import { parseLink } from '../../src/lab/link.js';
import { parseWorkload } from '../../src/lab/workload.js';
import { resolvePolicy } from '../../src/policy/index.js';
import { withLab, expectOneGuestRuns } from './helpers.js';

// A guest that never converges at 300 ms on 1 Gbit (its ~100 MiB dirty set takes ~0.85 s to send,
// more than nova's 500 ms top step), on 256 MiB to keep CI short: nova's data_gb is max(2, RAM
// GiB) and KubeVirt's per-GB timeout rounds RAM up to 1 GB, so the scaled timeouts are unchanged.
const memoryIntensive = { workload: parseWorkload('random:100'), ramMiB: 256, link: parseLink('1gbit') };

describe('the controller acts, and exactly one guest runs afterwards', () => {
  it('postcopy: post-copy after the bulk pass completes; the destination runs, intact', async () => {
    await withLab(memoryIntensive, async (lab) => {
      const r = await migrateLab(lab, {
        policy: resolvePolicy('postcopy-after', { pass: 1 }),
        downtimeBudgetMs: 300,
        deadlineMs: 60_000,
      });
      expect(r.migration.decisions.map((d) => d.action.kind)).toContain('postcopy');
      expect(r.migration.outcome).toBe('completed');
      expect(r.migration.postcopy).toBe(true);
      expect(r.verification!.guestCheck.ok).toBe(true);
      // QEMU's figure after post-copy is not what the guest feels (1–3 ms measured); the guest's
      // heartbeat shows the stall of the switch and of its remote page faults.
      expect(r.guestDowntimeMs!).toBeGreaterThan(100);
      expect(r.success).toBe(true);
      await expectOneGuestRuns(lab, 'destination');
    });
  });

  it('pause: nova force-complete (scaled) pauses the guest, the migration completes, verified', async () => {
    await withLab(memoryIntensive, async (lab) => {
      const r = await migrateLab(lab, {
        // data_gb 2 → completion timeout 1600 s × 0.003 = 4.8 s; downtime steps every 0.45 s.
        policy: resolvePolicy('nova', { timeoutAction: 'force_complete', scale: '0.003' }),
        downtimeBudgetMs: 300,
        deadlineMs: 60_000,
      });
      const kinds = r.migration.decisions.map((d) => d.action.kind);
      expect(kinds).toContain('setDowntimeLimit');
      expect(kinds).toContain('pause');
      expect(r.migration.outcome).toBe('completed');
      expect(r.verification!.ram!.differingPages).toBe(0);
      expect(r.success).toBe(true);
      await expectOneGuestRuns(lab, 'destination');
    });
  });

  it('abort: nova (scaled) climbs to 500 ms, never converges, aborts at its timeout; the source runs', async () => {
    await withLab(memoryIntensive, async (lab) => {
      const r = await migrateLab(lab, {
        policy: resolvePolicy('nova', { scale: '0.003' }),
        downtimeBudgetMs: 300,
        deadlineMs: 60_000,
      });
      const limits = r.migration.decisions.filter((d) => d.action.kind === 'setDowntimeLimit');
      expect(limits.length).toBeGreaterThanOrEqual(5);
      expect(r.migration.decisions.at(-1)!.action).toMatchObject({
        kind: 'abort',
        reason: expect.stringMatching(/completion timeout/),
      });
      expect(r.migration.outcome).toBe('cancelled');
      expect(r.migration.wallMs).toBeLessThan(30_000);
      expect(r.sourceRunsOn).toBe(true);
      await expectOneGuestRuns(lab, 'source');
    });
  });

  it('kubevirt (scaled) aborts a never-converging guest without post-copy, and completes it with allowPostCopy', async () => {
    await withLab(memoryIntensive, async (lab) => {
      const r = await migrateLab(lab, {
        policy: resolvePolicy('kubevirt', { scale: '0.04' }),
        downtimeBudgetMs: 300,
        deadlineMs: 60_000,
      });
      expect(r.migration.decisions.at(-1)!.action.kind).toBe('abort');
      expect(r.migration.outcome).toBe('cancelled');
      await expectOneGuestRuns(lab, 'source');
    });
    await withLab(memoryIntensive, async (lab) => {
      const r = await migrateLab(lab, {
        policy: resolvePolicy('kubevirt', { scale: '0.04', allowPostCopy: 'true' }),
        downtimeBudgetMs: 300,
        deadlineMs: 60_000,
        postcopyPermitted: true,
      });
      expect(r.migration.decisions.map((d) => d.action.kind)).toContain('postcopy');
      expect(r.migration.outcome).toBe('completed');
      expect(r.success).toBe(true);
      await expectOneGuestRuns(lab, 'destination');
    });
  });
});

/** Runs `kvmigrate migrate` on the lab's VMs (the test lets go of their QMP sockets meanwhile). */
function controllerArgs(lab: Lab, policyOpts: string[]) {
  return [
    'bin/kvmigrate.js', 'migrate',
    '--src', lab.source.spec.qmpSocket, '--dst', lab.destination.spec.qmpSocket,
    '--uri', lab.migrateUri, '--incoming', lab.migrateUri,
    ...policyOpts, '--deadline', '60',
  ]; // prettier-ignore
}

async function runUntilDecision(lab: Lab, kind: string, signal: NodeJS.Signals) {
  lab.source.releaseQmp();
  lab.destination.releaseQmp();
  const child = spawn(
    'node',
    controllerArgs(lab, [
      '--policy',
      'nova',
      '--policy-opt',
      'timeoutAction=force_complete',
      '--policy-opt',
      'scale=0.002',
    ]),
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let stderr = '';
  const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
  child.stderr.on('data', (d: Buffer) => {
    stderr += d.toString();
    if (stderr.includes(`: ${kind} —`) && !child.killed) child.kill(signal);
  });
  const code = await exited;
  await lab.source.reconnectQmp();
  await lab.destination.reconnectQmp().catch(() => undefined);
  return { code, stderr };
}

describe('signals never leave a guest paused', () => {
  it('SIGINT during a migration that used pause leaves exactly one running guest', async () => {
    await withLab(memoryIntensive, async (lab) => {
      const { stderr } = await runUntilDecision(lab, 'pause', 'SIGINT');
      expect(stderr).toMatch(/SIGINT: cancelling the migration/);
      const srcRuns = (await lab.source.qmp.execute<{ status: string }>('query-status')).status === 'running';
      await expectOneGuestRuns(lab, srcRuns ? 'source' : 'destination');
    });
  });

  it('SIGKILL of the controller, then kvmigrate recover, leaves exactly one running guest', async () => {
    await withLab(memoryIntensive, async (lab) => {
      await runUntilDecision(lab, 'pause', 'SIGKILL');
      lab.source.releaseQmp();
      lab.destination.releaseQmp();
      const r = spawnSync(
        'node',
        [
          'bin/kvmigrate.js',
          'recover',
          '--src',
          lab.source.spec.qmpSocket,
          '--dst',
          lab.destination.spec.qmpSocket,
          '--json',
        ],
        { encoding: 'utf8', timeout: 150_000 },
      );
      expect(r.status).toBe(0);
      const report = JSON.parse(r.stdout) as { running: 'source' | 'destination' };
      await lab.source.reconnectQmp();
      // A destination whose incoming migration was cancelled exits on its own: it may be going.
      if (lab.destination.alive) await lab.destination.reconnectQmp().catch(() => undefined);
      await expectOneGuestRuns(lab, report.running);
    });
  });
});

describe('bad input to kvmigrate migrate: one clear line, non-zero exit, both guests untouched', () => {
  const idle = { workload: parseWorkload('idle'), ramMiB: 256, link: parseLink('1gbit') };

  function runController(args: string[]) {
    const r = spawnSync('node', ['bin/kvmigrate.js', 'migrate', ...args], {
      encoding: 'utf8',
      timeout: 60_000,
    });
    return { code: r.status, stderr: r.stderr.trim() };
  }

  async function untouched(lab: Lab) {
    await lab.source.reconnectQmp();
    await lab.destination.reconnectQmp();
    expect((await lab.source.qmp.execute<{ status: string }>('query-status')).status).toBe('running');
    expect((await lab.destination.qmp.execute<{ status: string }>('query-status')).status).toBe('inmigrate');
  }

  it('an unreachable destination, a socket that is not QMP, an unknown policy, a bad option', async () => {
    await withLab(idle, async (lab) => {
      lab.source.releaseQmp();
      lab.destination.releaseQmp();
      const src = lab.source.spec.qmpSocket;
      const dst = lab.destination.spec.qmpSocket;
      // The destination waits for migrate-incoming (-incoming defer): nobody listens.
      const unreachable = runController(['--src', src, '--dst', dst, '--uri', lab.migrateUri, '--quiet']);
      expect(unreachable.code).not.toBe(0);
      expect(unreachable.stderr).toMatch(
        /^kvmigrate: cannot reach the destination at tcp:[\d.]+:4444 \(.*refused.*\): is it listening\?/,
      );
      expect(unreachable.stderr.split('\n')).toHaveLength(1);

      const notQmp = runController([
        '--src',
        lab.source.spec.serialSocket,
        '--dst',
        dst,
        '--uri',
        lab.migrateUri,
      ]);
      expect(notQmp.code).not.toBe(0);
      expect(notQmp.stderr).toMatch(/^kvmigrate: .*serial (is not a QMP socket|did not send a QMP greeting)/);
      expect(notQmp.stderr.split('\n')).toHaveLength(1);

      const unknown = runController([
        '--src',
        src,
        '--dst',
        dst,
        '--uri',
        lab.migrateUri,
        '--policy',
        'fastest',
      ]);
      expect(unknown).toMatchObject({
        code: 2,
        stderr: expect.stringMatching(/^kvmigrate: unknown policy 'fastest'/),
      });
      const badOpt = runController([
        '--src',
        src,
        '--dst',
        dst,
        '--uri',
        lab.migrateUri,
        '--policy',
        'nova',
        '--policy-opt',
        'scale=-1',
      ]);
      expect(badOpt).toMatchObject({
        code: 2,
        stderr: expect.stringMatching(/^kvmigrate: bad option for policy nova: scale: /),
      });
      await untouched(lab);
    });
  });

  it('a destination that already runs a guest: refused, both guests untouched', async () => {
    await withLab(idle, async (a) => {
      await withLab(idle, async (b) => {
        a.source.releaseQmp();
        b.source.releaseQmp();
        const r = runController([
          '--src', a.source.spec.qmpSocket, '--dst', b.source.spec.qmpSocket,
          '--uri', b.migrateUri,
        ]); // prettier-ignore
        expect(r.code).not.toBe(0);
        expect(r.stderr).toBe(
          "kvmigrate: the destination is not waiting for a migration (its status is 'running'): start it with -incoming defer or -incoming tcp:HOST:PORT",
        );
        await a.source.reconnectQmp();
        await b.source.reconnectQmp();
        for (const lab of [a, b]) {
          expect((await lab.source.qmp.execute<{ status: string }>('query-status')).status).toBe('running');
          expect((await lab.sourceConsole.integrityCheck()).ok).toBe(true);
        }
      });
    });
  });

  it('source and destination with different RAM sizes', async () => {
    await withLab(idle, async (small) => {
      await withLab({ ...idle, ramMiB: 384 }, async (big) => {
        small.source.releaseQmp();
        big.destination.releaseQmp();
        const r = runController([
          '--src', small.source.spec.qmpSocket, '--dst', big.destination.spec.qmpSocket,
          '--uri', big.migrateUri, '--incoming', big.migrateUri,
        ]); // prettier-ignore
        expect(r.code).not.toBe(0);
        expect(r.stderr).toBe(
          'kvmigrate: source has 256 MiB of RAM, destination 384 MiB: start the destination with the same -m',
        );
        await small.source.reconnectQmp();
        await big.destination.reconnectQmp();
        expect((await small.source.qmp.execute<{ status: string }>('query-status')).status).toBe('running');
        expect((await big.destination.qmp.execute<{ status: string }>('query-status')).status).toBe(
          'inmigrate',
        );
      });
    });
  });
});
