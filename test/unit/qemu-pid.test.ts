import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import {
  checkMemReadable,
  checkQemuPid,
  guestRamFromMaps,
  isQemuProcess,
  listeningUnixSockets,
  qemuPidForDomain,
  qemuPidForQmpSocket,
  qemuPidsForDomain,
  rangesMapped,
  unixSocketListeners,
} from '../../src/qemu/qemu-pid.js';

// Finding the source QEMU on this host (src/qemu/qemu-pid.ts) against real processes and real
// unix sockets: the test process itself, and children that call themselves qemu-system-x86_64
// (argv[0]) the way QEMU's own argv looks, one listening on a socket bound by a relative path.

const dirs: string[] = [];
const children: ChildProcess[] = [];
const servers: net.Server[] = [];
afterEach(async () => {
  for (const c of children.splice(0)) c.kill('SIGKILL');
  for (const s of servers.splice(0)) await new Promise((r) => s.close(r));
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

function tempDir(): string {
  const d = mkdtempSync(path.join(tmpdir(), 'kvm-pid-'));
  dirs.push(d);
  return d;
}

async function listen(p: string): Promise<net.Server> {
  const s = net.createServer();
  servers.push(s);
  await new Promise<void>((r) => s.listen(p, r));
  return s;
}

/**
 * A process whose argv is QEMU-like (`qemu-system-x86_64 … -name guest=NAME,…`); with `socket`,
 * it listens there (a path relative to `cwd`, as QEMU binds what its command line says).
 */
async function fakeQemu(opts: { cwd: string; socket?: string; name?: string }): Promise<number> {
  const code = opts.socket
    ? `require('net').createServer().listen(${JSON.stringify(opts.socket)}, () => console.log('ready')); setInterval(() => {}, 1e6)`
    : `console.log('ready'); setInterval(() => {}, 1e6)`;
  const args = ['-e', code, '--', '-name', `guest=${opts.name ?? 'none'},debug-threads=on`];
  const child = spawn(process.execPath, args, {
    argv0: 'qemu-system-x86_64',
    cwd: opts.cwd,
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  children.push(child);
  await new Promise<void>((resolve, reject) => {
    child.stdout!.once('data', () => resolve());
    child.once('exit', (c) => reject(new Error(`fake QEMU exited ${c}`)));
  });
  return child.pid!;
}

describe('the process behind a unix socket', () => {
  it('finds the test process listening on a socket it bound', async () => {
    const p = path.join(tempDir(), 'qmp.sock');
    await listen(p);
    expect(unixSocketListeners(p).pids).toEqual([process.pid]);
    expect(unixSocketListeners(p, [process.pid]).pids).toEqual([process.pid]);
    // A connected client does not count as listening.
    expect(unixSocketListeners(path.join(path.dirname(p), 'other.sock')).pids).toEqual([]);
  });

  it('finds a QEMU-like process that bound its socket relative to its working directory', async () => {
    const dir = tempDir();
    const pid = await fakeQemu({ cwd: dir, socket: 'src.qmp' });
    expect(isQemuProcess(pid)).toBe(true);
    expect(qemuPidForQmpSocket(path.join(dir, 'src.qmp'))).toBe(pid);
    // …and through a symlinked directory.
    const link = path.join(tempDir(), 'via');
    (await import('node:fs')).symlinkSync(dir, link);
    expect(qemuPidForQmpSocket(path.join(link, 'src.qmp'))).toBe(pid);
  });

  it('says who holds a socket that is not QEMU, and when nothing listens', async () => {
    const p = path.join(tempDir(), 'qmp.sock');
    await listen(p);
    expect(isQemuProcess(process.pid)).toBe(false);
    expect(() => qemuPidForQmpSocket(p)).toThrow(
      new RegExp(`held by PID ${process.pid} .*not a QEMU process`),
    );
    expect(() => qemuPidForQmpSocket('/nonexistent/src.qmp')).toThrow(
      'no QEMU process on this host listens on /nonexistent/src.qmp',
    );
  });

  it('reads the listening entries of /proc/net/unix, paths with spaces included', () => {
    const table = [
      'Num       RefCount Protocol Flags    Type St Inode Path',
      '0000000000000000: 00000002 00000000 00010000 0001 01 4242 /run/a b.sock',
      '0000000000000000: 00000003 00000000 00000000 0001 03 4243 /run/a b.sock',
      '0000000000000000: 00000002 00000000 00010000 0001 01 4244 @abstract',
      '0000000000000000: 00000002 00000000 00010000 0001 01 4245 rel.qmp',
      '0000000000000000: 00000002 00000000 00000000 0002 01 4246',
    ].join('\n');
    expect([...listeningUnixSockets(table)]).toEqual([
      [4242, '/run/a b.sock'],
      [4245, 'rel.qmp'],
    ]);
  });
});

describe("a libvirt domain's QEMU", () => {
  const name = `kvmm-pid-${process.pid}`;

  it('finds the one QEMU started for the domain, and refuses to choose between two', async () => {
    expect(qemuPidsForDomain(name)).toEqual([]);
    expect(() => qemuPidForDomain(name)).toThrow(`no QEMU process for domain '${name}'`);
    const first = await fakeQemu({ cwd: tempDir(), name });
    expect(qemuPidForDomain(name)).toBe(first);
    // A domain whose name only starts the same is another domain.
    expect(qemuPidsForDomain(name.slice(0, -1))).toEqual([]);
    const second = await fakeQemu({ cwd: tempDir(), name });
    expect(qemuPidsForDomain(name).sort()).toEqual([first, second].sort());
    expect(() => qemuPidForDomain(name)).toThrow(/2 QEMU processes .* cannot tell which is the source/);
  });

  it('matches a name with a comma as libvirt writes it (doubled)', async () => {
    const pid = await fakeQemu({ cwd: tempDir(), name: 'a,,b' });
    expect(qemuPidsForDomain('a,b')).toEqual([pid]);
  });
});

describe('--qemu-pid and access', () => {
  it('accepts a live QEMU and refuses anything else in one line', async () => {
    const pid = await fakeQemu({ cwd: tempDir() });
    expect(checkQemuPid(pid)).toBe(pid);
    expect(() => checkQemuPid(process.pid)).toThrow(`--qemu-pid ${process.pid}: not a QEMU process`);
    expect(() => checkQemuPid(2 ** 22 + 1)).toThrow('no such process');
  });

  it.runIf(process.getuid?.() === 0)('root may read a process memory', () => {
    expect(() => checkMemReadable(process.pid)).not.toThrow();
    expect(() => checkMemReadable(2 ** 22 + 1)).toThrow(/cannot read QEMU .* memory \(.*ENOENT/);
  });
});

describe('guest RAM in the address map', () => {
  const MiB = 2 ** 20;
  const hex = (n: number) => n.toString(16).padStart(12, '0');
  const line = (start: number, len: number, perms: string, name = '') =>
    `${hex(start)}-${hex(start + len)} ${perms} 00000000 00:00 0 ${name}`.trimEnd();
  const base = 0x7f0000000000;
  const maps = [
    line(0x555555554000, 0x1000, 'r--p', '/usr/bin/qemu-system-x86_64'),
    line(base - 2 * MiB, 2 * MiB, 'rw-p'),
    line(base, 512 * MiB, 'rw-p'), // the guest RAM
    line(base + 512 * MiB, 0x1000, '---p'), // QEMU's guard page
    line(base + 600 * MiB, 512 * MiB, 'r--p', '/some/file'), // same size, not writable
  ].join('\n');

  it('is the one writable mapping of the guest size (anonymous or memfd)', () => {
    expect(guestRamFromMaps(maps, 512 * MiB)).toEqual([{ gpa: 0, hva: base, length: 512 * MiB }]);
    const memfd = line(base, 256 * MiB, 'rw-s', '/memfd:pc.ram (deleted)');
    expect(guestRamFromMaps(memfd, 256 * MiB)).toEqual([{ gpa: 0, hva: base, length: 256 * MiB }]);
  });

  it('is refused when no mapping or several fit', () => {
    expect(() => guestRamFromMaps(maps, 1024 * MiB)).toThrow('no mapping of 1073741824 bytes');
    const two = maps + '\n' + line(base + 2048 * MiB, 512 * MiB, 'rw-p');
    expect(() => guestRamFromMaps(two, 512 * MiB)).toThrow(/2 mappings .* cannot tell/);
    // …unless exactly one of them is a memfd (libvirt's memfd-backed domains): that is the RAM.
    const memfd = maps + '\n' + line(base + 2048 * MiB, 512 * MiB, 'rw-s', '/memfd:pc.ram (deleted)');
    expect(guestRamFromMaps(memfd, 512 * MiB)).toEqual([
      { gpa: 0, hva: base + 2048 * MiB, length: 512 * MiB },
    ]);
  });

  it('checks that ranges a monitor named lie in the process', () => {
    expect(rangesMapped(maps, [{ gpa: 0, hva: base, length: 512 * MiB }])).toBe(true);
    expect(rangesMapped(maps, [{ gpa: 0, hva: base - 2 * MiB, length: 514 * MiB }])).toBe(true);
    expect(rangesMapped(maps, [{ gpa: 0, hva: base, length: 513 * MiB }])).toBe(false);
    expect(rangesMapped(maps, [{ gpa: 0, hva: base + 600 * MiB, length: MiB }])).toBe(false);
  });
});
