import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { findLeftovers } from '../../src/lab/clean.js';

function kvmigrate(args: string[], env: Record<string, string> = {}) {
  const r = spawnSync('node', ['bin/kvmigrate.js', ...args], {
    encoding: 'utf8',
    env: { ...process.env, ...env },
    timeout: 120_000,
  });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr.trim() };
}

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
    expect(r.code).toBe(2);
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
        /cannot read trace .*ENOENT/,
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
    const server = net.createServer();
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const port = (server.address() as net.AddressInfo).port;
    try {
      const r = await new Promise<ReturnType<typeof kvmigrate>>((resolve) =>
        // Run asynchronously so this process keeps serving the port.
        setImmediate(() =>
          resolve(
            kvmigrate([
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
            ]),
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
    expect(left.qemuPids).toEqual([]);
  });
});
