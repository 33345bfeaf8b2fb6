import { closeSync, openSync, readSync } from 'node:fs';
import type { RamRange } from '../qemu/guest-ram.js';
import type { RegionSource } from '../core/regions.js';

export type { RegionSource };

const PAGE = 4096;

/**
 * Host-side sampling of guest RAM: every call reads a few fixed pages of every region through
 * /proc/PID/mem (root, same host as the source QEMU) and reports the regions where any sampled
 * page changed. A region whose sampled pages all stay put is missed, so the sets are a lower
 * bound; QEMU's `calc-dirty-rate` gives only a total, and soft-dirty bits are not available here.
 */
export class RegionSampler implements RegionSource {
  readonly source = 'sampling' as const;
  readonly regionCount: number;
  private readonly fd: number;
  private readonly offsets: number[] = [];
  private readonly previous: Buffer;
  private readonly current: Buffer;
  private readonly regionOf: number[] = [];

  constructor(
    pid: number,
    ranges: RamRange[],
    readonly regionBytes = 2 << 20,
    pagesPerRegion = 8,
  ) {
    this.fd = openSync(`/proc/${pid}/mem`, 'r');
    let region = 0;
    for (const r of ranges) {
      for (let off = 0; off < r.length; off += regionBytes) {
        const len = Math.min(regionBytes, r.length - off);
        const stride = Math.max(PAGE, Math.floor(len / pagesPerRegion / PAGE) * PAGE);
        for (let p = 0; p < pagesPerRegion && p * stride < len; p++) {
          this.offsets.push(r.hva + off + p * stride);
          this.regionOf.push(region);
        }
        region++;
      }
    }
    this.regionCount = region;
    this.previous = Buffer.alloc(this.offsets.length * PAGE);
    this.current = Buffer.alloc(this.offsets.length * PAGE);
    this.read(this.previous);
  }

  changed(): number[] {
    this.read(this.current);
    const out = new Set<number>();
    for (let i = 0; i < this.offsets.length; i++) {
      const region = this.regionOf[i]!;
      if (out.has(region)) continue;
      const a = this.current.subarray(i * PAGE, (i + 1) * PAGE);
      if (!a.equals(this.previous.subarray(i * PAGE, (i + 1) * PAGE))) out.add(region);
    }
    this.current.copy(this.previous);
    return [...out];
  }

  close(): void {
    closeSync(this.fd);
  }

  private read(into: Buffer): void {
    for (let i = 0; i < this.offsets.length; i++) readSync(this.fd, into, i * PAGE, PAGE, this.offsets[i]!);
  }
}
