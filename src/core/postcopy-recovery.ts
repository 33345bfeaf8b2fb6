/**
 * Post-copy recovery: when the link between the two QEMUs breaks during post-copy, neither side
 * holds all of the guest, but both still hold their part. QEMU pauses (`postcopy-paused`) and can
 * resume over a new connection (`migrate-recover` on the destination, `migrate … resume` on the
 * source). The guest is lost only when a side is gone. This tracks one migration's recovery
 * attempts; the controller asks it what to do at every observation in post-copy.
 */
export interface RecoveryConfig {
  /** Give up recovering after this long paused (default 120 s). 0 turns recovery off. */
  timeoutMs: number;
  /** Time between attempts while the link is still down (default 2 s). */
  retryMs: number;
  /**
   * No byte moved for this long in post-copy: the link is silently dead (a TCP connection over a
   * cut link does not fail for minutes), so pause post-copy to make recovery possible (default 5 s).
   */
  stallMs: number;
}

export const DEFAULT_RECOVERY: RecoveryConfig = { timeoutMs: 120_000, retryMs: 2000, stallMs: 5000 };

export type RecoveryStep =
  | { kind: 'none' }
  | { kind: 'pause'; reason: string }
  | { kind: 'recover'; reason: string }
  | { kind: 'give-up'; reason: string };

export class PostcopyRecovery {
  private pausedSince: number | undefined;
  private lastAttemptAt = -Infinity;
  private attempts = 0;
  private pauseSentAt: number | undefined;
  private destinationGone = false;
  recovered = 0;

  constructor(private readonly cfg: RecoveryConfig) {}

  /** The driver found the destination gone: recovery is impossible. */
  markDestinationGone(): void {
    this.destinationGone = true;
  }

  /** What to do at an observation in a post-copy status. */
  step(status: string, atMs: number, lastProgressAtMs: number): RecoveryStep {
    if (status === 'postcopy-active') {
      if (this.pausedSince !== undefined) {
        this.recovered++;
        this.pausedSince = undefined;
        this.attempts = 0;
      }
      const stalled = atMs - lastProgressAtMs;
      if (this.cfg.timeoutMs > 0 && stalled > this.cfg.stallMs && this.pauseSentAt === undefined) {
        this.pauseSentAt = atMs;
        return {
          kind: 'pause',
          reason: `no byte moved for ${(stalled / 1000).toFixed(1)} s in post-copy: pausing it to recover over a new connection`,
        };
      }
      if (stalled <= this.cfg.stallMs) this.pauseSentAt = undefined;
      return { kind: 'none' };
    }
    if (status !== 'postcopy-paused') return { kind: 'none' };
    this.pausedSince ??= atMs;
    if (this.cfg.timeoutMs === 0) return { kind: 'give-up', reason: 'post-copy paused and recovery is off' };
    if (this.destinationGone)
      return { kind: 'give-up', reason: 'post-copy paused and the destination is gone: nothing to recover' };
    if (atMs - this.pausedSince > this.cfg.timeoutMs)
      return {
        kind: 'give-up',
        reason: `post-copy stayed paused for ${Math.round(this.cfg.timeoutMs / 1000)} s (${this.attempts} recovery attempts)`,
      };
    if (atMs - this.lastAttemptAt < this.cfg.retryMs) return { kind: 'none' };
    this.lastAttemptAt = atMs;
    this.attempts++;
    return {
      kind: 'recover',
      reason: `post-copy paused: recovery attempt ${this.attempts} (migrate-recover on the destination, resume on the source)`,
    };
  }
}
