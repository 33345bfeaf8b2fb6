import { readdirSync, readFileSync, rmSync } from 'node:fs';
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

/** Removes every lab leftover (for after a crash or SIGKILL). Returns what it removed. */
export async function cleanLeftovers(): Promise<Leftovers> {
  const found = await findLeftovers();
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
  return found;
}
