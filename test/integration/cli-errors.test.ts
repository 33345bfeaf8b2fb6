import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { resolveDeadline } from '../../src/cli/deadline.js';
import { findLeftovers } from '../../src/lab/clean.js';
import { LAB_PREFIX } from '../../src/lab/link.js';
import { EXIT } from '../../src/util/errors.js';
import { qemuRateForWireCap } from '../../src/cli/rate.js';
import { kvmigrateSync } from '../support/cli.js';

const kvmigrate = (args: string[], env: Record<string, string> = {}) => kvmigrateSync(args, { env });

/** One clear line on stderr, no stack trace, a non-zero exit. */
function expectOneLineError(r: ReturnType<typeof kvmigrate>, pattern: RegExp) {
  expect(r.code).not.toBe(0);
  expect(r.stderr.split('\n')).toHaveLength(1);
  expect(r.stderr).toMatch(pattern);
  expect(r.stderr).not.toMatch(/\n\s+at /);
}

describe('bad input gets one clear line and a non-zero exit', () => {
  it('a missing QMP socket path', () => {
    const r = kvmigrate([
      'migrate',
      '--src',
      '/nonexistent/src.qmp',
      '--dst',
      '/nonexistent/dst.qmp',
      '--uri',
      'tcp:127.0.0.1:1',
    ]);
    expectOneLineError(
      r,
      /^kvmigrate: cannot connect to QMP at \/nonexistent\/src\.qmp: no such socket file$/,
    );
  });

  it('QEMU not installed', () => {
    const r = kvmigrate(['lab', 'migrate', '--workload', 'idle', '--ram', '256'], {
      KVMIGRATE_QEMU: '/nonexistent/qemu-system-x86_64',
    });
    expectOneLineError(r, /QEMU is not installed .* run 'sudo bash scripts\/setup-host\.sh'/);
  });

  it('an unknown workload string', () => {
    const r = kvmigrate(['lab', 'migrate', '--workload', 'random:lots']);
    expectOneLineError(r, /^kvmigrate: unknown workload 'random:lots': .*use one of idle, random:<MiB>/);
    expect(r.code, r.stderr).toBe(2);
  });

  it('an unknown policy, and a bad policy option', () => {
    expectOneLineError(
      kvmigrate(['lab', 'migrate', '--policy', 'magic']),
      /unknown policy 'magic': choose one of stock, relaxed/,
    );
    expectOneLineError(
      kvmigrate(['lab', 'migrate', '--policy', 'switch-at-pass', '--policy-opt', 'pass=1']),
      /bad option for policy switch-at-pass: pass: /,
    );
    expectOneLineError(kvmigrate(['lab', 'migrate', '--ram', '-5']), /--ram must be a whole number above 0/);
  });

  it('absurd parameters: downtime 0, a negative deadline, a 0-bit link, a bad objective', () => {
    expectOneLineError(
      kvmigrate(['lab', 'migrate', '--downtime-budget', '0']),
      /--downtime-budget must be a number above 0/,
    );
    expectOneLineError(
      kvmigrate(['lab', 'migrate', '--deadline', '-5']),
      /--deadline must be a number above 0/,
    );
    expectOneLineError(
      kvmigrate(['lab', 'migrate', '--link', '0mbit']),
      /bad link '0mbit': the rate must be above 0/,
    );
    expectOneLineError(kvmigrate(['sim', '--link', '0mbit']), /the rate must be above 0/);
    expectOneLineError(
      kvmigrate(['lab', 'migrate', '--objective', 'total']),
      /--objective applies to --policy adaptive/,
    );
    expectOneLineError(
      kvmigrate(['lab', 'migrate', '--policy', 'adaptive', '--policy-opt', 'horizon=abc']),
      /bad option for policy adaptive: horizon/,
    );
  });

  it('a malformed trace names the file and line; a missing one says so', () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'kvm-trace-cli-'));
    try {
      const f = path.join(dir, 't.jsonl');
      writeFileSync(
        f,
        '{"format":"kvmigrate-trace","version":1,"ramBytes":1,"recordedAt":"x"}\n{"type":"sample","atMs":1,"windowMs":125,"dirtyBytes":-4}\n',
      );
      expectOneLineError(kvmigrate(['sim', '--trace', f]), /t\.jsonl:2: dirtyBytes/);
      expectOneLineError(
        kvmigrate(['sim', '--trace', path.join(dir, 'none.jsonl')]),
        /trace .*none\.jsonl does not exist/,
      );
      // A device or a directory is not a trace: refused without reading it.
      expectOneLineError(
        kvmigrate(['sim', '--trace', '/dev/zero']),
        /trace \/dev\/zero is not a regular file/,
      );
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('a workload larger than the guest', () => {
    const r = kvmigrate(['lab', 'migrate', '--workload', 'random:400', '--ram', '256']);
    expectOneLineError(r, /needs more RAM than a 256 MiB guest has/);
  });

  it('a destination port already in use, leaving nothing behind', async () => {
    // Its own lab tag, so QEMUs of other runs on this host are not counted as its leftovers.
    const tag = `p${Math.floor(Math.random() * 10)}`;
    const server = net.createServer();
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const port = (server.address() as net.AddressInfo).port;
    try {
      const r = await new Promise<ReturnType<typeof kvmigrate>>((resolve) =>
        // Run asynchronously so this process keeps serving the port.
        setImmediate(() =>
          resolve(
            kvmigrate(
              [
                'lab',
                'migrate',
                '--workload',
                'idle',
                '--ram',
                '256',
                '--link',
                'none',
                '--port',
                String(port),
                '--quiet',
              ],
              { KVMIGRATE_LAB_TAG: tag },
            ),
          ),
        ),
      );
      expectOneLineError(
        r,
        new RegExp(`cannot listen on tcp:127\\.0\\.0\\.1:${port}: the port is already in use`),
      );
    } finally {
      server.close();
    }
    const left = await findLeftovers();
    expect(left.qemuPids.filter((pid) => qemuName(pid).startsWith(`${LAB_PREFIX}-${tag}`))).toEqual([]);
  });
});

/** The -name of a QEMU process ('' when it is gone). */
function qemuName(pid: number): string {
  try {
    const argv = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
    return argv[argv.indexOf('-name') + 1] ?? '';
  } catch {
    return '';
  }
}

// ---------------------------------------------------------------------------------------------
// Exit codes (README "Exit codes"): every one asserted, most against scripted fake QMP peers
// playing QEMU, so the CLI runs its real code path without guests.

/** Runs the CLI without blocking this process (the fake QMP peers live here). */
function kvmigrateAsync(args: string[]): Promise<ReturnType<typeof kvmigrate>> {
  return new Promise((resolve) => {
    const child = spawn('node', ['bin/kvmigrate.js', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (c: string) => (stdout += c));
    child.stderr.setEncoding('utf8').on('data', (c: string) => (stderr += c));
    const timer = setTimeout(() => child.kill('SIGKILL'), 60_000);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr: stderr.trim() });
    });
  });
}

type Reply = { return: unknown } | { error: { class: string; desc: string } } | 'hang' | 'close';
interface Peer {
  /** Where the CLI connects. */
  path: string;
  /** Every command received, in order. */
  received: string[];
  /** How many clients connected. */
  connections: number;
  /** Sends a QMP event to the connected client. */
  emit(event: string, data: Record<string, unknown>): void;
  /** The QEMU behind it dies: connections dropped, the socket file gone. */
  kill(): void;
}

const GREETING =
  '{"QMP": {"version": {"qemu": {"major": 10, "minor": 0, "micro": 2}}, "capabilities": ["oob"]}}\r\n';
const peerCleanups: (() => void)[] = [];
afterEach(() => {
  while (peerCleanups.length) peerCleanups.pop()!();
});

/**
 * A scripted QMP peer: `script` answers each command (unknown ones get `{}`); `greet: false`
 * makes a socket that accepts and never speaks (a hung QEMU).
 */
async function fakeQemu(
  script: (cmd: string, args: Record<string, unknown> | undefined, peer: Peer) => Reply | undefined,
  greet = true,
): Promise<Peer> {
  const dir = mkdtempSync(path.join(tmpdir(), 'kvm-cli-qmp-'));
  const conns: net.Socket[] = [];
  const peer: Peer = {
    path: path.join(dir, 'qmp.sock'),
    received: [],
    connections: 0,
    emit(event, data) {
      const now = Date.now();
      const ts = { seconds: Math.floor(now / 1000), microseconds: (now % 1000) * 1000 };
      conns.at(-1)?.write(JSON.stringify({ event, data, timestamp: ts }) + '\r\n');
    },
    kill() {
      server.close();
      conns.forEach((c) => c.destroy());
      rmSync(peer.path, { force: true });
    },
  };
  const server = net.createServer((sock) => {
    conns.push(sock);
    peer.connections++;
    sock.on('error', () => {});
    if (!greet) return;
    sock.setEncoding('utf8');
    sock.write(GREETING);
    let buf = '';
    sock.on('data', (chunk: string) => {
      buf += chunk;
      let nl;
      while ((nl = buf.indexOf('\n')) >= 0) {
        const msg = JSON.parse(buf.slice(0, nl)) as { execute: string; id?: unknown; arguments?: never };
        buf = buf.slice(nl + 1);
        if (msg.execute === 'qmp_capabilities') {
          sock.write(JSON.stringify({ return: {}, id: msg.id }) + '\r\n');
          continue;
        }
        peer.received.push(msg.execute);
        const r = script(msg.execute, msg.arguments, peer) ?? { return: {} };
        if (r === 'close') sock.destroy();
        else if (r !== 'hang') sock.write(JSON.stringify({ ...r, id: msg.id }) + '\r\n');
      }
    });
  });
  await new Promise<void>((r) => server.listen(peer.path, r));
  peerCleanups.push(() => {
    conns.forEach((c) => c.destroy());
    server.close();
    rmSync(dir, { recursive: true, force: true });
  });
  return peer;
}

const MiB = 2 ** 20;
/** What QEMU 10 answers to the queries both sides get, before anything was changed. */
function settingsReply(cmd: string): Reply | undefined {
  if (cmd === 'query-migrate-capabilities')
    return {
      return: ['xbzrle', 'auto-converge', 'events', 'postcopy-ram', 'multifd'].map((capability) => ({
        capability,
        state: false,
      })),
    };
  if (cmd === 'query-migrate-parameters')
    return {
      return: {
        'max-bandwidth': 128 * MiB,
        'max-postcopy-bandwidth': 0,
        'downtime-limit': 300,
        'cpu-throttle-initial': 20,
        'cpu-throttle-increment': 10,
        'max-cpu-throttle': 99,
      },
    };
  return undefined;
}
const ramStats = (transferred: number, syncs: number, total = 512 * MiB) => ({
  transferred,
  remaining: Math.max(0, total - transferred),
  total,
  duplicate: 0,
  normal: Math.floor(transferred / 4096),
  'dirty-sync-count': syncs,
  'dirty-pages-rate': 20_000,
  mbps: 1000,
});

/**
 * A source QEMU whose migration goes as `after` says once `migrate` is issued: 'complete' at once,
 * 'never' converges (until migrate_cancel), or 'postcopy-lost' (post-copy, then `lose()` kills the
 * destination and the source reports postcopy-paused).
 */
function sourceScript(after: 'complete' | 'never' | 'postcopy-lost', ramBytes = 512 * MiB, lose = () => {}) {
  let migrating = false;
  let status = 'none';
  let sent = 0;
  let polls = 0;
  return (cmd: string, _args: unknown, peer: Peer): Reply | undefined => {
    switch (cmd) {
      case 'query-status':
        return { return: { status: status === 'completed' ? 'postmigrate' : 'running', running: true } };
      case 'query-memory-size-summary':
        return { return: { 'base-memory': ramBytes } };
      case 'migrate':
        migrating = true;
        status = after === 'complete' ? 'completed' : 'active';
        if (status === 'completed') peer.emit('MIGRATION', { status });
        return { return: {} };
      case 'migrate-start-postcopy':
        status = 'postcopy-active';
        peer.emit('MIGRATION', { status });
        return { return: {} };
      case 'migrate_cancel':
        if (status === 'active') status = 'cancelled';
        peer.emit('MIGRATION', { status });
        return { return: {} };
      case 'query-migrate': {
        if (!migrating) return { return: {} };
        polls++;
        if (status === 'postcopy-active' && after === 'postcopy-lost') {
          lose();
          status = 'postcopy-paused';
          peer.emit('MIGRATION', { status });
        }
        if (status === 'active') sent = Math.min(sent + 8 * MiB, 4 * ramBytes);
        return {
          return: {
            status,
            'total-time': polls * 50,
            ...(status === 'completed' ? { downtime: 30 } : {}),
            ram: ramStats(status === 'completed' ? ramBytes : sent, 1 + Math.floor(polls / 10), ramBytes),
          },
        };
      }
    }
    return settingsReply(cmd);
  };
}

/** A destination QEMU started with -incoming defer -S; `incoming` is what its query-migrate says. */
function destinationScript(ramBytes = 512 * MiB, incoming = 'completed') {
  let status = 'inmigrate';
  return (cmd: string): Reply | undefined => {
    switch (cmd) {
      case 'query-status':
        return { return: { status, running: status === 'running' } };
      case 'query-memory-size-summary':
        return { return: { 'base-memory': ramBytes } };
      case 'query-migrate':
        return { return: { status: incoming } };
      case 'cont':
        status = 'running';
        return { return: {} };
    }
    return settingsReply(cmd);
  };
}

const migrateArgs = (src: Peer, dst: Peer, ...more: string[]) => [
  'migrate',
  '--src',
  src.path,
  '--dst',
  dst.path,
  '--uri',
  'tcp:127.0.0.1:1',
  '--quiet',
  ...more,
];

describe('exit codes (README: Exit codes)', () => {
  it('0: --version prints the version in package.json; a completed migration', async () => {
    const pkg = JSON.parse(readFileSync('package.json', 'utf8')) as { version: string };
    const v = kvmigrate(['--version']);
    expect(v.code).toBe(EXIT.ok);
    expect(v.stdout.trim()).toBe(pkg.version);

    const src = await fakeQemu(sourceScript('complete'));
    const dst = await fakeQemu(destinationScript());
    const r = await kvmigrateAsync(migrateArgs(src, dst, '--json'));
    expect(r.code, r.stderr).toBe(EXIT.ok);
    const result = JSON.parse(r.stdout);
    expect(result).toMatchObject({ outcome: 'completed', guestRunsOn: 'destination' });
    expect(dst.received).toContain('cont');
  });

  it('1: cancelled at the deadline with the source running', async () => {
    const src = await fakeQemu(sourceScript('never'));
    const dst = await fakeQemu(destinationScript());
    const r = await kvmigrateAsync(migrateArgs(src, dst, '--deadline', '1', '--json'));
    expect(r.code, r.stderr).toBe(EXIT.migrationFailed);
    expect(JSON.parse(r.stdout)).toMatchObject({ outcome: 'cancelled', guestRunsOn: 'source' });
    expect(src.received).toContain('migrate_cancel');
  });

  it('2: bad input, with and without --json; an unreachable QMP socket; nothing touched', async () => {
    const usage = kvmigrate(['policies', '--bogus']);
    expect(usage.code).toBe(EXIT.usage);
    expect(usage.stderr).toMatch(/^kvmigrate: unknown option '--bogus'/);

    const json = kvmigrate(['policies', 'magic', '--json']);
    expect(json.code).toBe(EXIT.usage);
    const lines = json.stdout.trim().split('\n');
    expect(lines).toHaveLength(1);
    expect(JSON.parse(lines[0]!)).toEqual({
      error: {
        code: 'policy-config',
        message: expect.stringMatching(/^unknown policy 'magic': choose one of stock/),
        exitCode: 2,
      },
    });
    const cmdrJson = kvmigrate(['migrate', '--json']);
    expect(cmdrJson.code).toBe(EXIT.usage);
    expect(JSON.parse(cmdrJson.stdout)).toEqual({
      error: {
        code: 'usage',
        message: 'migrate needs --src (or --libvirt URI --domain NAME --to DEST_URI)',
        exitCode: 2,
      },
    });

    const dst = await fakeQemu(destinationScript());
    const unreachable = await kvmigrateAsync([
      'migrate',
      '--src',
      '/nonexistent/src.qmp',
      '--dst',
      dst.path,
      '--uri',
      'tcp:127.0.0.1:1',
      '--json',
    ]);
    expect(unreachable.code, unreachable.stderr).toBe(EXIT.usage);
    expect(JSON.parse(unreachable.stdout).error).toMatchObject({ code: 'qmp-unreachable', exitCode: 2 });
    expect(dst.received).toEqual([]);
  });

  it('3: post-copy lost on migrate, and recover that cannot tell where the guest is', async () => {
    // The destination dies during post-copy: neither side holds all of the guest's memory.
    const dst = await fakeQemu(destinationScript(512 * MiB, 'postcopy-active'));
    const src = await fakeQemu(sourceScript('postcopy-lost', 512 * MiB, () => dst.kill()));
    const r = await kvmigrateAsync(
      migrateArgs(src, dst, '--policy', 'postcopy-after', '--policy-opt', 'pass=0', '--json'),
    );
    expect(r.code, r.stderr + r.stdout).toBe(EXIT.operatorNeeded);
    expect(JSON.parse(r.stdout)).toMatchObject({ guestRunsOn: 'none' });
    expect(src.received).not.toContain('cont');
    expect(src.received).not.toContain('migrate_cancel');

    // recover: the source is in post-copy and then its monitor goes away; the destination's
    // socket accepts but never answers (a hung QEMU, not a gone one).
    let asked = 0;
    const rsrc = await fakeQemu((cmd) => {
      if (cmd === 'query-status') return { return: { status: 'postmigrate', running: false } };
      if (cmd === 'query-migrate') return ++asked > 3 ? 'close' : { return: { status: 'postcopy-active' } };
      return undefined;
    });
    const rdst = await fakeQemu(() => undefined, false);
    const rec = await kvmigrateAsync(['recover', '--src', rsrc.path, '--dst', rdst.path]);
    expect(rec.code, rec.stderr).toBe(EXIT.operatorNeeded);
    expect(rec.stdout).toMatch(/guest runs on: none — the operator decides/);
    expect(rsrc.received).not.toContain('cont');
  });

  it('3: recover with the source completed and the destination not answering resumes nothing', async () => {
    const src = await fakeQemu((cmd) => {
      if (cmd === 'query-status') return { return: { status: 'postmigrate', running: false } };
      if (cmd === 'query-migrate') return { return: { status: 'completed' } };
      return undefined;
    });
    const dst = await fakeQemu(() => undefined, false);
    const r = await kvmigrateAsync(['recover', '--src', src.path, '--dst', dst.path, '--json']);
    expect(r.code, r.stderr).toBe(EXIT.operatorNeeded);
    expect(JSON.parse(r.stdout)).toMatchObject({ running: 'none' });
    expect(src.received).not.toContain('cont');
  });

  it('4: an unexpected error, one line; a short stack only with --debug', async () => {
    // A reply kvmigrate cannot make sense of (a status that is not a string) is nothing the
    // operator did wrong: it is reported as an internal error.
    const src = await fakeQemu((cmd) =>
      cmd === 'query-migrate' ? { return: { status: 42 } } : sourceScript('never')(cmd, undefined, src),
    );
    const dst = await fakeQemu(destinationScript());
    const r = await kvmigrateAsync(migrateArgs(src, dst));
    expect(r.code, r.stderr).toBe(EXIT.internal);
    expect(r.stderr.split('\n'), r.stderr).toHaveLength(1);
    expect(r.stderr).toMatch(/^kvmigrate: internal error: .*\(run with --debug for where\)$/);
    const d = await kvmigrateAsync(['--debug', ...migrateArgs(src, dst)]);
    expect(d.code, d.stderr).toBe(EXIT.internal);
    const frames = d.stderr.split('\n').filter((l) => /^\s+at /.test(l));
    expect(frames.length).toBeGreaterThan(0);
    expect(frames.length).toBeLessThanOrEqual(8);
  });
});

describe('migrate flags are checked together, before anything is touched (exit 2)', () => {
  const cases: [string[], RegExp][] = [
    [['--on-deadline', 'postcopy'], /^kvmigrate: --on-deadline postcopy needs --allow-postcopy/],
    [
      ['--on-deadline', 'postcopy', '--allow-postcopy', '--policy', 'frs'],
      /policy frs does not turn post-copy on/,
    ],
    [['--deadline', '60', '--completion-timeout-per-gib', '2'], /both set the deadline: give one/],
    [['--deadline', '9999999'], /--deadline 9999999: at most 604800 s/],
    [['--bandwidth', '100'], /bad --bandwidth '100': give a unit/],
    [['--bandwidth', '0mbit'], /bad --bandwidth '0mbit': must be at least 1 byte\/s/],
    [['--bandwidth', '5mbps'], /write 'mbit' for megabits or 'M' for megabytes/],
    [['--postcopy-bandwidth', '1gbit'], /--postcopy-bandwidth: policy stock never post-copies here/],
    [
      ['--switch-at-pass', '3', '--policy', 'frs'],
      /--switch-at-pass is the policy switch-at-pass: drop --policy frs/,
    ],
    [['--downtime-budget', '3000000'], /downtime-limit goes up to 2000000 ms/],
  ];
  it.each(cases)('%j', async (flags, pattern) => {
    const src = await fakeQemu(sourceScript('complete'));
    const dst = await fakeQemu(destinationScript());
    const r = await kvmigrateAsync(migrateArgs(src, dst, ...flags));
    expectOneLineError(r, pattern);
    expect(r.code, r.stderr).toBe(EXIT.usage);
    expect(src.connections + dst.connections).toBe(0);
  });

  it('--policy mp without a region source says it runs as frs, once both monitors answer', async () => {
    // Refused before connecting: the refusal is the only line (no region warning before it).
    const refused = await kvmigrateAsync([
      'migrate', '--src', '/nonexistent/s.qmp', '--dst', '/nonexistent/d.qmp',
      '--uri', 'tcp:127.0.0.1:1', '--policy', 'mp',
    ]); // prettier-ignore
    expectOneLineError(refused, /nonexistent\/s\.qmp/);
    expect(refused.code, refused.stderr).toBe(EXIT.usage);
    // The peers answer, but the process behind the source socket is no QEMU (this test's fake):
    // no region sets, said once, and mp runs as frs.
    const src = await fakeQemu(sourceScript('complete', 512 * 2 ** 20));
    const dst = await fakeQemu(destinationScript(512 * 2 ** 20));
    const r = await kvmigrateAsync(migrateArgs(src, dst, '--policy', 'mp'));
    expect(r.stderr).toMatch(/kvmigrate: policy mp wants per-region dirty sets.*mp runs as frs/);
    expect(r.stderr.match(/wants per-region dirty sets/g)).toHaveLength(1);
  });

  it('the default deadline scales with RAM and bandwidth; per GiB and --deadline override it', async () => {
    const ram = 64 * 2 ** 30; // the fake says 64 GiB; nothing is allocated
    const run = async (...flags: string[]) => {
      const src = await fakeQemu(sourceScript('complete', ram));
      const dst = await fakeQemu(destinationScript(ram));
      const r = await kvmigrateAsync(migrateArgs(src, dst, '--json', ...flags));
      expect(r.code, r.stderr).toBe(EXIT.ok);
      return JSON.parse(r.stdout).deadlineMs as number;
    };
    // QEMU's max-bandwidth (128 MiB/s, from the fake): 60 s + 3 × 512 s.
    expect(await run()).toBe(1596_000);
    // At what QEMU is allowed to send under a 10 Gbit/s wire cap.
    expect(await run('--bandwidth', '10gbit')).toBe(
      resolveDeadline({ ramBytes: ram, bandwidthBps: qemuRateForWireCap(10e9 / 8) }).ms,
    );
    expect(await run('--completion-timeout-per-gib', '2')).toBe(128_000);
    expect(await run('--deadline', '45')).toBe(45_000);
  });
});
