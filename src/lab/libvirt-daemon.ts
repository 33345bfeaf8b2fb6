import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import {
  existsSync,
  mkdirSync,
  openSync,
  closeSync,
  readdirSync,
  readFileSync,
  writeFileSync,
} from 'node:fs';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';
import { LibvirtClient } from '../libvirt/index.js';
import { LabError } from '../util/errors.js';

/** The directories a lab daemon gets its own copy of (bind-mounted over the host's in its mount namespace). */
export const LIBVIRT_DIRS = {
  etc: '/etc/libvirt',
  run: '/run/libvirt',
  lib: '/var/lib/libvirt',
  log: '/var/log/libvirt',
  cache: '/var/cache/libvirt',
} as const;

/**
 * qemu.conf for TCG test domains (see shared/design/qemu-facts.md, libvirt section). No seccomp
 * sandbox: the QMP lab's QEMU runs without one, and the two labs should run the same VM.
 */
const QEMU_CONF = `# kvmigrate lab: TCG guests run as root without confinement or cgroups
user = "root"
group = "root"
security_driver = "none"
cgroup_controllers = [ ]
seccomp_sandbox = 0
stdio_handler = "file"
dynamic_ownership = 0
remember_owner = 0
`;

export interface LabDaemonSpec {
  /** kvmm-<id>-src / kvmm-<id>-dst: hostname, config file name and what `lab clean` looks for. */
  name: string;
  /** Host directory holding this daemon's etc/run/lib/log/cache. */
  root: string;
  /** Network namespace to run in; undefined = the host's. */
  netns?: string;
}

/**
 * One libvirtd of the lab, in its own mount and UTS namespace (and network namespace when
 * given): its own /etc/libvirt, /run/libvirt, /var/lib/libvirt, /var/log/libvirt and
 * /var/cache/libvirt bind-mounted from `root`, its own hostname and host UUID, so two of them on
 * one machine are two hosts to libvirt's migration (it refuses one with its own UUID or name).
 */
export class LabDaemon {
  private constructor(
    readonly spec: LabDaemonSpec,
    private readonly child: ChildProcess,
    readonly exited: Promise<void>,
  ) {}

  get pid(): number {
    return this.child.pid!;
  }
  get alive(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null;
  }
  /** The daemon's socket as seen from the host (the bind mount's source). */
  get socketPath(): string {
    return path.join(this.spec.root, 'run', 'libvirt-sock');
  }
  get uri(): string {
    return `qemu+unix:///system?socket=${this.socketPath}`;
  }
  /** A path inside the daemon's namespace (e.g. /var/lib/libvirt/qemu/x) as seen from the host. */
  hostPath(inside: string): string {
    for (const [dir, mount] of Object.entries(LIBVIRT_DIRS)) {
      if (inside === mount || inside.startsWith(`${mount}/`)) {
        return path.join(this.spec.root, dir, inside.slice(mount.length));
      }
    }
    return inside;
  }

  static async start(spec: LabDaemonSpec): Promise<LabDaemon> {
    prepareRoot(spec);
    const log = openSync(path.join(spec.root, 'libvirtd.log'), 'a');
    const args = [
      '--mount',
      '--uts',
      '--propagation',
      'private',
      '--',
      'sh',
      '-c',
      NS_SCRIPT,
      'kvmm-libvirtd',
    ];
    args.push(...Object.keys(LIBVIRT_DIRS).map((d) => path.join(spec.root, d)), spec.name);
    // In its own process group: a Ctrl-C at the terminal reaches kvmigrate, which aborts the
    // migration through the daemon and then stops it, rather than the daemon dying mid-job.
    const options = { stdio: ['ignore', log, log] as ['ignore', number, number], detached: true };
    const child = spec.netns
      ? spawn('ip', ['netns', 'exec', spec.netns, 'unshare', ...args], options)
      : spawn('unshare', args, options);
    closeSync(log);
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    child.once('error', () => undefined);
    const daemon = new LabDaemon(spec, child, exited);
    try {
      await daemon.waitReady(20_000);
    } catch (err) {
      await daemon.stop();
      throw err;
    }
    return daemon;
  }

  private async waitReady(timeoutMs: number): Promise<void> {
    const deadline = performance.now() + timeoutMs;
    for (;;) {
      if (!this.alive) throw new LabError(`libvirtd ${this.spec.name} exited at start: ${this.logTail()}`);
      if (existsSync(this.socketPath)) {
        const c = await LibvirtClient.open(this.uri).catch(() => undefined);
        if (c) {
          await c.close();
          return;
        }
      }
      if (performance.now() > deadline)
        throw new LabError(
          `libvirtd ${this.spec.name} did not come up in ${timeoutMs / 1000} s: ${this.logTail()}`,
        );
      await sleep(50);
    }
  }

  /**
   * Makes the daemon probe QEMU now (`virsh domcapabilities`, which fills its capability cache)
   * instead of at its first domain start. A new daemon probes the binary on first use (~3–5 s of
   * several QEMU processes on this host); on the destination that first use is the Prepare phase
   * of the first migration, whose window and CPU the probe would share with the guest. Returns
   * the time taken, ms; a failure is left to the first domain start to report.
   */
  async probeQemu(emulator: string): Promise<number | undefined> {
    const t0 = performance.now();
    try {
      await promisify(execFile)(
        'virsh',
        ['-q', '-c', this.uri, 'domcapabilities', '--virttype', 'qemu', '--emulatorbin', emulator],
        { timeout: 60_000 },
      );
      return performance.now() - t0;
    } catch {
      return undefined;
    }
  }

  /** PIDs of the QEMU processes this daemon runs (from its pidfiles), live ones only. */
  qemuPids(): number[] {
    const dir = path.join(this.spec.root, 'run', 'qemu');
    if (!existsSync(dir)) return [];
    return readdirSync(dir)
      .filter((f) => f.endsWith('.pid') && f !== 'driver.pid')
      .map((f) => Number(readFileSync(path.join(dir, f), 'utf8').trim()))
      .filter((pid) => Number.isInteger(pid) && pid > 1 && isQemu(pid));
  }

  /**
   * Kills this daemon's QEMUs and then the daemon, by PID. (Its QEMU capability cache is not kept
   * for the next lab: libvirt 11.3 finds it outdated in a new daemon anyway, "host cpuid changed",
   * and probes again, ~3–5 s on the first domain start.)
   */
  async stop(): Promise<void> {
    const qemus = this.qemuPids();
    for (const pid of qemus) killQuietly(pid, 'SIGKILL');
    for (let i = 0; i < 250 && qemus.some(isQemu); i++) await sleep(20);
    if (this.alive) {
      this.child.kill('SIGTERM');
      const t = setTimeout(() => this.child.kill('SIGKILL'), 5000);
      await this.exited;
      clearTimeout(t);
    }
  }

  logTail(): string {
    try {
      const lines = readFileSync(path.join(this.spec.root, 'libvirtd.log'), 'utf8').trim().split('\n');
      return (
        lines
          .filter((l) => /error/.test(l) && !/dmidecode|SMBIOS/.test(l))
          .slice(-2)
          .join(' | ') || 'no error logged'
      );
    } catch {
      return 'no log';
    }
  }
}

/**
 * Runs as root inside the new namespaces: bind the daemon's own directories over the host's,
 * take its own hostname, then become libvirtd ("$7" names its config, so `ps` shows the lab).
 */
const NS_SCRIPT = `set -e
mount --bind "$1" /etc/libvirt
mount --bind "$2" /run/libvirt
mount --bind "$3" /var/lib/libvirt
mount --bind "$4" /var/log/libvirt
mount --bind "$5" /var/cache/libvirt
hostname "$6"
exec libvirtd -f "/etc/libvirt/$6.conf" -p /run/libvirt/libvirtd.pid`;

function prepareRoot(spec: LabDaemonSpec): void {
  for (const dir of Object.keys(LIBVIRT_DIRS)) mkdirSync(path.join(spec.root, dir), { recursive: true });
  // Mount points must exist on the host; the packages make all but /run/libvirt (made at boot by systemd).
  for (const mount of Object.values(LIBVIRT_DIRS)) mkdirSync(mount, { recursive: true });
  mkdirSync(path.join(spec.root, 'log', 'qemu'), { recursive: true });
  mkdirSync(path.join(spec.root, 'lib', 'qemu'), { recursive: true });
  writeFileSync(
    path.join(spec.root, 'etc', `${spec.name}.conf`),
    [
      `host_uuid = "${randomUUID()}"`,
      // Only root reaches the socket (0700); no TCP listener, no auth dance.
      'auth_unix_rw = "none"',
      'auth_unix_ro = "none"',
      'unix_sock_rw_perms = "0700"',
      'log_outputs = "3:stderr"',
      '',
    ].join('\n'),
  );
  writeFileSync(path.join(spec.root, 'etc', 'qemu.conf'), QEMU_CONF);
}

function isQemu(pid: number): boolean {
  try {
    return /qemu-system/.test(readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0')[0] ?? '');
  } catch {
    return false;
  }
}

function killQuietly(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(pid, signal);
  } catch {
    /* already gone */
  }
}
