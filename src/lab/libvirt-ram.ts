import { readdirSync, readlinkSync } from 'node:fs';
import { open, type FileHandle } from 'node:fs/promises';
import { LabError } from '../util/errors.js';
import type { RamComparison } from './ram-compare.js';

const PAGE = 4096;
const CHUNK = 4 << 20;

/**
 * A lab guest's RAM held open through its memfd (the lab's libvirt domains use
 * `<memoryBacking><source type='memfd'/><access mode='shared'/>`).
 *
 * Why not /proc/PID/mem as in the QMP lab: after a completed migration the source libvirtd kills
 * the source QEMU (the Confirm phase), so its RAM is gone before anyone can read it. A memfd
 * opened while QEMU runs keeps the pages alive after QEMU exits, and since the source guest is
 * stopped from the switchover on, what it holds is the source's RAM at switchover.
 */
export class GuestRamFile {
  private constructor(
    private readonly fh: FileHandle,
    readonly pid: number,
    readonly bytes: number,
  ) {}

  /** Opens the memfd backing `pid`'s guest RAM (the single memfd of `bytes` bytes QEMU maps). */
  static async open(pid: number, bytes: number): Promise<GuestRamFile> {
    const dir = `/proc/${pid}/fd`;
    let fds: string[];
    try {
      fds = readdirSync(dir);
    } catch (err) {
      throw new LabError(`cannot list QEMU ${pid}'s files (root needed): ${(err as Error).message}`);
    }
    for (const fd of fds) {
      let target: string;
      try {
        target = readlinkSync(`${dir}/${fd}`);
      } catch {
        continue;
      }
      if (!target.startsWith('/memfd:')) continue;
      const fh = await open(`${dir}/${fd}`, 'r');
      if ((await fh.stat()).size === bytes) return new GuestRamFile(fh, pid, bytes);
      await fh.close();
    }
    throw new LabError(`QEMU ${pid} has no memfd of ${bytes} bytes: is the domain's memory backed by memfd?`);
  }

  async read(buf: Buffer, len: number, offset: number): Promise<void> {
    let done = 0;
    while (done < len) {
      const { bytesRead } = await this.fh.read(buf, done, len - done, offset + done);
      if (bytesRead === 0)
        throw new LabError(`short read of guest RAM at offset 0x${(offset + done).toString(16)}`);
      done += bytesRead;
    }
  }

  async close(): Promise<void> {
    await this.fh.close().catch(() => undefined);
  }
}

/**
 * Compares two guests' RAM block byte for byte (offsets in the RAM block; for the lab's ≤ 3 GiB
 * pc guests the offset is the guest-physical address).
 */
export async function compareRamFiles(a: GuestRamFile, b: GuestRamFile): Promise<RamComparison> {
  if (a.bytes !== b.bytes) throw new LabError(`RAM sizes differ: ${a.bytes} vs ${b.bytes} bytes`);
  const t0 = performance.now();
  const bufA = Buffer.alloc(CHUNK);
  const bufB = Buffer.alloc(CHUNK);
  let differingPages = 0;
  const firstDifferences: number[] = [];
  for (let off = 0; off < a.bytes; off += CHUNK) {
    const len = Math.min(CHUNK, a.bytes - off);
    await a.read(bufA, len, off);
    await b.read(bufB, len, off);
    if (bufA.subarray(0, len).equals(bufB.subarray(0, len))) continue;
    for (let p = 0; p < len; p += PAGE) {
      if (bufA.subarray(p, p + PAGE).equals(bufB.subarray(p, p + PAGE))) continue;
      differingPages++;
      if (firstDifferences.length < 16) firstDifferences.push(off + p);
    }
  }
  return { pagesCompared: a.bytes / PAGE, differingPages, firstDifferences, ms: performance.now() - t0 };
}
