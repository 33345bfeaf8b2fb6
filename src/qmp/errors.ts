/** An error reply from QEMU to one command: `{"error": {"class", "desc"}}`. */
export class QmpError extends Error {
  constructor(
    readonly errorClass: string,
    readonly desc: string,
    readonly command: string,
  ) {
    super(`QMP ${command} failed: ${errorClass}: ${desc}`);
    this.name = 'QmpError';
  }
}

/** The connection itself failed: cannot connect, not a QMP peer, closed, or timed out. */
export class QmpConnectionError extends Error {
  constructor(
    message: string,
    /** The socket error code when connecting failed (ENOENT, ECONNREFUSED, …). */
    readonly errno?: string,
  ) {
    super(message);
    this.name = 'QmpConnectionError';
  }

  /** Nothing listens where the monitor was: the QEMU process behind it is gone. */
  get nobodyListens(): boolean {
    return this.errno === 'ENOENT' || this.errno === 'ECONNREFUSED';
  }
}

export class QmpTimeoutError extends QmpConnectionError {
  constructor(
    readonly command: string,
    readonly timeoutMs: number,
  ) {
    super(`QMP ${command} got no reply within ${timeoutMs} ms`);
    this.name = 'QmpTimeoutError';
  }
}
