import { readFileSync } from 'node:fs';
import { gunzipSync } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { MigrationStreamParser } from '../../src/tap/parser.js';

// A real QEMU 10 recording of a 64 MiB guest (8 dirty syncs), page payloads zeroed: framing intact.
const stream = gunzipSync(readFileSync(new URL('../fixtures/stream-64m-random2.bin.gz', import.meta.url)));
const expected = JSON.parse(
  readFileSync(new URL('../fixtures/stream-64m-random2.json', import.meta.url), 'utf8'),
) as {
  qemu: { transferred: number; normal: number; duplicate: number };
};

/** Parses `data` cut into chunks by `cut`, draining page sets every `drainEvery` chunks. */
function parse(data: Buffer, cut: (i: number) => number, drainEvery = 7) {
  const p = new MigrationStreamParser();
  const seen = new Set<string>();
  let chunks = 0;
  for (let off = 0; off < data.length; chunks++) {
    const n = Math.max(1, cut(chunks));
    p.feed(data.subarray(off, off + n));
    off += n;
    if (chunks % drainEvery === 0)
      for (const { block, pages } of p.drain()) for (const pg of pages) seen.add(`${block}:${pg}`);
  }
  for (const { block, pages } of p.drain()) for (const pg of pages) seen.add(`${block}:${pg}`);
  return { p, seen };
}

/** Deterministic pseudo-random chunk sizes. */
function lcg(seed: number) {
  let x = seed;
  return (max: number) => {
    x = (x * 1103515245 + 12345) % 2 ** 31;
    return 1 + (x % max);
  };
}

describe('migration stream parser on a real recording', () => {
  it('reads the header, RAM blocks, every page record and the end, matching QEMU’s counters', () => {
    expect(stream.length).toBe(expected.qemu.transferred);
    const { p, seen } = parse(stream, () => 1 << 20);
    expect(p.state).toBe('done');
    expect(p.ramComplete).toBe(true);
    expect(p.blocks[0]).toEqual({ id: 'pc.ram', bytes: 64 * 2 ** 20 });
    expect(p.blocks.map((b) => b.id)).toContain('pc.bios');
    expect(p.normalPages).toBe(expected.qemu.normal);
    expect(p.zeroPages).toBe(expected.qemu.duplicate);
    // Every pc.ram page was sent at least once (the bulk pass).
    expect([...seen].filter((k) => k.startsWith('0:')).length).toBe((64 * 2 ** 20) / 4096);
  });

  it('gives the same counts and page sets whatever the chunking (fuzzed)', () => {
    // Tiny chunks over a prefix (headers, block list, thousands of records), larger ones over all of it.
    const prefix = stream.subarray(0, 4 << 20);
    for (const [data, seed, max] of [
      [prefix, 1, 3],
      [prefix, 2, 17],
      [stream, 3, 4099],
      [stream, 4, 70_000],
    ] as const) {
      const ref = parse(data, () => 1 << 20);
      const rnd = lcg(seed);
      const { p, seen } = parse(data, () => rnd(max), 1 + (seed % 5));
      expect(p.state).toBe(ref.p.state);
      expect([p.normalPages, p.zeroPages]).toEqual([ref.p.normalPages, ref.p.zeroPages]);
      expect(seen).toEqual(ref.seen);
    }
  });

  it('keeps only a record header pending, not page payloads', () => {
    const p = new MigrationStreamParser();
    const mid = Math.floor(stream.length / 2);
    p.feed(stream.subarray(0, mid));
    expect((p as unknown as { pending: Buffer }).pending.length).toBeLessThan(4096);
  });

  it('reports what it cannot parse and stops, never throws', () => {
    const p = new MigrationStreamParser();
    p.feed(Buffer.from('SSH-2.0-OpenSSH\r\n'));
    expect(p.state).toBe('unavailable');
    expect(p.unavailableReason).toMatch(/no QEVM magic/);
    // Compressed pages (flag 0x100) are not parsed: unavailable, and later bytes are ignored.
    const q = new MigrationStreamParser();
    const header = stream.subarray(0, 0x100);
    q.feed(header);
    const bogus = Buffer.alloc(8);
    bogus.writeUInt32BE(0x100 | 0x20, 4);
    q.feed(Buffer.concat([stream.subarray(0x100, 0x100), bogus]));
    expect(() => q.feed(Buffer.alloc(1000, 0xff))).not.toThrow();
  });
});
