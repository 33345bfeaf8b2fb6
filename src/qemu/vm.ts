import { spawn, type ChildProcess } from 'node:child_process';
import { chmodSync, existsSync, openSync, closeSync, readFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { QmpClient } from '../qmp/index.js';
import { LabError } from '../util/errors.js';
import { qemuBinary } from './binary.js';

/** Everything needed to start one QEMU; source and destination differ only in `incoming`, `netns` and paths. */
export interface VmSpec {
  /** Shows in `ps` as -name; `lab clean` finds our leftovers by its prefix. */
  name: string;
  ramMiB: number;
  vcpus: number;
  accel: 'tcg' | 'kvm';
  kernel: string;
  initrd: string;
  append: string;
  qmpSocket: string;
  serialSocket: string;
  serialLog: string;
  stderrLog: string;
  /** Destination: wait for `migrate-incoming` (capabilities can be set first). */
  incoming?: 'defer';
  /** Start paused (-S): on a destination, stays paused after the migration until `cont`. */
  startPaused?: boolean;
  /** Run inside this network namespace (`ip netns exec`). */
  netns?: string;
}

export function buildQemuArgv(spec: VmSpec): string[] {
  const args = [
    '-name', spec.name,
    '-machine', 'pc',
    '-accel', spec.accel,
    '-m', String(spec.ramMiB),
    '-smp', String(spec.vcpus),
    '-nodefaults', '-no-user-config', '-display', 'none',
    '-kernel', spec.kernel,
    '-initrd', spec.initrd,
    '-append', spec.append,
    '-chardev', `socket,id=ser0,path=${spec.serialSocket},server=on,wait=off,logfile=${spec.serialLog}`,
    '-serial', 'chardev:ser0',
    '-qmp', `unix:${spec.qmpSocket},server=on,wait=off`,
  ]; // prettier-ignore
  if (spec.startPaused) args.push('-S');
  if (spec.incoming) args.push('-incoming', spec.incoming);
  return args;
}

/** A running QEMU we started: its PID, its QMP connection, and teardown by PID. */
export class QemuVm {
  private exitCode: number | null | undefined;
  readonly exited: Promise<void>;

  private constructor(
    readonly spec: VmSpec,
    private readonly child: ChildProcess,
    private client: QmpClient,
  ) {
    this.exited = new Promise((resolve) => {
      if (child.exitCode !== null) resolve();
      child.once('exit', (code) => {
        this.exitCode = code;
        resolve();
      });
    });
  }

  get qmp(): QmpClient {
    return this.client;
  }

  /** Closes our QMP connection so another client (QEMU serves one at a time) can take over. */
  releaseQmp(): void {
    this.client.close();
  }

  async reconnectQmp(): Promise<void> {
    this.client.close();
    this.client = await QmpClient.connect(this.spec.qmpSocket, { timeoutMs: 5000 });
  }

  get pid(): number {
    return this.child.pid!;
  }

  get alive(): boolean {
    return this.exitCode === undefined && this.child.exitCode === null && this.child.signalCode === null;
  }

  static async launch(spec: VmSpec, opts: { readyTimeoutMs?: number } = {}): Promise<QemuVm> {
    const argv = buildQemuArgv(spec);
    const [cmd, args] = spec.netns
      ? ['ip', ['netns', 'exec', spec.netns, qemuBinary(), ...argv]]
      : [qemuBinary(), argv];
    const errFd = openSync(spec.stderrLog, 'a');
    let child: ChildProcess;
    try {
      child = spawn(cmd, args as string[], { stdio: ['ignore', errFd, errFd] });
    } finally {
      closeSync(errFd);
    }
    let spawnError: Error | undefined;
    child.once('error', (e) => (spawnError = e));
    const deadline = performance.now() + (opts.readyTimeoutMs ?? 20_000);
    // `ip netns exec` execs QEMU in place, so child.pid is QEMU's own PID either way.
    for (;;) {
      if (spawnError) throw new LabError(`cannot start ${cmd}: ${spawnError.message}`);
      if (child.exitCode !== null || child.signalCode !== null) {
        throw new LabError(`QEMU (${spec.name}) exited at start: ${lastLine(spec.stderrLog)}`);
      }
      if (existsSync(spec.qmpSocket)) {
        try {
          chmodSync(spec.qmpSocket, 0o600);
          const qmp = await QmpClient.connect(spec.qmpSocket, { timeoutMs: 5000 });
          return new QemuVm(spec, child, qmp);
        } catch {
          /* not listening yet */
        }
      }
      if (performance.now() > deadline) {
        child.kill('SIGKILL');
        throw new LabError(
          `QEMU (${spec.name}) did not open its QMP socket in time: ${lastLine(spec.stderrLog)}`,
        );
      }
      await sleep(20);
    }
  }

  /** Stops QEMU: `quit` over QMP, then SIGTERM, then SIGKILL; waits for the process to be gone. */
  async destroy(): Promise<void> {
    if (this.alive) {
      if (this.client.isClosed) await this.reconnectQmp().catch(() => undefined);
      await this.client.execute('quit', undefined, { timeoutMs: 1000 }).catch(() => undefined);
      if (!(await waitFor(this.exited, 2000))) this.child.kill('SIGTERM');
      if (!(await waitFor(this.exited, 2000))) this.child.kill('SIGKILL');
      await this.exited;
    }
    this.client.close();
  }

  kill(signal: NodeJS.Signals = 'SIGKILL'): void {
    this.child.kill(signal);
  }
}

async function waitFor(p: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<boolean>((r) => (timer = setTimeout(() => r(false), ms)));
  const done = await Promise.race([p.then(() => true), timeout]);
  clearTimeout(timer);
  return done;
}

function lastLine(file: string): string {
  try {
    const lines = readFileSync(file, 'utf8').trim().split('\n');
    return lines.at(-1)?.replace(/^qemu-system-x86_64: /, '') || 'no error output';
  } catch {
    return 'no error output';
  }
}
