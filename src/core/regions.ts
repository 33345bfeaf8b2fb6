/** Where region-level dirty sets come from; the session asks it while a policy wants them. */
export interface RegionSource {
  readonly source: 'tap' | 'sampling';
  readonly regionBytes: number;
  readonly regionCount: number;
  /** Regions seen changed since the previous call. */
  changed(): number[];
  close(): void;
}

/** The part of the controller core a region reader files into. */
interface RegionSink {
  readonly currentPass: number;
  regionsDirtied(regions: Iterable<number>): void;
  regionsLost(why: string, atMs: number): void;
}

/**
 * When a driver reads its region source: at every pass end (QEMU's dirty-sync count moved past
 * the pass under way) and every `everyMs` in between; the core files what was seen under the pass
 * under way. Pure: the driver passes its own clock.
 */
export class RegionReads {
  private lastReadAt = 0;
  private failed = false;

  constructor(
    readonly source: RegionSource,
    private readonly everyMs = 250,
  ) {}

  /**
   * `nowMs` is the driver's clock for the read interval, `atMs` the run's (ms since `migrate`)
   * for the decision log. A source that throws is given up: the core is told, nothing is read again.
   */
  read(core: RegionSink, dirtySyncCount: number | undefined, nowMs: number, atMs: number): void {
    if (this.failed) return;
    const syncAdvanced = (dirtySyncCount ?? 0) > core.currentPass && core.currentPass > 0;
    if (!syncAdvanced && nowMs - this.lastReadAt < this.everyMs) return;
    let changed: number[];
    try {
      changed = this.source.changed();
    } catch (err) {
      this.failed = true;
      core.regionsLost(
        `reading the ${this.source.source} region source failed: ${(err as Error).message}`,
        atMs,
      );
      return;
    }
    core.regionsDirtied(changed);
    this.lastReadAt = nowMs;
  }
}
