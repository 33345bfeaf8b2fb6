import { closeSync, fsyncSync, openSync, writeSync } from 'node:fs';
import type { RunEvent } from '../core/result.js';

/** Where `--events` writes: a file (created or truncated, 0600) or `-` for stdout. */
export type EventSink = { kind: 'file'; path: string } | { kind: 'stdout' };

export function eventSink(spec: string): EventSink {
  return spec === '-' ? { kind: 'stdout' } : { kind: 'file', path: spec };
}

/** One NDJSON line for an event: its wall-clock time and type first, then the event as it is. */
export function eventLine(e: RunEvent, now: Date = new Date()): string {
  const { type, ...rest } = e;
  return JSON.stringify({ time: now.toISOString(), type, ...rest }) + '\n';
}

/**
 * Writes a run's events as NDJSON (docs/schema/events.schema.json), one line per event, in the
 * order they happen; the `outcome` line (the result) is the last. Writes are synchronous so a
 * line is out before the next action and nothing is lost if the process dies right after; fed by
 * `SessionOptions.onEvent`.
 */
export class EventWriter {
  private closed = false;
  private failed: string | undefined;

  private constructor(
    private readonly fd: number | undefined,
    readonly sink: EventSink,
  ) {}

  /** Opens the sink; a file that cannot be created throws at once (before anything starts). */
  static open(sink: EventSink): EventWriter {
    if (sink.kind === 'stdout') return new EventWriter(undefined, sink);
    return new EventWriter(openSync(sink.path, 'w', 0o600), sink);
  }

  /** The function to give `SessionOptions.onEvent`. */
  readonly write = (e: RunEvent): void => {
    if (this.closed || this.failed) return;
    const text = eventLine(e);
    try {
      if (this.fd === undefined) process.stdout.write(text);
      else writeSync(this.fd, text);
    } catch (err) {
      // A full disk or a closed pipe must not take the migration down: the stream stops, and
      // `error` says why.
      this.failed = (err as Error).message;
    }
  };

  /**
   * The command failed (after the stream opened): its error as the last line, the same object as
   * the `--json` error, so a reader of the stream alone knows how it ended.
   */
  writeError(error: { code: string; message: string; exitCode: number }): void {
    this.write({ type: 'error', error } as unknown as RunEvent);
  }

  /** Why writing stopped, if it did. */
  get error(): string | undefined {
    return this.failed;
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    if (this.fd === undefined) return;
    try {
      fsyncSync(this.fd);
    } catch {
      // fsync is not possible on every file (a FIFO): the lines are written all the same.
    }
    closeSync(this.fd);
  }
}
