import { EventEmitter } from 'node:events';
import net from 'node:net';
import { LibvirtError, LibvirtUnreachableError } from './errors.js';
import {
  MAX_MESSAGE_BYTES,
  MSG,
  REMOTE_PROGRAM,
  REMOTE_VERSION,
  STATUS,
  readRemoteError,
  type RemoteError,
} from './protocol.js';
import { XdrReader, XdrWriter } from './xdr.js';

const HEADER_BYTES = 28; // length word + program, version, procedure, type, serial, status

interface Pending {
  proc: number;
  resolve: (body: Buffer) => void;
  reject: (err: Error) => void;
  timer: NodeJS.Timeout | undefined;
}

/** A reply with status error: libvirt's own error, mapped to our classes by the caller. */
export class RemoteCallError extends LibvirtError {
  constructor(readonly remote: RemoteError) {
    super(remote.message, remote.code);
  }
}

/**
 * One connection to libvirtd's remote program over its unix socket: calls matched to replies
 * by serial (any number in flight: a migration call blocks for its whole run while job stats
 * and actions go on beside it, as libvirt's own clients do), events emitted as
 * ('event', procedure, body). Never reconnects.
 */
export class RpcConnection extends EventEmitter {
  private serial = 1;
  private readonly pending = new Map<number, Pending>();
  private buf: Buffer = Buffer.alloc(0);
  private closedError: Error | undefined;

  private constructor(
    private readonly socket: net.Socket,
    readonly socketPath: string,
  ) {
    super();
    socket.on('data', (chunk: Buffer) => this.onData(chunk));
    socket.on('error', (err) =>
      this.fail(new LibvirtUnreachableError(`libvirt ${socketPath}: ${err.message}`)),
    );
    socket.on('close', () =>
      this.fail(new LibvirtUnreachableError(`libvirt connection to ${socketPath} closed`)),
    );
  }

  static connect(socketPath: string, timeoutMs = 5000): Promise<RpcConnection> {
    return new Promise((resolve, reject) => {
      const s = net.createConnection({ path: socketPath });
      const timer = setTimeout(() => {
        s.destroy();
        reject(
          new LibvirtUnreachableError(
            `libvirt daemon at ${socketPath} did not answer within ${timeoutMs} ms`,
          ),
        );
      }, timeoutMs);
      s.once('connect', () => {
        clearTimeout(timer);
        s.removeAllListeners('error');
        resolve(new RpcConnection(s, socketPath));
      });
      s.once('error', (err: NodeJS.ErrnoException) => {
        clearTimeout(timer);
        const why =
          err.code === 'ENOENT'
            ? 'no socket there (is libvirtd running?)'
            : err.code === 'ECONNREFUSED'
              ? 'nobody listens on the socket (libvirtd is down)'
              : err.message;
        reject(new LibvirtUnreachableError(`cannot reach libvirt at ${socketPath}: ${why}`));
      });
    });
  }

  get isClosed(): boolean {
    return this.closedError !== undefined;
  }

  /** Sends a call and resolves with the reply body; timeoutMs 0 waits as long as it takes. */
  call(proc: number, args: XdrWriter | undefined, timeoutMs = 30_000): Promise<Buffer> {
    if (this.closedError) return Promise.reject(this.closedError);
    const serial = this.serial++;
    const body = args?.toBuffer() ?? Buffer.alloc(0);
    const header = new XdrWriter()
      .uint(HEADER_BYTES + body.length)
      .uint(REMOTE_PROGRAM)
      .uint(REMOTE_VERSION)
      .int(proc)
      .int(MSG.call)
      .uint(serial)
      .int(STATUS.ok)
      .toBuffer();
    return new Promise<Buffer>((resolve, reject) => {
      const timer =
        timeoutMs > 0
          ? setTimeout(() => {
              this.pending.delete(serial);
              reject(new LibvirtError(`libvirt did not answer call ${proc} within ${timeoutMs} ms`));
            }, timeoutMs)
          : undefined;
      this.pending.set(serial, { proc, resolve, reject, timer });
      this.socket.write(Buffer.concat([header, body]));
    });
  }

  close(): void {
    this.socket.destroy();
  }

  private onData(chunk: Buffer): void {
    this.buf = this.buf.length ? Buffer.concat([this.buf, chunk]) : chunk;
    while (this.buf.length >= 4) {
      const len = this.buf.readUInt32BE(0);
      if (len < HEADER_BYTES || len > MAX_MESSAGE_BYTES) {
        this.fail(new LibvirtError(`libvirt sent a message of ${len} bytes; giving up on the connection`));
        this.socket.destroy();
        return;
      }
      if (this.buf.length < len) return;
      const msg = this.buf.subarray(0, len);
      this.buf = this.buf.subarray(len);
      this.dispatch(msg);
    }
  }

  private dispatch(msg: Buffer): void {
    const r = new XdrReader(msg.subarray(4, HEADER_BYTES));
    const program = r.uint();
    r.uint(); // version
    const proc = r.int();
    const type = r.int();
    const serial = r.uint();
    const status = r.int();
    const body = msg.subarray(HEADER_BYTES);
    if (program !== REMOTE_PROGRAM) return; // keepalive or another program: not ours to answer
    if (type === MSG.message) {
      this.emit('event', proc, body);
      return;
    }
    if (type !== MSG.reply) return;
    const p = this.pending.get(serial);
    if (!p) return;
    this.pending.delete(serial);
    if (p.timer) clearTimeout(p.timer);
    if (status === STATUS.ok) p.resolve(body);
    else {
      try {
        p.reject(new RemoteCallError(readRemoteError(new XdrReader(body))));
      } catch (err) {
        p.reject(
          new LibvirtError(`libvirt sent an unreadable error for call ${proc}: ${(err as Error).message}`),
        );
      }
    }
  }

  private fail(err: Error): void {
    if (this.closedError) return;
    this.closedError = err;
    for (const p of this.pending.values()) {
      if (p.timer) clearTimeout(p.timer);
      p.reject(err);
    }
    this.pending.clear();
    this.emit('close', err);
  }
}
