import { existsSync, lstatSync, readdirSync, readFileSync, realpathSync } from 'node:fs';
import path from 'node:path';
import { run } from '../util/exec.js';
import { LabError } from '../util/errors.js';
import type { CpioEntry } from './cpio.js';

/**
 * The app guest's extra contents: PostgreSQL 15 (server, initdb, pgbench) and memcached from the
 * host's Debian packages, with every shared library they load (found with ldd) and the dynamic
 * loader, the files initdb needs, and a passwd entry for the unprivileged user they run as.
 * Started by guest/app-start.sh; the load's latency streams through guest/appload.c.
 */

export const PG_BIN = '/usr/lib/postgresql/15/bin';
const PG_LIB = '/usr/lib/postgresql/15/lib';
const PG_SHARE = '/usr/share/postgresql/15';
const MEMCACHED = '/usr/bin/memcached';
/** Programs the guest runs, and the server modules initdb loads. */
const PROGRAMS = [`${PG_BIN}/postgres`, `${PG_BIN}/initdb`, `${PG_BIN}/pgbench`, MEMCACHED];
const MODULES = [`${PG_LIB}/plpgsql.so`, `${PG_LIB}/dict_snowball.so`];
const ZONES = ['/usr/share/zoneinfo/UTC', '/usr/share/zoneinfo/Etc/UTC'];

/** The app guest's /init: like the plain one, plus tmpfs mounts, loopback, and the app in the background. */
export const APP_INIT_SCRIPT = `#!/bin/busybox sh
/bin/busybox mount -t proc proc /proc
/bin/busybox mount -t sysfs sys /sys
/bin/busybox mount -t devtmpfs dev /dev
/bin/busybox mkdir -p /dev/shm /tmp /run
/bin/busybox mount -t tmpfs -o mode=1777 tmpfs /dev/shm
/bin/busybox mount -t tmpfs -o mode=1777,size=90% tmpfs /tmp
/bin/busybox --install -s /bin
/bin/busybox ip link set lo up
spec=$(/bin/busybox sed -n 's/.*kvmw=\\([^ ]*\\).*/\\1/p' /proc/cmdline)
/bin/sh /bin/app-start "$spec" </dev/null >/dev/ttyS0 2>&1 &
exec /bin/workload </dev/ttyS0 >/dev/ttyS0 2>&1
`;

const PASSWD = 'root:x:0:0:root:/:/bin/sh\npostgres:x:100:100:app:/tmp:/bin/sh\n';
const GROUP = 'root:x:0:\npostgres:x:100:\n';

/** Shared libraries (and the loader) `file` loads, as ldd names them. */
async function sharedLibraries(file: string): Promise<string[]> {
  const { stdout } = await run('ldd', [file]);
  const libs: string[] = [];
  for (const line of stdout.split('\n')) {
    const m = /=>\s*(\/\S+)/.exec(line) ?? /^\s*(\/\S+)\s+\(/.exec(line);
    if (m) libs.push(m[1]!);
  }
  return libs;
}

function walk(dir: string, skip: (p: string) => boolean): string[] {
  const out: string[] = [];
  for (const name of readdirSync(dir).sort()) {
    const p = path.join(dir, name);
    if (skip(p)) continue;
    const st = lstatSync(p);
    if (st.isDirectory()) out.push(...walk(p, skip));
    else if (st.isFile() || st.isSymbolicLink()) out.push(p);
  }
  return out;
}

/** Missing host packages, in one message, before anything is built. */
export function assertAppPackages(): void {
  const missing = [
    existsSync(`${PG_BIN}/postgres`) && existsSync(`${PG_BIN}/pgbench`) ? undefined : 'postgresql-15',
    existsSync(MEMCACHED) ? undefined : 'memcached',
  ].filter((x): x is string => x !== undefined);
  if (missing.length > 0)
    throw new LabError(
      `the app guest needs ${missing.join(' and ')} on this host: run sudo bash scripts/setup-host.sh`,
    );
}

/**
 * Every file the app guest adds, as cpio entries (files copied by content, symlinks resolved), in
 * a fixed order so the same host packages give the same image.
 */
export async function appGuestEntries(): Promise<CpioEntry[]> {
  assertAppPackages();
  const files = new Set<string>([...PROGRAMS, ...MODULES, ...ZONES]);
  for (const f of [...PROGRAMS, ...MODULES]) for (const lib of await sharedLibraries(f)) files.add(lib);
  for (const f of walk(PG_SHARE, (p) => /\/(man|contrib)$/.test(p))) files.add(f);
  const dirs = new Set<string>();
  const entries: CpioEntry[] = [];
  for (const f of [...files].sort()) {
    if (!existsSync(f)) throw new LabError(`the app guest needs ${f}, which this host does not have`);
    const rel = f.replace(/^\/+/, '');
    const parts = rel.split('/').slice(0, -1);
    for (let i = 1; i <= parts.length; i++) dirs.add(parts.slice(0, i).join('/'));
    const mode = f.includes('/bin/') || /\.so(\.|$)/.test(f) ? 0o755 : 0o644;
    entries.push({ kind: 'file', path: rel, data: readFileSync(realpathSync(f)), mode });
  }
  const dirEntries = [...dirs, 'etc', 'run', 'var', 'var/run']
    .filter((d, i, all) => all.indexOf(d) === i && !['bin', 'dev', 'proc', 'sys', 'tmp'].includes(d))
    .sort()
    .map((d): CpioEntry => ({ kind: 'dir', path: d }));
  return [
    ...dirEntries,
    { kind: 'file', path: 'etc/passwd', data: Buffer.from(PASSWD) },
    { kind: 'file', path: 'etc/group', data: Buffer.from(GROUP) },
    ...entries,
  ];
}
