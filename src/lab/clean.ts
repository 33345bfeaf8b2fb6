import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { run, runQuietly } from '../util/exec.js';
import { LAB_PREFIX } from './link.js';

export interface Leftovers {
  qemuPids: number[];
  netns: string[];
  links: string[];
  dirs: string[];
  /** The libvirt lab's daemons (libvirtd -f /etc/libvirt/kvmm-*.conf). */
  libvirtdPids?: number[];
}

/**
 * Finds what labs left behind, by name prefix: QEMU processes named kvmm-* (`-name kvmm-…`, or
 * `-name guest=kvmm-…,…` when libvirt started them), the libvirt lab's libvirtd processes, netns,
 * veth, temp dirs.
 */
export async function findLeftovers(): Promise<Leftovers> {
  const qemuPids: number[] = [];
  const libvirtdPids: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const argv = readFileSync(`/proc/${entry}/cmdline`, 'utf8').split('\0');
      const i = argv.indexOf('-name');
      const name = (argv[i + 1] ?? '').replace(/^guest=/, '');
      if (/qemu-system/.test(argv[0] ?? '') && i >= 0 && name.startsWith(`${LAB_PREFIX}-`))
        qemuPids.push(Number(entry));
      const f = argv.indexOf('-f');
      if (/(^|\/)libvirtd$/.test(argv[0] ?? '') && argv[f + 1]?.startsWith(`/etc/libvirt/${LAB_PREFIX}-`))
        libvirtdPids.push(Number(entry));
    } catch {
      /* gone */
    }
  }
  const netns = (await run('ip', ['netns', 'list']).catch(() => ({ stdout: '' }))).stdout
    .split('\n')
    .map((l) => l.split(' ')[0] ?? '')
    .filter((n) => n.startsWith(`${LAB_PREFIX}-`));
  const links = (await run('ip', ['-o', 'link', 'show']).catch(() => ({ stdout: '' }))).stdout
    .split('\n')
    .map((l) => /^\d+:\s+([^:@]+)/.exec(l)?.[1] ?? '')
    .filter((n) => n.startsWith(LAB_PREFIX));
  const dirs = readdirSync(os.tmpdir())
    .filter((d) => d.startsWith(`${LAB_PREFIX}-`))
    .map((d) => path.join(os.tmpdir(), d));
  return { qemuPids, netns, links, dirs, libvirtdPids };
}

/**
 * What a lab (by id) and its processes (by PID) left behind: one leak check for the fault matrix
 * and the tests. Empty when everything is gone.
 */
export async function leaksOf(labId: string, pids: readonly number[]): Promise<string[]> {
  const left = await findLeftovers();
  const mine = (name: string) => name.includes(labId);
  return [
    ...left.qemuPids.filter((p) => pids.includes(p)).map((p) => `qemu ${p}`),
    ...(left.libvirtdPids ?? []).filter((p) => pids.includes(p)).map((p) => `libvirtd ${p}`),
    ...left.netns.filter(mine).map((n) => `netns ${n}`),
    ...left.links.filter(mine).map((l) => `link ${l}`),
    ...left.dirs.filter(mine).map((d) => `dir ${d}`),
  ];
}

/** The lab id inside a leftover's name: kvmm-<id>-…, kvmm-<id>, kvmm<id>s/d, /etc/libvirt/kvmm-<id>-src.conf. */
export function labIdOf(name: string): string | undefined {
  const base = path.basename(name);
  return (
    new RegExp(`^${LAB_PREFIX}-([0-9a-z]+)(?:-|$)`).exec(base)?.[1] ??
    new RegExp(`^${LAB_PREFIX}([0-9a-z]+)[sd]$`).exec(base)?.[1]
  );
}

/** A process's start time (clock ticks since boot): a PID alone may have been reused. */
function startTime(pid: number): string | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19];
  } catch {
    return undefined;
  }
}

/**
 * Makes a lab's temp dir and records who owns it (this process: PID and start time), so that
 * `lab clean` leaves the labs of running processes alone.
 */
export function makeLabDir(id: string): string {
  const dir = mkdtempSync(path.join(os.tmpdir(), `${LAB_PREFIX}-${id}-`));
  writeFileSync(path.join(dir, 'owner'), `${process.pid} ${startTime(process.pid) ?? ''}\n`, { mode: 0o600 });
  return dir;
}

/** The owner recorded in a lab dir, if it still runs. */
function liveOwner(dir: string): number | undefined {
  try {
    const [pid, started] = readFileSync(path.join(dir, 'owner'), 'utf8').trim().split(' ');
    const n = Number(pid);
    return Number.isInteger(n) && n > 0 && startTime(n) === started ? n : undefined;
  } catch {
    return undefined;
  }
}

/** Leftovers grouped by lab, with the labs whose owner still runs (and so are not leftovers). */
export function splitByOwner(found: Leftovers): { orphaned: Leftovers; inUse: Map<string, number> } {
  const inUse = new Map<string, number>();
  for (const d of found.dirs) {
    const id = labIdOf(d);
    const owner = liveOwner(d);
    if (id && owner !== undefined) inUse.set(id, owner);
  }
  const free = (name: string) => !inUse.has(labIdOf(name) ?? '');
  const qemuName = (pid: number) => {
    try {
      const argv = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
      const i = argv.indexOf('-name');
      const f = argv.indexOf('-f');
      return (i >= 0 ? argv[i + 1] : argv[f + 1])?.replace(/^guest=/, '').split(',')[0] ?? '';
    } catch {
      return '';
    }
  };
  return {
    orphaned: {
      qemuPids: found.qemuPids.filter((p) => free(qemuName(p))),
      libvirtdPids: (found.libvirtdPids ?? []).filter((p) => free(qemuName(p))),
      netns: found.netns.filter(free),
      links: found.links.filter(free),
      dirs: found.dirs.filter(free),
    },
    inUse,
  };
}

/**
 * Removes what labs left behind after a crash or SIGKILL: only labs whose owning process is gone
 * (or, with `all`, every lab's). Returns what it removed and which labs it left because they run.
 */
export async function cleanLeftovers(
  opts: { all?: boolean } = {},
): Promise<Leftovers & { inUse: Map<string, number> }> {
  const everything = await findLeftovers();
  const { orphaned, inUse } = opts.all
    ? { orphaned: everything, inUse: new Map<string, number>() }
    : splitByOwner(everything);
  const found = orphaned;
  for (const pid of [...found.qemuPids, ...(found.libvirtdPids ?? [])]) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      /* already gone */
    }
  }
  for (const l of found.links) await runQuietly('ip', ['link', 'del', l]);
  for (const n of found.netns) await runQuietly('ip', ['netns', 'del', n]);
  for (const d of found.dirs) rmSync(d, { recursive: true, force: true });
  return { ...found, inUse };
}
