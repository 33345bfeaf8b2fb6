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
}

/**
 * When a driver reads its region source: at every pass end (QEMU's dirty-sync count moved past
 * the pass under way) and every `everyMs` in between; the core files what was seen under the pass
 * under way. Pure: the driver passes its own clock.
 */
export class RegionReads {
  private lastReadAt = 0;

  constructor(
    readonly source: RegionSource,
    private readonly everyMs = 250,
  ) {}

  read(core: RegionSink, dirtySyncCount: number | undefined, nowMs: number): void {
    const syncAdvanced = (dirtySyncCount ?? 0) > core.currentPass && core.currentPass > 0;
    if (!syncAdvanced && nowMs - this.lastReadAt < this.everyMs) return;
    core.regionsDirtied(this.source.changed());
    this.lastReadAt = nowMs;
  }
}
