import { closeSync, openSync, readdirSync, readFileSync, readlinkSync, realpathSync } from 'node:fs';
import path from 'node:path';
import { KvmigrateError } from '../util/errors.js';
import type { RamRange } from './guest-ram.js';

/**
 * Finding the source QEMU process on this host, so that its guest RAM can be sampled through
 * /proc/PID/mem (region-level dirty sets for mp outside the lab). Linux only, and only what /proc
 * lets this user see (root sees every process). Two ways in:
 * - a unix QMP socket: the process that listens on it (its inode in /proc/PID/net/unix, read in
 *   every network namespace a QEMU runs in, then `socket:[inode]` among /proc/PID/fd);
 * - a libvirt domain: the QEMU whose argv carries `-name guest=NAME,…` (libvirt's own naming);
 *   exactly one such process, or none is chosen.
 * Nothing here writes anything or talks to QEMU.
 */

/** Why the source QEMU (or its RAM) cannot be found: one line for the run's notes. */
export class QemuPidError extends KvmigrateError {
  override readonly code: string = 'qemu-pid';
}

const PROC = '/proc';
/** /proc/net/unix flag of a listening socket (__SO_ACCEPTCON). */
const SO_ACCEPTCON = 0x10000;
const MAX_PROC_FILE = 1 << 22;

/** Every PID /proc lists. */
export function allPids(): number[] {
  return readdirSync(PROC)
    .filter((d) => /^\d+$/.test(d))
    .map(Number);
}

/** A process's argv, or undefined if it is gone or hidden. */
export function processArgv(pid: number): string[] | undefined {
  try {
    const raw = readFileSync(`${PROC}/${pid}/cmdline`, 'utf8').slice(0, 1 << 20);
    return raw ? raw.replace(/\0$/, '').split('\0') : undefined;
  } catch {
    return undefined;
  }
}

const QEMU_NAME = /^(qemu-system-[\w-]+|qemu-kvm|kvm)$/;

/** Does this process look like QEMU (its argv[0], or the binary it runs)? */
export function isQemuProcess(pid: number): boolean {
  const argv0 = processArgv(pid)?.[0];
  if (argv0 && QEMU_NAME.test(path.basename(argv0))) return true;
  try {
    return QEMU_NAME.test(path.basename(readlinkSync(`${PROC}/${pid}/exe`).replace(/ \(deleted\)$/, '')));
  } catch {
    return false;
  }
}

/** The listening sockets of one /proc/…/net/unix table: inode → bound path (as bound, maybe relative). */
export function listeningUnixSockets(table: string): Map<number, string> {
  const out = new Map<number, string>();
  for (const line of table.split('\n').slice(1)) {
    // Num: RefCount Protocol Flags Type St Inode [Path] — the path may hold spaces.
    const m =
      /^\s*[0-9a-f]+:\s+[0-9a-f]+\s+[0-9a-f]+\s+([0-9a-f]+)\s+[0-9a-f]+\s+[0-9a-f]+\s+(\d+)\s?(.*)$/i.exec(
        line,
      );
    if (!m || !m[3] || m[3].startsWith('@')) continue;
    if ((parseInt(m[1]!, 16) & SO_ACCEPTCON) === 0) continue;
    out.set(Number(m[2]), m[3]);
  }
  return out;
}

/** A path with its directory's symlinks resolved (the socket itself is not followed). */
function canonical(p: string): string {
  const abs = path.resolve(p);
  try {
    return path.join(realpathSync(path.dirname(abs)), path.basename(abs));
  } catch {
    return abs;
  }
}

function readSmall(file: string): string | undefined {
  try {
    return readFileSync(file, 'utf8').slice(0, MAX_PROC_FILE);
  } catch {
    return undefined;
  }
}

function link(file: string): string | undefined {
  try {
    return readlinkSync(file);
  } catch {
    return undefined;
  }
}

/** The inodes of a process's open sockets; undefined when /proc does not let us look. */
function socketInodes(pid: number): Set<number> | undefined {
  let fds: string[];
  try {
    fds = readdirSync(`${PROC}/${pid}/fd`);
  } catch {
    return undefined;
  }
  const out = new Set<number>();
  for (const fd of fds) {
    const m = /^socket:\[(\d+)\]$/.exec(link(`${PROC}/${pid}/fd/${fd}`) ?? '');
    if (m) out.add(Number(m[1]));
  }
  return out;
}

export interface ListenerSearch {
  /** PIDs holding a listening socket bound at the path. */
  pids: number[];
  /** Candidates whose open files this user may not list (not root, another user's process). */
  hidden: number[];
}

/**
 * The processes among `candidates` (default: all) that listen on the unix socket at
 * `socketPath`. Each candidate's own network namespace is searched (/proc/PID/net/unix lists
 * only the sockets of the namespace the process is in), and a path bound relative to the
 * process's working directory is resolved against it.
 */
export function unixSocketListeners(socketPath: string, candidates: number[] = allPids()): ListenerSearch {
  const want = canonical(socketPath);
  const tables = new Map<string, Map<number, string>>();
  const pids: number[] = [];
  const hidden: number[] = [];
  for (const pid of candidates) {
    const ns = link(`${PROC}/${pid}/ns/net`) ?? `pid:${pid}`;
    let table = tables.get(ns);
    if (!table) {
      table = listeningUnixSockets(readSmall(`${PROC}/${pid}/net/unix`) ?? '');
      tables.set(ns, table);
    }
    if (table.size === 0) continue;
    const inodes = socketInodes(pid);
    if (!inodes) {
      hidden.push(pid);
      continue;
    }
    for (const inode of inodes) {
      const bound = table.get(inode);
      if (bound === undefined) continue;
      const full = path.isAbsolute(bound) ? bound : path.resolve(link(`${PROC}/${pid}/cwd`) ?? '/', bound);
      if (canonical(full) === want) {
        pids.push(pid);
        break;
      }
    }
  }
  return { pids, hidden };
}

/**
 * The QEMU listening on a unix QMP socket. Throws QemuPidError saying why not (nothing listens
 * there that we can see, it is not QEMU, or /proc hides it from this user).
 */
export function qemuPidForQmpSocket(socketPath: string): number {
  const all = allPids();
  const qemus = all.filter((p) => p !== process.pid && isQemuProcess(p));
  const found = unixSocketListeners(socketPath, qemus);
  if (found.pids.length === 1) return found.pids[0]!;
  if (found.pids.length > 1)
    throw new QemuPidError(`several QEMU processes (${found.pids.join(', ')}) listen on ${socketPath}`);
  const other = unixSocketListeners(
    socketPath,
    all.filter((p) => !qemus.includes(p)),
  ).pids;
  if (other.length)
    throw new QemuPidError(
      `${socketPath} is held by PID ${other.join(', ')} (${path.basename(processArgv(other[0]!)?.[0] ?? '?')}), not a QEMU process`,
    );
  if (found.hidden.length)
    throw new QemuPidError(
      `cannot see which process listens on ${socketPath}: /proc hides the open files of QEMU ${found.hidden.join(', ')} from this user (run as root or as QEMU's user)`,
    );
  throw new QemuPidError(`no QEMU process on this host listens on ${socketPath}`);
}

/** QEMU processes started for libvirt domain `name` (`-name guest=NAME,…`, as libvirt writes it). */
export function qemuPidsForDomain(name: string): number[] {
  // libvirt doubles commas inside option values.
  const value = `guest=${name.replaceAll(',', ',,')},`;
  return allPids().filter((pid) => {
    const argv = processArgv(pid);
    if (!argv || !isQemuProcess(pid)) return false;
    const i = argv.indexOf('-name');
    return i >= 0 && (argv[i + 1] ?? '').startsWith(value);
  });
}

/** The one QEMU of libvirt domain `name` on this host; throws when there is none or more than one. */
export function qemuPidForDomain(name: string): number {
  const pids = qemuPidsForDomain(name);
  if (pids.length === 1) return pids[0]!;
  throw new QemuPidError(
    pids.length === 0
      ? `no QEMU process for domain '${name}' on this host`
      : `${pids.length} QEMU processes (${pids.join(', ')}) run domain '${name}' on this host (source and destination both here?): cannot tell which is the source; give --qemu-pid`,
  );
}

/** The PID given with --qemu-pid, checked: a live QEMU process. */
export function checkQemuPid(pid: number): number {
  if (!Number.isInteger(pid) || pid < 1) throw new QemuPidError(`--qemu-pid ${pid}: not a PID`);
  if (processArgv(pid) === undefined) throw new QemuPidError(`--qemu-pid ${pid}: no such process`);
  if (!isQemuProcess(pid)) throw new QemuPidError(`--qemu-pid ${pid}: not a QEMU process`);
  return pid;
}

interface Mapping {
  start: number;
  end: number;
  perms: string;
  name: string;
}

/** /proc/PID/maps lines as address ranges. */
export function parseMaps(text: string): Mapping[] {
  const out: Mapping[] = [];
  for (const line of text.split('\n')) {
    const m = /^([0-9a-f]+)-([0-9a-f]+)\s+(\S+)\s+\S+\s+\S+\s+\d+\s*(.*)$/i.exec(line);
    if (!m) continue;
    out.push({
      start: Number(BigInt(`0x${m[1]}`)),
      end: Number(BigInt(`0x${m[2]}`)),
      perms: m[3]!,
      name: m[4]!,
    });
  }
  return out;
}

/**
 * Where guest RAM sits in a QEMU process, from its address map alone (no monitor command: the
 * libvirt driver never talks to QEMU behind libvirt's back): the one readable, writable mapping
 * exactly the size of the guest's RAM (QEMU maps its main RAM block as one area, with a guard page
 * after it; a memfd-backed one shows as /memfd:…, and is the one when several fit).
 */
export function guestRamFromMaps(maps: string, ramBytes: number): RamRange[] {
  let fits = parseMaps(maps).filter((m) => m.perms.startsWith('rw') && m.end - m.start === ramBytes);
  // A memfd-backed guest (libvirt's <memoryBacking><source type='memfd'/>, the lab's domains):
  // its one memfd mapping of that size is the RAM, whatever else happens to be as large.
  const memfd = fits.filter((m) => m.name.startsWith('/memfd:'));
  if (fits.length > 1 && memfd.length === 1) fits = memfd;
  if (fits.length !== 1)
    throw new QemuPidError(
      fits.length === 0
        ? `no mapping of ${ramBytes} bytes (the guest's RAM) in the QEMU process`
        : `${fits.length} mappings of ${ramBytes} bytes in the QEMU process: cannot tell which is the guest's RAM`,
    );
  return [{ gpa: 0, hva: fits[0]!.start, length: ramBytes }];
}

/** Each range lies inside readable, writable mappings of the process (a cross-check of the PID). */
export function rangesMapped(maps: string, ranges: RamRange[]): boolean {
  const rw = parseMaps(maps).filter((m) => m.perms.startsWith('rw'));
  return ranges.every((r) => {
    let at = r.hva;
    const end = r.hva + r.length;
    while (at < end) {
      const m = rw.find((x) => x.start <= at && at < x.end);
      if (!m) return false;
      at = m.end;
    }
    return true;
  });
}

/** /proc/PID/maps, or why it cannot be read. */
export function readMaps(pid: number): string {
  try {
    return readFileSync(`${PROC}/${pid}/maps`, 'utf8');
  } catch (err) {
    throw new QemuPidError(`cannot read QEMU ${pid}'s address map: ${(err as NodeJS.ErrnoException).code}`);
  }
}

/** Throws unless this user may read the process's memory (root, or ptrace rights over it). */
export function checkMemReadable(pid: number): void {
  try {
    closeSync(openSync(`${PROC}/${pid}/mem`, 'r'));
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new QemuPidError(
      `cannot read QEMU ${pid}'s memory (/proc/${pid}/mem: ${code}${code === 'EACCES' || code === 'EPERM' ? '; run as root' : ''})`,
    );
  }
}
