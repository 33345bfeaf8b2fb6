/** Where region-level dirty sets come from; the session asks it while a policy wants them. */
export interface RegionSource {
  readonly source: 'tap' | 'sampling';
  readonly regionBytes: number;
  readonly regionCount: number;
  /** Regions seen changed since the previous call. */
  changed(): number[];
  close(): void;
}
