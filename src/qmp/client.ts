import { EventEmitter } from 'node:events';
import net from 'node:net';
import { QmpConnectionError, QmpError, QmpTimeoutError } from './errors.js';
import { describeTarget, parseQmpTarget, type QmpTarget } from './target.js';

export interface QmpEvent {
  event: string;
  data: Record<string, unknown>;
  /** QEMU's own timestamp of the event, in ms since the epoch. */
  qemuTimeMs: number;
  /** When this process read it (performance.now() clock, ms). */
  receivedAt: number;
}

export interface QmpConnectOptions {
  /** How long to wait for connect + greeting + qmp_capabilities. */
  timeoutMs?: number;
  /** Default per-command timeout. */
  commandTimeoutMs?: number;
}

/** No QMP reply or event we read comes near this; HMP's `info` dumps stay well under it. */
export const MAX_LINE_CHARS = 4 * 2 ** 20;

interface Pending {
  command: string;
  resolve: (value: unknown) => void;
  reject: (err: Error) => void;
  timer: NodeJS.Timeout;
}

/**
 * A QMP client: one socket, commands matched to replies by `id` so any number can be in flight,
 * events delivered to listeners ('event') and to `nextEvent` waiters. Never reconnects: a closed
 * socket fails every pending and future command with QmpConnectionError.
 */
export class QmpClient extends EventEmitter {
  private buffer = '';
  private nextId = 1;
  private readonly pending = new Map<string, Pending>();
  private closedError: Error | undefined;
  readonly greeting: Record<string, unknown>;
  readonly closed: Promise<void>;

  private constructor(
    private readonly socket: net.Socket,
    greeting: Record<string, unknown>,
    leftover: string,
    private readonly commandTimeoutMs: number,
    readonly target: QmpTarget,
  ) {
    super();
    this.greeting = greeting;
    this.closed = new Promise((resolve) => socket.once('close', () => resolve()));
    socket.on('data', (chunk: string) => this.onData(chunk));
    socket.on('error', (err) =>
      this.fail(new QmpConnectionError(`QMP ${describeTarget(target)}: ${err.message}`)),
    );
    socket.on('close', () =>
      this.fail(new QmpConnectionError(`QMP connection to ${describeTarget(target)} closed`)),
    );
    if (leftover) this.onData(leftover);
    socket.resume();
  }

  /** Connects, reads the greeting and negotiates capabilities. */
  static async connect(spec: string | QmpTarget, opts: QmpConnectOptions = {}): Promise<QmpClient> {
    const target = typeof spec === 'string' ? parseQmpTarget(spec) : spec;
    const timeoutMs = opts.timeoutMs ?? 5000;
    const where = describeTarget(target);
    const socket = await openSocket(target, timeoutMs);
    socket.setEncoding('utf8');
    // Until the client owns the socket, an error (a QEMU dying as we connect) must not go unheard:
    // it closes the socket, and the greeting read fails on the close.
    const early = () => undefined;
    socket.on('error', early);
    let greetingLine: { line: string; rest: string };
    try {
      greetingLine = await readLine(socket, timeoutMs);
    } catch (err) {
      socket.destroy();
      throw new QmpConnectionError(
        `${where} did not send a QMP greeting (${(err as Error).message}): is it a QMP socket, and is another client connected to it? QEMU serves one at a time`,
      );
    }
    let greeting: Record<string, unknown>;
    try {
      const parsed = JSON.parse(greetingLine.line) as Record<string, unknown>;
      if (!parsed || typeof parsed !== 'object' || !('QMP' in parsed)) throw new Error('no QMP key');
      greeting = parsed.QMP as Record<string, unknown>;
    } catch {
      socket.destroy();
      throw new QmpConnectionError(
        `${where} is not a QMP socket (unexpected greeting: ${greetingLine.line.slice(0, 60)})`,
      );
    }
    socket.off('error', early);
    const client = new QmpClient(
      socket,
      greeting,
      greetingLine.rest,
      opts.commandTimeoutMs ?? 10_000,
      target,
    );
    try {
      await client.execute('qmp_capabilities', undefined, { timeoutMs });
    } catch (err) {
      client.close();
      throw err;
    }
    return client;
  }

  get isClosed(): boolean {
    return this.closedError !== undefined;
  }

  /** Runs one command; resolves with its `return` value, rejects with QmpError on an error reply. */
  execute<T = unknown>(
    command: string,
    args?: Record<string, unknown>,
    opts: { timeoutMs?: number } = {},
  ): Promise<T> {
    if (this.closedError) return Promise.reject(this.closedError);
    const id = `kvm-${this.nextId++}`;
    const timeoutMs = opts.timeoutMs ?? this.commandTimeoutMs;
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new QmpTimeoutError(command, timeoutMs));
      }, timeoutMs);
      this.pending.set(id, { command, resolve: resolve as (v: unknown) => void, reject, timer });
      const msg = JSON.stringify(args ? { execute: command, arguments: args, id } : { execute: command, id });
      this.socket.write(msg + '\n');
    });
  }

  /** Runs a human-monitor (HMP) command line and returns its text output. */
  hmp(commandLine: string, opts: { timeoutMs?: number } = {}): Promise<string> {
    return this.execute<string>('human-monitor-command', { 'command-line': commandLine }, opts);
  }

  /** Resolves with the next event matching `predicate`; rejects on timeout or close. */
  nextEvent(predicate: (e: QmpEvent) => boolean, timeoutMs: number): Promise<QmpEvent> {
    if (this.closedError) return Promise.reject(this.closedError);
    return new Promise((resolve, reject) => {
      const cleanup = () => {
        clearTimeout(timer);
        this.off('event', onEvent);
        this.off('close-error', onClose);
      };
      const onEvent = (e: QmpEvent) => {
        if (predicate(e)) {
          cleanup();
          resolve(e);
        }
      };
      const onClose = (err: Error) => {
        cleanup();
        reject(err);
      };
      const timer = setTimeout(() => {
        cleanup();
        reject(new QmpConnectionError(`no matching QMP event within ${timeoutMs} ms`));
      }, timeoutMs);
      this.on('event', onEvent);
      this.on('close-error', onClose);
    });
  }

  close(): void {
    this.fail(new QmpConnectionError(`QMP connection to ${describeTarget(this.target)} closed by us`));
    this.socket.destroy();
  }

  private onData(chunk: string): void {
    this.buffer += chunk;
    if (this.buffer.length > MAX_LINE_CHARS && this.buffer.indexOf('\n') < 0) {
      // A peer that never ends its line would grow this buffer without bound.
      this.fail(
        new QmpConnectionError(
          `QMP ${describeTarget(this.target)} sent a line over ${MAX_LINE_CHARS} characters`,
        ),
      );
      this.socket.destroy();
      return;
    }
    let nl: number;
    while ((nl = this.buffer.indexOf('\n')) >= 0) {
      const line = this.buffer.slice(0, nl).trim();
      this.buffer = this.buffer.slice(nl + 1);
      if (line) this.onMessage(line);
    }
  }

  private onMessage(line: string): void {
    let msg: Record<string, unknown>;
    try {
      msg = JSON.parse(line) as Record<string, unknown>;
    } catch {
      this.fail(new QmpConnectionError(`QMP ${describeTarget(this.target)} sent something that is not JSON`));
      this.socket.destroy();
      return;
    }
    if (typeof msg.event === 'string') {
      const ts = msg.timestamp as { seconds?: number; microseconds?: number } | undefined;
      const event: QmpEvent = {
        event: msg.event,
        data: (msg.data as Record<string, unknown>) ?? {},
        qemuTimeMs: (ts?.seconds ?? 0) * 1000 + (ts?.microseconds ?? 0) / 1000,
        receivedAt: performance.now(),
      };
      this.emit('event', event);
      return;
    }
    const id = typeof msg.id === 'string' ? msg.id : undefined;
    const pending = id ? this.pending.get(id) : undefined;
    if (!pending || !id) return; // a reply to a command that already timed out
    this.pending.delete(id);
    clearTimeout(pending.timer);
    if ('error' in msg) {
      const e = msg.error as { class?: string; desc?: string };
      pending.reject(new QmpError(e.class ?? 'GenericError', e.desc ?? 'unknown error', pending.command));
    } else {
      pending.resolve(msg.return);
    }
  }

  private fail(err: Error): void {
    if (this.closedError) return;
    this.closedError = err;
    for (const [id, p] of this.pending) {
      clearTimeout(p.timer);
      p.reject(err);
      this.pending.delete(id);
    }
    this.emit('close-error', err);
  }
}

function openSocket(target: QmpTarget, timeoutMs: number): Promise<net.Socket> {
  const where = describeTarget(target);
  return new Promise((resolve, reject) => {
    const socket =
      target.kind === 'unix' ? net.createConnection({ path: target.path }) : net.createConnection(target);
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new QmpConnectionError(`cannot connect to QMP at ${where}: timed out after ${timeoutMs} ms`));
    }, timeoutMs);
    socket.once('connect', () => {
      clearTimeout(timer);
      socket.removeAllListeners('error');
      resolve(socket);
    });
    socket.once('error', (err: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      const why =
        err.code === 'ENOENT'
          ? 'no such socket file'
          : err.code === 'ECONNREFUSED'
            ? 'connection refused (is QEMU running with -qmp on it?)'
            : err.code === 'EACCES'
              ? 'permission denied'
              : err.message;
      reject(new QmpConnectionError(`cannot connect to QMP at ${where}: ${why}`, err.code));
    });
  });
}

function readLine(socket: net.Socket, timeoutMs: number): Promise<{ line: string; rest: string }> {
  return new Promise((resolve, reject) => {
    let buf = '';
    const cleanup = () => {
      clearTimeout(timer);
      socket.off('data', onData);
      socket.off('close', onClose);
    };
    const onData = (chunk: string) => {
      buf += chunk;
      if (buf.length > MAX_LINE_CHARS) {
        cleanup();
        reject(new Error(`a greeting line over ${MAX_LINE_CHARS} characters`));
        return;
      }
      const nl = buf.indexOf('\n');
      if (nl >= 0) {
        cleanup();
        socket.pause();
        resolve({ line: buf.slice(0, nl).trim(), rest: buf.slice(nl + 1) });
      }
    };
    const onClose = () => {
      cleanup();
      reject(new Error('closed before a greeting'));
    };
    const timer = setTimeout(() => {
      cleanup();
      reject(new Error(`nothing within ${timeoutMs} ms`));
    }, timeoutMs);
    socket.on('data', onData);
    socket.on('close', onClose);
  });
}
