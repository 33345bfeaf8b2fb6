import { EventEmitter } from 'node:events';
import net from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { LabError } from '../util/errors.js';

/** The guest workload prints a heartbeat this often (guest/workload.c, HEARTBEAT_NS). */
export const HEARTBEAT_PERIOD_MS = 50;

export interface Heartbeat {
  seq: number;
  writesPerSec: number;
  /** The workload's cumulative page writes (its progress), when the line carries it. */
  writes?: number;
  /** Host time the line arrived (performance.now(), ms). */
  at: number;
}

/**
 * The guest's serial console, read on the host: every line is timestamped as it arrives, so
 * heartbeat gaps measure what the guest felt. Commands (e.g. `check`) are written back to it.
 */
export class SerialConsole extends EventEmitter {
  readonly heartbeats: Heartbeat[] = [];
  /** A real application's requests (`AL` lines) and the guest's clock (`AT` lines): app-latency.ts. */
  readonly app: AppStream = { samples: [], clock: [] };
  readonly lines: { text: string; at: number }[] = [];
  private buffer = '';

  private constructor(private readonly socket: net.Socket) {
    super();
    socket.setEncoding('utf8');
    socket.on('data', (chunk: string) => this.onData(chunk));
    socket.on('error', () => undefined);
  }

  static async connect(path: string, timeoutMs = 5000): Promise<SerialConsole> {
    const deadline = performance.now() + timeoutMs;
    for (;;) {
      try {
        const socket = await new Promise<net.Socket>((resolve, reject) => {
          const s = net.createConnection({ path });
          s.once('connect', () => resolve(s));
          s.once('error', reject);
        });
        return new SerialConsole(socket);
      } catch (err) {
        if (performance.now() > deadline)
          throw new LabError(`cannot open the guest console ${path}: ${(err as Error).message}`);
        await sleep(20);
      }
    }
  }

  private onData(chunk: string): void {
    const at = performance.now();
    this.buffer += chunk;
    let nl: number;
    while ((nl = this.buffer.indexOf('\n')) >= 0) {
      const text = this.buffer.slice(0, nl).replace(/\r$/, '');
      this.buffer = this.buffer.slice(nl + 1);
      this.lines.push({ text, at });
      const hb = /^HB (\d+) (\d+)(?: (\d+))?/.exec(text);
      if (hb) {
        const beat: Heartbeat = {
          seq: Number(hb[1]),
          writesPerSec: Number(hb[2]),
          ...(hb[3] === undefined ? {} : { writes: Number(hb[3]) }),
          at,
        };
        this.heartbeats.push(beat);
        this.emit('heartbeat', beat);
      }
      parseAppLine(text, at, this.app);
      this.emit('line', text, at);
      if (this.lines.length > 20_000) this.lines.splice(0, 10_000);
    }
  }

  /** Waits for a line matching `re` that arrives after this call. */
  waitForLine(re: RegExp, timeoutMs: number, what: string): Promise<string> {
    return new Promise((resolve, reject) => {
      const onLine = (text: string) => {
        if (re.test(text)) {
          cleanup();
          resolve(text);
        }
      };
      const timer = setTimeout(() => {
        cleanup();
        reject(new LabError(`${what}: nothing within ${timeoutMs} ms`));
      }, timeoutMs);
      const cleanup = () => {
        clearTimeout(timer);
        this.off('line', onLine);
      };
      this.on('line', onLine);
    });
  }

  /** Heartbeats that arrive after `since` (host ms). */
  beatsAfter(since: number): Heartbeat[] {
    return this.heartbeats.filter((b) => b.at > since);
  }

  send(command: string): void {
    this.socket.write(command + '\n');
  }

  /** Runs the guest's integrity check; resolves with its verdict line (`CHECK OK …` / `CHECK FAIL …`). */
  async integrityCheck(timeoutMs = 20_000): Promise<{ ok: boolean; line: string }> {
    const wait = this.waitForLine(/^CHECK (OK|FAIL)/, timeoutMs, 'guest integrity check');
    this.send('check');
    const line = await wait;
    return { ok: line.startsWith('CHECK OK'), line };
  }

  close(): void {
    this.socket.destroy();
  }
}

/** One request (or transaction) of a real application in the guest, as guest/appload.c prints it. */
export interface AppSample {
  /** When it completed, guest CLOCK_MONOTONIC, µs. */
  endUs: number;
  /** How long it took by the guest's clock, µs. */
  latUs: number;
  /** Host time the line arrived (performance.now(), ms). */
  at: number;
}

/** A reading of the guest's clock (`AT` line): guest µs against host arrival ms. */
export interface GuestClockTick {
  guestUs: number;
  at: number;
}

export interface AppStream {
  samples: AppSample[];
  clock: GuestClockTick[];
}

/**
 * Parses one console line of the app guest into `into`: `AL <endUs> <latUs>` (a request) or
 * `AT <nowUs>` (the guest's clock). Returns whether the line was one of them.
 */
export function parseAppLine(text: string, at: number, into: AppStream): boolean {
  const al = /^AL (\d+) (\d+)\s*$/.exec(text);
  if (al) {
    into.samples.push({ endUs: Number(al[1]), latUs: Number(al[2]), at });
    return true;
  }
  const t = /^AT (\d+)\s*$/.exec(text);
  if (t) {
    into.clock.push({ guestUs: Number(t[1]), at });
    return true;
  }
  return false;
}

/**
 * The longest gap between consecutive heartbeats within [from, to] (host ms), counting the edges.
 * Migration runs are measured by guestStall() (guest-stall.ts); this stays for the fault matrix.
 */
export function longestGap(beats: Heartbeat[], from: number, to: number): number {
  const times = [from, ...beats.map((b) => b.at).filter((t) => t > from && t < to), to];
  let max = 0;
  for (let i = 1; i < times.length; i++) max = Math.max(max, times[i]! - times[i - 1]!);
  return max;
}
