import { accessSync, chmodSync, constants, lstatSync, mkdirSync, rmSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import type { OperatorRequest } from '../core/controller.js';
import type { ControlStatus, Progress, RunEvent } from '../core/result.js';
import {
  ControlRequestSchema,
  ControlResponseSchema,
  type ControlRequest,
  type ControlResponse,
} from '../core/schema.js';
import { UsageError } from '../util/errors.js';

/** What the control socket acts on: a running migration (MigrationSession, LibvirtSession). */
export interface ControlTarget {
  request(req: OperatorRequest): Promise<{ accepted: boolean; detail: string }>;
  readonly status: ControlStatus | undefined;
}

/** Longest request line accepted; a request is a few dozen bytes. */
const MAX_LINE = 4096;
/** A client that says nothing for this long is hung up on. */
const IDLE_MS = 60_000;
/** sun_path is 108 bytes on Linux, with its terminating NUL. */
const MAX_SOCKET_PATH = 107;

/**
 * Where `kvmigrate migrate` listens by default: $XDG_RUNTIME_DIR/kvmigrate/, else
 * /run/kvmigrate/ (root), else TMPDIR/kvmigrate-UID/; one socket per controller process.
 */
export function defaultControlSocketPath(pid = process.pid): string {
  const uid = process.getuid?.() ?? 0;
  const xdg = process.env.XDG_RUNTIME_DIR;
  if (xdg && writableDir(xdg)) return path.join(xdg, 'kvmigrate', `${pid}.sock`);
  if (uid === 0 && writableDir('/run')) return path.join('/run', 'kvmigrate', `${pid}.sock`);
  return path.join(os.tmpdir(), `kvmigrate-${uid}`, `${pid}.sock`);
}

function writableDir(dir: string): boolean {
  try {
    accessSync(dir, constants.W_OK | constants.X_OK);
    return lstatSync(dir).isDirectory();
  } catch {
    return false;
  }
}

/** Makes the default socket's directory (0700), refusing one that someone else owns or can enter. */
function privateDir(dir: string): void {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const st = lstatSync(dir);
  const uid = process.getuid?.() ?? st.uid;
  if (!st.isDirectory() || st.uid !== uid || (st.mode & 0o077) !== 0)
    throw new UsageError(
      `control socket directory ${dir} is not a private directory of this user (mode 0700): remove it or choose --control-socket PATH`,
    );
}

/** Is something listening on this unix socket? */
function listening(p: string): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect(p);
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

/**
 * The control socket of a running migration (`kvmigrate ctl`): a unix socket, mode 0600, one JSON
 * request per line, one JSON response per line (docs/schema/control-*.schema.json). Requests go
 * through the session, so the core's action rules apply (no cancel during post-copy, post-copy
 * only when permitted). The socket file is removed on close.
 */
export class ControlServer {
  private progress: Progress | undefined;
  private over: string | undefined;
  private readonly conns = new Set<net.Socket>();

  private constructor(
    readonly path: string,
    private readonly server: net.Server,
    private readonly target: ControlTarget,
  ) {}

  /**
   * Listens at `socketPath` (default: `defaultControlSocketPath()`, its directory made private).
   * A stale socket left by a killed controller is replaced; a live one is an error.
   */
  static async listen(target: ControlTarget, socketPath?: string): Promise<ControlServer> {
    const p = path.resolve(socketPath ?? defaultControlSocketPath());
    if (Buffer.byteLength(p) > MAX_SOCKET_PATH)
      throw new UsageError(
        `control socket path ${p} is longer than ${MAX_SOCKET_PATH} bytes: choose a shorter one`,
      );
    if (!socketPath) privateDir(path.dirname(p));
    let existing: ReturnType<typeof lstatSync> | undefined;
    try {
      existing = lstatSync(p);
    } catch {
      existing = undefined;
    }
    if (existing) {
      if (!existing.isSocket())
        throw new UsageError(`control socket path ${p} exists and is not a socket: choose another`);
      if (await listening(p))
        throw new UsageError(`another controller listens on ${p}: choose another --control-socket`);
      rmSync(p, { force: true });
    }
    const server = net.createServer();
    const ctl = new ControlServer(p, server, target);
    server.on('connection', (sock) => ctl.serve(sock));
    // Created 0600 from the start (umask), not chmod-ed after a window in which others could connect.
    const umask = process.umask(0o177);
    try {
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen(p, () => {
          server.off('error', reject);
          resolve();
        });
      });
    } catch (err) {
      throw new UsageError(`cannot listen on control socket ${p}: ${(err as Error).message}`);
    } finally {
      process.umask(umask);
    }
    chmodSync(p, 0o600);
    return ctl;
  }

  /** Feed it the run's events (`SessionOptions.onEvent`): status answers carry the last poll. */
  readonly observe = (e: RunEvent): void => {
    if (e.type === 'progress') this.progress = e.progress;
    else if (e.type === 'outcome') this.over = `${e.result.outcome}, guest runs on ${e.result.guestRunsOn}`;
  };

  /** What one request line gets. Exposed for tests. */
  async answer(lineText: string): Promise<ControlResponse> {
    let req: ControlRequest;
    try {
      const parsed = ControlRequestSchema.safeParse(JSON.parse(lineText));
      if (!parsed.success)
        return {
          accepted: false,
          error: 'bad-request',
          detail: `not a request: ${parsed.error.issues.map((i) => `${i.path.join('.') || 'op'}: ${i.message}`).join('; ')}`,
        };
      req = parsed.data;
    } catch {
      return { accepted: false, error: 'bad-request', detail: 'not a JSON line' };
    }
    const status = this.statusNow();
    if (req.op === 'status') {
      if (!status)
        return { accepted: false, error: 'not-started', detail: 'the migration has not started yet' };
      return { accepted: true, detail: this.over ? `over: ${this.over}` : status.status, status };
    }
    if (this.over) return { accepted: false, detail: `the migration is over (${this.over})`, status };
    const operator: OperatorRequest =
      req.op === 'set-downtime' ? { kind: 'set-downtime', downtimeLimitMs: req.ms } : { kind: req.op };
    const r = await this.target.request(operator);
    return {
      accepted: r.accepted,
      detail: r.detail,
      ...(!r.accepted && !status ? { error: 'not-started' as const } : {}),
      status: this.statusNow(),
    };
  }

  private statusNow(): ControlResponse['status'] {
    const s = this.target.status;
    if (!s) return undefined;
    const p = this.progress;
    return {
      ...s,
      ...(p
        ? {
            remainingBytes: p.remainingBytes,
            transferredBytes: p.transferredBytes,
            bandwidthBps: p.bandwidthBps,
            ...(p.lastDecision ? { lastDecision: p.lastDecision } : {}),
          }
        : {}),
    };
  }

  private serve(sock: net.Socket): void {
    this.conns.add(sock);
    sock.setEncoding('utf8');
    sock.setTimeout(IDLE_MS, () => sock.destroy());
    sock.on('error', () => undefined);
    sock.on('close', () => this.conns.delete(sock));
    let buf = '';
    let chain = Promise.resolve();
    sock.on('data', (chunk: string) => {
      buf += chunk;
      let nl;
      while ((nl = buf.indexOf('\n')) >= 0) {
        const text = buf.slice(0, nl).trim();
        buf = buf.slice(nl + 1);
        if (!text) continue;
        // One at a time per client, in order.
        chain = chain.then(async () => {
          const r = await this.answer(text).catch((err: unknown): ControlResponse => ({
            accepted: false,
            detail: `error: ${(err as Error).message}`,
          }));
          if (!sock.destroyed) sock.write(JSON.stringify(r) + '\n');
        });
      }
      if (buf.length > MAX_LINE) {
        const r: ControlResponse = {
          accepted: false,
          error: 'bad-request',
          detail: `request line over ${MAX_LINE} bytes`,
        };
        sock.end(JSON.stringify(r) + '\n');
        buf = '';
      }
    });
  }

  /** Stops listening, hangs up on clients and removes the socket file. */
  async close(): Promise<void> {
    for (const c of this.conns) c.destroy();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
    rmSync(this.path, { force: true });
  }
}

/** Sends one request to a control socket and reads its response (`kvmigrate ctl`). */
export function controlRequest(
  socketPath: string,
  req: ControlRequest,
  timeoutMs = 30_000,
): Promise<ControlResponse> {
  return new Promise((resolve, reject) => {
    const sock = net.connect(socketPath);
    let buf = '';
    const timer = setTimeout(() => {
      sock.destroy();
      reject(new Error(`no answer from ${socketPath} within ${timeoutMs / 1000} s`));
    }, timeoutMs);
    sock.setEncoding('utf8');
    sock.once('connect', () => sock.write(JSON.stringify(req) + '\n'));
    sock.on('data', (chunk: string) => {
      buf += chunk;
      const nl = buf.indexOf('\n');
      if (nl < 0) {
        if (buf.length > 1 << 20) {
          clearTimeout(timer);
          sock.destroy();
          reject(new Error(`${socketPath} sent a line over 1 MiB`));
        }
        return;
      }
      clearTimeout(timer);
      sock.end();
      try {
        const r = ControlResponseSchema.safeParse(JSON.parse(buf.slice(0, nl)));
        if (r.success) resolve(r.data);
        else reject(new Error(`${socketPath} answered something that is not a control response`));
      } catch {
        reject(new Error(`${socketPath} answered something that is not JSON`));
      }
    });
    sock.once('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    sock.once('close', () => {
      clearTimeout(timer);
      reject(new Error(`${socketPath} closed the connection without an answer`));
    });
  });
}
