import { spawnSync } from 'node:child_process';
import { lstatSync, mkdtempSync, rmSync, existsSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { main } from '../../src/cli/main.js';
import { controlRequestFrom } from '../../src/cli/commands/ctl.js';
import { ControlResponseSchema, type ControlRequest } from '../../src/core/schema.js';
import {
  ControlServer,
  controlRequest,
  defaultControlSocketPath,
} from '../../src/migration/control-socket.js';
import { MigrationSession, type SessionOptions } from '../../src/migration/session.js';
import { resolvePolicy } from '../../src/policy/index.js';
import { QmpClient } from '../../src/qmp/index.js';
import { EXIT, UsageError } from '../../src/util/errors.js';
import { FakeQemu, migrating, type Script } from '../support/fake-qemu.js';

// The control socket (issue 15 item 6) against scripted QMP peers: the protocol, the core's action
// rules behind it (no cancel in post-copy, post-copy only when permitted), kvmigrate ctl's exit codes.

const open: { close(): void }[] = [];
const dirs: string[] = [];
afterEach(() => {
  while (open.length) open.pop()!.close();
  while (dirs.length) rmSync(dirs.pop()!, { recursive: true, force: true });
});

function tempSocket(): string {
  const dir = mkdtempSync(path.join(tmpdir(), 'kvm-ctl-'));
  dirs.push(dir);
  return path.join(dir, 'ctl.sock');
}

/**
 * A source that never converges by itself: one pass per few polls; completes once the
 * downtime-limit is raised past 100 s, cancels on migrate_cancel, and after migrate-start-postcopy
 * reports postcopy-active until `finishPostcopy` is set.
 */
function neverConverging(): { script: Script; finishPostcopy: () => void } {
  let polls = 0;
  let switched = false;
  let postcopy: 'no' | 'active' | 'done' = 'no';
  const script: Script = (cmd, args, q) => {
    if (cmd === 'migrate-set-parameters' && Number(args['downtime-limit']) >= 100_000) switched = true;
    if (cmd === 'migrate-start-postcopy') postcopy = 'active';
    if (cmd !== 'query-migrate' || q.state.migration.status === undefined) return undefined;
    if (q.state.migration.status === 'cancelled') return undefined;
    polls++;
    const syncs = 1 + Math.floor(polls / 3);
    if (switched || postcopy === 'done') {
      q.state.runState = 'postmigrate';
      q.state.migration = migrating('completed', { syncs, remaining: 0 });
      return undefined;
    }
    if (postcopy === 'active') {
      q.state.runState = 'postmigrate';
      return { return: migrating('postcopy-active', { syncs, transferred: polls * 1e7 }) };
    }
    return { return: migrating('active', { syncs, transferred: polls * 1e7, remaining: 3e8 }) };
  };
  return { script, finishPostcopy: () => (postcopy = 'done') };
}

const destinationCompletes: Script = (cmd, _a, q) => {
  if (cmd === 'query-migrate') q.state.runState = 'paused';
  return cmd === 'query-migrate' ? { return: { status: 'completed' } } : undefined;
};

async function running(extra: Partial<SessionOptions> = {}, src = neverConverging()) {
  const source = await FakeQemu.start({}, src.script);
  const destination = await FakeQemu.start({ runState: 'inmigrate' }, destinationCompletes);
  open.push(source, destination);
  const [s, d] = await Promise.all([
    QmpClient.connect(source.socketPath, { commandTimeoutMs: 2000 }),
    QmpClient.connect(destination.socketPath, { commandTimeoutMs: 2000 }),
  ]);
  open.push(s, d);
  const ref: { control?: ControlServer } = {};
  const session = new MigrationSession({
    source: s,
    destination: d,
    migrateUri: 'tcp:127.0.0.1:1',
    policy: resolvePolicy('stock'),
    downtimeBudgetMs: 300,
    deadlineMs: 20_000,
    pollMs: 10,
    destinationTimeoutMs: 1500,
    onEvent: (e) => ref.control?.observe(e),
    ...extra,
  });
  const control = await ControlServer.listen(session, tempSocket());
  ref.control = control;
  open.push({ close: () => void control.close() });
  const done = session.run();
  // Until the first poll the migration has not started: the request is refused as such.
  for (;;) {
    const r = await controlRequest(control.path, { op: 'status' });
    if (r.accepted && r.status!.pass >= 2) break;
    await new Promise((res) => setTimeout(res, 20));
  }
  return { source, destination, control, done, ...src };
}

/** Runs `kvmigrate ctl …` in-process: its exit code and what it printed. */
async function ctl(...args: string[]): Promise<{ code: number; out: string; err: string }> {
  let out = '';
  let err = '';
  const o = vi.spyOn(process.stdout, 'write').mockImplementation((c) => ((out += String(c)), true));
  const e = vi.spyOn(process.stderr, 'write').mockImplementation((c) => ((err += String(c)), true));
  const before = process.exitCode;
  try {
    process.exitCode = undefined;
    await main(['node', 'kvmigrate', 'ctl', ...args]);
    return { code: Number(process.exitCode ?? 0), out, err };
  } finally {
    o.mockRestore();
    e.mockRestore();
    process.exitCode = before;
  }
}

describe('the control socket', () => {
  it('is 0600, answers status, and is removed on close', async () => {
    const { control, done, source } = await running();
    expect(lstatSync(control.path).mode & 0o777).toBe(0o600);
    const r = await controlRequest(control.path, { op: 'status' });
    expect(ControlResponseSchema.parse(r)).toEqual(r);
    expect(r).toMatchObject({
      accepted: true,
      status: { status: 'active', postcopy: false, downtimeLimitMs: 300 },
    });
    expect(r.status!.transferredBytes).toBeGreaterThan(0);
    await controlRequest(control.path, { op: 'abort' });
    await done;
    await control.close();
    expect(existsSync(control.path)).toBe(false);
    expect(source.commands()).toContain('migrate_cancel');
  });

  it('force-complete raises the downtime-limit to the maximum and the migration completes', async () => {
    const { control, done, source } = await running();
    const r = await controlRequest(control.path, { op: 'force-complete' });
    expect(r).toMatchObject({ accepted: true, detail: 'setDowntimeLimit' });
    const result = await done;
    expect(result).toMatchObject({ outcome: 'completed', guestRunsOn: 'destination', exitCode: 0 });
    expect(result.decisions.map((d) => d.action.reason)).toContain('operator: force-complete');
    expect(source.received).toContainEqual({
      command: 'migrate-set-parameters',
      args: { 'downtime-limit': 2_000_000 },
    });
    // Over: nothing more is done.
    const after = await controlRequest(control.path, { op: 'abort' });
    expect(after).toMatchObject({ accepted: false, detail: expect.stringMatching(/over \(completed/) });
  });

  it('set-downtime sets the limit; abort cancels and the source runs on', async () => {
    const { control, done, source } = await running();
    expect(await controlRequest(control.path, { op: 'set-downtime', ms: 750 })).toMatchObject({
      accepted: true,
      status: { downtimeLimitMs: 750 },
    });
    expect(source.received).toContainEqual({
      command: 'migrate-set-parameters',
      args: { 'downtime-limit': 750 },
    });
    expect(await controlRequest(control.path, { op: 'abort' })).toMatchObject({
      accepted: true,
      detail: 'cancel',
    });
    const result = await done;
    expect(result).toMatchObject({ outcome: 'cancelled', guestRunsOn: 'source', exitCode: 1 });
    expect(result.reason).toMatch(/aborted by the operator/);
    expect(source.state.runState).toBe('running');
  });

  it('postcopy is refused without --allow-postcopy; with it, abort is refused once post-copy runs', async () => {
    const a = await running();
    expect(await controlRequest(a.control.path, { op: 'postcopy' })).toMatchObject({
      accepted: false,
      detail: expect.stringMatching(/not permitted/),
    });
    expect(a.source.commands()).not.toContain('migrate-start-postcopy');
    await controlRequest(a.control.path, { op: 'abort' });
    await a.done;

    const b = await running({
      policy: resolvePolicy('postcopy-after', { pass: 1000 }),
      postcopyPermitted: true,
      startDestinationOnPostcopy: true,
    });
    expect(await controlRequest(b.control.path, { op: 'postcopy' })).toMatchObject({ accepted: true });
    expect(b.source.commands()).toContain('migrate-start-postcopy');
    const refused = await controlRequest(b.control.path, { op: 'abort' });
    expect(refused).toMatchObject({
      accepted: false,
      detail: expect.stringMatching(/post-copy is under way/),
    });
    expect(b.source.commands()).not.toContain('migrate_cancel');
    b.finishPostcopy();
    expect(await b.done).toMatchObject({ outcome: 'completed', guestRunsOn: 'destination', postcopy: true });
  });

  it('answers bad lines with bad-request, one response per line, in order', async () => {
    const { control, done } = await running();
    const lines = await new Promise<string[]>((resolve, reject) => {
      const sock = net.connect(control.path);
      let buf = '';
      sock.setEncoding('utf8');
      sock.on('error', reject);
      sock.on('data', (c: string) => {
        buf += c;
        const got = buf.split('\n').filter(Boolean);
        if (got.length === 4) {
          sock.end();
          resolve(got);
        }
      });
      sock.write('not json\n{"op":"reboot"}\n{"op":"set-downtime","ms":-5}\n{"op":"status"}\n');
    });
    const rs = lines.map((l) => ControlResponseSchema.parse(JSON.parse(l)));
    expect(rs.slice(0, 3).map((r) => r.error)).toEqual(['bad-request', 'bad-request', 'bad-request']);
    expect(rs[3]).toMatchObject({ accepted: true });
    await controlRequest(control.path, { op: 'abort' });
    await done;
  });

  it('replaces a stale socket file, refuses a live one, and refuses a path that is not a socket', async () => {
    const p = tempSocket();
    const target = { request: async () => ({ accepted: true, detail: '' }), status: undefined };
    const live = net.createServer();
    await new Promise<void>((r) => live.listen(p, r));
    await expect(ControlServer.listen(target, p)).rejects.toThrow(/another controller listens/);
    await new Promise<void>((r) => live.close(() => r()));
    // A killed controller leaves its socket file behind.
    const killed = spawnSync('node', [
      '-e',
      `require('net').createServer().listen(${JSON.stringify(p)}, () => process.kill(process.pid, 'SIGKILL'))`,
    ]);
    expect(killed.signal).toBe('SIGKILL');
    expect(lstatSync(p).isSocket()).toBe(true);
    const c = await ControlServer.listen(target, p);
    expect(await controlRequest(p, { op: 'status' })).toMatchObject({
      accepted: false,
      error: 'not-started',
    });
    await c.close();
    expect(existsSync(p)).toBe(false);
    await expect(ControlServer.listen(target, path.dirname(p))).rejects.toThrow(UsageError);
  });

  it('defaults under $XDG_RUNTIME_DIR, /run (root) or the temp dir', () => {
    const was = process.env.XDG_RUNTIME_DIR;
    try {
      const dir = mkdtempSync(path.join(tmpdir(), 'kvm-xdg-'));
      dirs.push(dir);
      process.env.XDG_RUNTIME_DIR = dir;
      expect(defaultControlSocketPath(42)).toBe(path.join(dir, 'kvmigrate', '42.sock'));
      delete process.env.XDG_RUNTIME_DIR;
      expect(defaultControlSocketPath(42)).toMatch(/\/(run\/kvmigrate|kvmigrate-\d+)\/42\.sock$/);
    } finally {
      if (was === undefined) delete process.env.XDG_RUNTIME_DIR;
      else process.env.XDG_RUNTIME_DIR = was;
    }
  });
});

describe('kvmigrate ctl', () => {
  it('exit 0 accepted, 1 refused, 2 bad input or no socket', async () => {
    const { control, done } = await running();
    const status = await ctl(control.path, 'status', '--json');
    expect(status.code).toBe(EXIT.ok);
    expect(JSON.parse(status.out)).toMatchObject({ accepted: true, status: { status: 'active' } });
    const text = await ctl(control.path, 'status');
    expect(text.out).toMatch(/^active\nstatus active, pass \d+/);

    expect(await ctl(control.path, 'postcopy')).toMatchObject({
      code: EXIT.migrationFailed,
      out: expect.stringMatching(/not permitted/),
    });
    expect((await ctl(control.path, 'set-downtime', 'fast')).code).toBe(EXIT.usage);
    expect((await ctl(control.path, 'reboot')).code).toBe(EXIT.usage);
    const missing = await ctl(path.join(path.dirname(control.path), 'nope.sock'), 'status');
    expect(missing.code).toBe(EXIT.usage);
    expect(missing.err).toMatch(/no kvmigrate migrate listens on .*nope\.sock/);
    expect((await ctl(control.path, 'set-downtime', '900')).code).toBe(EXIT.ok);
    expect((await ctl(control.path, 'abort')).code).toBe(EXIT.ok);
    expect(await done).toMatchObject({ outcome: 'cancelled' });
  });

  it('turns OP [MS] into a request, or a usage error', () => {
    const ok: [string, string | undefined, ControlRequest][] = [
      ['status', undefined, { op: 'status' }],
      ['force-complete', undefined, { op: 'force-complete' }],
      ['set-downtime', '500', { op: 'set-downtime', ms: 500 }],
    ];
    for (const [op, arg, req] of ok) expect(controlRequestFrom(op, arg)).toEqual(req);
    for (const [op, arg] of [
      ['set-downtime', undefined],
      ['set-downtime', '0'],
      ['set-downtime', '2000001'],
      ['abort', 'now'],
      ['pause', undefined],
    ] as const)
      expect(() => controlRequestFrom(op, arg)).toThrow(UsageError);
  });
});
