import { open } from 'node:fs/promises';
import type { RamRange } from '../qemu/guest-ram.js';
import { LabError } from '../util/errors.js';

export { guestRamRanges, type RamRange } from '../qemu/guest-ram.js';

const PAGE = 4096;
const CHUNK = 4 << 20;

export interface RamComparison {
  pagesCompared: number;
  differingPages: number;
  /** Guest-physical addresses of the first differing pages (at most 16). */
  firstDifferences: number[];
  ms: number;
}

/** Compares two paused guests' RAM byte for byte through /proc/PID/mem (needs root). */
export async function compareGuestRam(
  a: { pid: number; ranges: RamRange[] },
  b: { pid: number; ranges: RamRange[] },
): Promise<RamComparison> {
  const t0 = performance.now();
  const fa = await open(`/proc/${a.pid}/mem`, 'r');
  const fb = await open(`/proc/${b.pid}/mem`, 'r');
  const bufA = Buffer.alloc(CHUNK);
  const bufB = Buffer.alloc(CHUNK);
  let pagesCompared = 0;
  let differingPages = 0;
  const firstDifferences: number[] = [];
  try {
    a.ranges.forEach((r, i) => {
      if (b.ranges[i]?.length !== r.length) throw new LabError('source and destination RAM layouts differ');
    });
    for (const [i, ra] of a.ranges.entries()) {
      const rb = b.ranges[i]!;
      for (let off = 0; off < ra.length; off += CHUNK) {
        const len = Math.min(CHUNK, ra.length - off);
        await readFully(fa, bufA, len, ra.hva + off);
        await readFully(fb, bufB, len, rb.hva + off);
        pagesCompared += len / PAGE;
        if (bufA.subarray(0, len).equals(bufB.subarray(0, len))) continue;
        for (let p = 0; p < len; p += PAGE) {
          if (!bufA.subarray(p, p + PAGE).equals(bufB.subarray(p, p + PAGE))) {
            differingPages++;
            if (firstDifferences.length < 16) firstDifferences.push(ra.gpa + off + p);
          }
        }
      }
    }
  } finally {
    await fa.close();
    await fb.close();
  }
  return { pagesCompared, differingPages, firstDifferences, ms: performance.now() - t0 };
}

async function readFully(
  fh: Awaited<ReturnType<typeof open>>,
  buf: Buffer,
  len: number,
  pos: number,
): Promise<void> {
  let done = 0;
  while (done < len) {
    const { bytesRead } = await fh.read(buf, done, len - done, pos + done);
    if (bytesRead === 0) throw new LabError(`short read of guest RAM at 0x${(pos + done).toString(16)}`);
    done += bytesRead;
  }
}

/** Reads one guest page of a (paused) QEMU process. */
export async function readGuestPage(pid: number, hva: number): Promise<Buffer> {
  const fh = await open(`/proc/${pid}/mem`, 'r');
  try {
    const buf = Buffer.alloc(PAGE);
    await readFully(fh, buf, PAGE, hva);
    return buf;
  } finally {
    await fh.close();
  }
}

/** Writes one guest page of a (paused) QEMU process — for tests that must prove the checks can fail. */
export async function writeGuestPage(pid: number, hva: number, data: Buffer): Promise<void> {
  const fh = await open(`/proc/${pid}/mem`, 'r+');
  try {
    await fh.write(data, 0, data.length, hva);
  } finally {
    await fh.close();
  }
}

/**
 * Reads guest RAM range by range in 4 MiB chunks and calls `visit` for every page, with its
 * guest-physical and host addresses; `visit` returns true to stop early.
 */
async function scanGuestPages(
  pid: number,
  ranges: RamRange[],
  visit: (gpa: number, hva: number, page: Buffer) => boolean | void,
): Promise<void> {
  const fh = await open(`/proc/${pid}/mem`, 'r');
  const buf = Buffer.alloc(CHUNK);
  try {
    for (const r of ranges) {
      for (let off = 0; off < r.length; off += CHUNK) {
        const len = Math.min(CHUNK, r.length - off);
        await readFully(fh, buf, len, r.hva + off);
        for (let p = 0; p < len; p += PAGE) {
          if (visit(r.gpa + off + p, r.hva + off + p, buf.subarray(p, p + PAGE))) return;
        }
      }
    }
  } finally {
    await fh.close();
  }
}

/** The guest workload stamps each page of its region with this magic, its index and its generation. */
const WORKLOAD_MAGIC = 0x574d564b;

/** Finds a page of the guest workload's region written more than once; returns its host address and header. */
export async function findWorkloadPage(
  pid: number,
  ranges: RamRange[],
): Promise<{ hva: number; index: number; gen: bigint } | undefined> {
  let found: { hva: number; index: number; gen: bigint } | undefined;
  await scanGuestPages(pid, ranges, (_gpa, hva, page) => {
    if (page.readUInt32LE(0) !== WORKLOAD_MAGIC || page.readBigUInt64LE(8) <= 1n) return false;
    found = { hva, index: page.readUInt32LE(4), gen: page.readBigUInt64LE(8) };
    return true;
  });
  return found;
}

/** Every page of the guest workload's region: guest-physical page number → its index in the region. */
export async function findWorkloadPages(pid: number, ranges: RamRange[]): Promise<Map<number, number>> {
  const out = new Map<number, number>();
  await scanGuestPages(pid, ranges, (gpa, _hva, page) => {
    if (page.readUInt32LE(0) === WORKLOAD_MAGIC) out.set(gpa / PAGE, page.readUInt32LE(4));
  });
  return out;
}
