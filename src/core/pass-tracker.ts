import type { PassRecord } from '../policy/types.js';
import type { MigrationInfo } from './sample.js';

interface OpenPass {
  pass: number;
  startMs: number;
  transferred: number;
  normal: number;
  duplicate: number;
  remainingAtStart: number;
  downtimeLimitMs: number;
}

/**
 * Cuts the stream of `query-migrate` samples into passes at each change of dirty-sync-count.
 * Pure bookkeeping: feed it samples with their time; it returns the passes that closed.
 */
export class PassTracker {
  readonly passes: PassRecord[] = [];
  private open: OpenPass | undefined;
  private lastRam: NonNullable<MigrationInfo['ram']> | undefined;

  get currentPass(): number {
    return this.open?.pass ?? 0;
  }

  /** Returns true when this sample closed at least one pass. */
  observe(info: MigrationInfo, atMs: number, downtimeLimitMs: number): boolean {
    const ram = info.ram;
    if (!ram || ram['dirty-sync-count'] === 0) return false;
    let closed = false;
    if (!this.open) {
      // The first sync happens in setup and marks all RAM dirty: pass 1 is the bulk copy.
      this.open = this.openPass(
        ram['dirty-sync-count'],
        0,
        { ...ram, transferred: 0, normal: 0, duplicate: 0 },
        downtimeLimitMs,
      );
      this.open.remainingAtStart = ram.total;
    }
    while (ram['dirty-sync-count'] > this.open.pass) {
      // A sync ended the open pass; what is left right after it is what the guest re-dirtied.
      // (If several syncs happened between samples, the extra passes get zero length.)
      this.close(atMs, ram);
      this.open = this.openPass(this.open.pass + 1, atMs, ram, downtimeLimitMs);
      closed = true;
    }
    this.lastRam = ram;
    return closed;
  }

  /** Closes the pass under way at completion (the stop-and-copy pass, or the last one before a cancel). */
  finish(info: MigrationInfo, atMs: number): void {
    const ram = info.ram ?? this.lastRam;
    if (this.open && ram) this.close(atMs, ram, 0);
    this.open = undefined;
  }

  private openPass(
    pass: number,
    atMs: number,
    ram: NonNullable<MigrationInfo['ram']>,
    downtimeLimitMs: number,
  ): OpenPass {
    return {
      pass,
      startMs: atMs,
      transferred: ram.transferred,
      normal: ram.normal,
      duplicate: ram.duplicate,
      remainingAtStart: ram.remaining,
      downtimeLimitMs,
    };
  }

  private close(atMs: number, ram: NonNullable<MigrationInfo['ram']>, dirtyAtEnd = ram.remaining): void {
    const o = this.open!;
    const bytesSent = Math.max(0, ram.transferred - o.transferred);
    const seconds = (atMs - o.startMs) / 1000;
    this.passes.push({
      pass: o.pass,
      startMs: o.startMs,
      endMs: atMs,
      bytesSent,
      normalPages: Math.max(0, ram.normal - o.normal),
      zeroPages: Math.max(0, ram.duplicate - o.duplicate),
      remainingAtStartBytes: o.remainingAtStart,
      dirtyAtEndBytes: dirtyAtEnd,
      bandwidthBps: seconds > 0 ? bytesSent / seconds : 0,
      qemuMbps: ram.mbps ?? 0,
      dirtyPagesRate: ram['dirty-pages-rate'] ?? 0,
      downtimeLimitMs: o.downtimeLimitMs,
    });
  }
}
