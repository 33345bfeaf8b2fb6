import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { EventLineSchema, MigrationResultSchema } from '../../src/core/schema.js';
import type { Lab } from '../../src/lab/lab.js';
import { parseLink } from '../../src/lab/link.js';
import { parseWorkload } from '../../src/lab/workload.js';
import type { MigrationResult } from '../../src/migration/session.js';
import { EXIT } from '../../src/util/errors.js';
import { withLab, expectOneGuestRuns } from './helpers.js';

// Acting on a running migration (issue 15 item 6) on real QEMU: `kvmigrate migrate` on a lab pair
// with a guest that never converges under the stock policy (random:200 on 512 MiB over 1 Gbit,
// 300 ms limit), then `kvmigrate ctl` from another process. The run's --events stream is checked
// against the committed schema line by line, its last line against the result.

const neverConverges = { workload: parseWorkload('random:200'), ramMiB: 512, link: parseLink('1gbit') };

function ctl(...args: string[]) {
  const r = spawnSync('node', ['bin/kvmigrate.js', 'ctl', ...args], { encoding: 'utf8', timeout: 60_000 });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** Starts `kvmigrate migrate` on the lab's VMs with a control socket and an event stream. */
async function startMigrate(lab: Lab, extra: string[] = []) {
  const dir = mkdtempSync(path.join(tmpdir(), 'kvm-ctl-it-'));
  const socket = path.join(dir, 'ctl.sock');
  const events = path.join(dir, 'events.ndjson');
  lab.source.releaseQmp();
  lab.destination.releaseQmp();
  const child = spawn(
    'node',
    [
      'bin/kvmigrate.js', 'migrate',
      '--src', lab.source.spec.qmpSocket, '--dst', lab.destination.spec.qmpSocket,
      '--uri', lab.migrateUri, '--incoming', lab.migrateUri,
      '--control-socket', socket, '--events', events, '--json', ...extra,
    ], // prettier-ignore
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
  const finish = async () => {
    const code = await exited;
    await lab.source.reconnectQmp();
    await lab.destination.reconnectQmp().catch(() => undefined);
    const eventsText = existsSync(events) ? readFileSync(events, 'utf8') : '';
    rmSync(dir, { recursive: true, force: true });
    return { code, result: JSON.parse(stdout) as MigrationResult, stderr, eventsText };
  };
  // Wait until it iterates: pass 3 under way, still active.
  const t0 = performance.now();
  for (;;) {
    if (child.exitCode !== null) throw new Error(`migrate exited early: ${stderr}`);
    if (performance.now() - t0 > 90_000) throw new Error(`no pass 3 within 90 s: ${stderr}`);
    if (existsSync(socket)) {
      const s = ctl(socket, 'status', '--json');
      if (s.code === 0) {
        const r = JSON.parse(s.stdout) as { status: { pass: number; status: string } };
        if (r.status.pass >= 3 && r.status.status === 'active') break;
      }
    }
    await new Promise((r) => setTimeout(r, 250));
  }
  expect(stderr).toContain(`control socket ${socket}`);
  return { socket, finish };
}

/** The events stream parses line by line against the schema and ends with the result. */
function checkEvents(text: string, result: MigrationResult) {
  const lines = text.trimEnd().split('\n');
  const parsed = lines.map((l, i) => {
    const raw: unknown = JSON.parse(l);
    const r = EventLineSchema.safeParse(raw);
    expect(r.success, `events line ${i + 1}: ${r.error?.message}`).toBe(true);
    expect(r.data, `events line ${i + 1} has fields the schema does not know`).toEqual(raw);
    return r.data!;
  });
  const types = new Set(parsed.map((p) => p.type));
  for (const t of ['status', 'progress', 'pass', 'decision', 'command', 'outcome'])
    expect(types).toContain(t);
  const last = parsed.at(-1)!;
  expect(last.type).toBe('outcome');
  expect(last.type === 'outcome' && last.result).toEqual(result);
  expect(MigrationResultSchema.parse(result)).toEqual(result);
}

describe('kvmigrate ctl on a real migration that never converges by itself', () => {
  it('force-complete completes it; the guest runs on the destination, intact', async () => {
    await withLab(neverConverges, async (lab) => {
      const { socket, finish } = await startMigrate(lab);
      const r = ctl(socket, 'force-complete');
      expect(r.code, r.stdout + r.stderr).toBe(EXIT.ok);
      expect(r.stdout).toMatch(/^setDowntimeLimit/);
      const { code, result, stderr, eventsText } = await finish();
      expect(code, stderr).toBe(EXIT.ok);
      expect(result).toMatchObject({ outcome: 'completed', guestRunsOn: 'destination', exitCode: 0 });
      expect(result.passes.length).toBeGreaterThanOrEqual(3);
      expect(result.decisions.map((d) => d.action.reason)).toContain('operator: force-complete');
      checkEvents(eventsText, result);
      await expectOneGuestRuns(lab, 'destination');
    });
  });

  it('abort cancels it; the source runs on, intact', async () => {
    await withLab(neverConverges, async (lab) => {
      const { socket, finish } = await startMigrate(lab);
      const refused = ctl(socket, 'postcopy');
      expect(refused.code).toBe(EXIT.migrationFailed);
      expect(refused.stdout).toMatch(/not permitted/);
      const r = ctl(socket, 'abort');
      expect(r.code, r.stdout + r.stderr).toBe(EXIT.ok);
      const { code, result, stderr, eventsText } = await finish();
      expect(code, stderr).toBe(EXIT.migrationFailed);
      expect(result).toMatchObject({ outcome: 'cancelled', guestRunsOn: 'source', exitCode: 1 });
      expect(result.reason).toMatch(/aborted by the operator/);
      checkEvents(eventsText, result);
      await expectOneGuestRuns(lab, 'source');
      // The socket is gone with the controller.
      expect(ctl(socket, 'status').code).toBe(EXIT.usage);
    });
  });

  it('postcopy moves it (destination started, guest runs there); abort is refused during post-copy', async () => {
    await withLab(neverConverges, async (lab) => {
      // A policy that turns post-copy on but never switches by itself: only the operator does.
      const { socket, finish } = await startMigrate(lab, [
        '--policy', 'postcopy-after', '--policy-opt', 'pass=100000', '--allow-postcopy',
      ]); // prettier-ignore
      const r = ctl(socket, 'postcopy');
      expect(r.code, r.stdout + r.stderr).toBe(EXIT.ok);
      expect(r.stdout).toMatch(/^startPostcopy/);
      const abort = ctl(socket, 'abort', '--json');
      // Refused while post-copy runs — unless it already completed (then: over).
      expect(abort.code).toBe(EXIT.migrationFailed);
      expect(JSON.parse(abort.stdout).detail).toMatch(/post-copy is under way|over \(completed/);
      const { code, result, stderr, eventsText } = await finish();
      expect(code, stderr).toBe(EXIT.ok);
      expect(result).toMatchObject({ outcome: 'completed', guestRunsOn: 'destination', postcopy: true });
      expect(result.decisions.map((d) => d.action.reason)).toContain('operator: postcopy');
      checkEvents(eventsText, result);
      await expectOneGuestRuns(lab, 'destination');
    });
  });
});
