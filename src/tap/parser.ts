/**
 * A streaming parser of QEMU's migration stream (format 3, as QEMU 10's `migration/savevm.c` and
 * `ram.c` write it), for the tap: it sees which RAM pages each part of the stream carries. It is
 * fed arbitrary chunks and never holds more than one record header; page payloads are skipped, not
 * copied. Memory is one bit per guest page. Anything it does not understand (compression, multifd,
 * an iterative device other than RAM, a newer format) makes it stop parsing and report the pattern
 * unavailable — it never throws, so the relay keeps forwarding bytes unchanged.
 */

const QEVM_MAGIC = 0x5145564d;
const SECTION = {
  START: 0x01,
  PART: 0x02,
  END: 0x03,
  FULL: 0x04,
  SUBSECTION: 0x05,
  CONFIGURATION: 0x07,
  COMMAND: 0x08,
  EOF: 0x09,
  FOOTER: 0x7e,
} as const;
const MIG_CMD_PACKAGED = 7;
const RAM_FLAG = {
  ZERO: 0x02,
  MEM_SIZE: 0x04,
  PAGE: 0x08,
  EOS: 0x10,
  CONTINUE: 0x20,
  XBZRLE: 0x40,
  HOOK: 0x80,
  COMPRESS_PAGE: 0x100,
  MULTIFD_FLUSH: 0x200,
} as const;
const PAGE_BITS = 12;
const PAGE = 1 << PAGE_BITS;
const FLAG_MASK = PAGE - 1;

export interface RamBlockInfo {
  id: string;
  bytes: number;
}

export type ParserState = 'running' | 'done' | 'unavailable';

/** Marker: the step needs more bytes than are buffered. */
const MORE = -1;

type Mode = 'file-header' | 'section' | 'ram-records' | 'ram-blocks' | 'footer';

export class MigrationStreamParser {
  state: ParserState = 'running';
  unavailableReason: string | undefined;
  readonly blocks: RamBlockInfo[] = [];
  /** Full pages (PAGE records) and zero pages (ZERO records) seen so far. */
  normalPages = 0;
  zeroPages = 0;
  bytesSeen = 0;
  /** Whether the final RAM section (END) has gone by: the stop-and-copy's pages were all sent. */
  ramComplete = false;

  private mode: Mode = 'file-header';
  private pending: Buffer = Buffer.alloc(0);
  private skip = 0;
  private ramSectionId = -1;
  private blockBytesLeft = 0;
  private currentBlock = -1;
  /** Per block: pages sent since the last drain (a bit each). */
  private sent: Uint8Array[] = [];
  /** Stream offset of buf[0] during a feed. */
  private bufBase = 0;
  private readonly onPage?: (block: number, page: number, zero: boolean) => void;
  private readonly onPayload?: (streamOffset: number, length: number) => void;

  constructor(
    opts: {
      onPage?: (block: number, page: number, zero: boolean) => void;
      /** Where each full page's 4 KiB payload sits in the stream (for tools that rewrite recordings). */
      onPayload?: (streamOffset: number, length: number) => void;
    } = {},
  ) {
    this.onPage = opts.onPage;
    this.onPayload = opts.onPayload;
  }

  feed(chunk: Buffer): void {
    this.bytesSeen += chunk.length;
    if (this.state !== 'running') return;
    let data = chunk;
    if (this.skip > 0) {
      const n = Math.min(this.skip, data.length);
      this.skip -= n;
      data = data.subarray(n);
      if (data.length === 0) return;
    }
    const buf = this.pending.length ? Buffer.concat([this.pending, data]) : data;
    this.bufBase = this.bytesSeen - buf.length;
    let pos = 0;
    while (this.state === 'running' && pos < buf.length) {
      const used = this.step(buf, pos);
      if (used === MORE) break;
      pos += used;
      if (this.skip > 0) {
        const n = Math.min(this.skip, buf.length - pos);
        this.skip -= n;
        pos += n;
      }
    }
    // Only an incomplete record header is kept (a few hundred bytes at most).
    this.pending =
      this.state === 'running' && pos < buf.length ? Buffer.from(buf.subarray(pos)) : Buffer.alloc(0);
  }

  /** Pages sent since the last call, per block, as page indices; resets the record. */
  drain(): { block: number; pages: number[] }[] {
    return this.sent.map((bits, block) => {
      const pages: number[] = [];
      for (let byte = 0; byte < bits.length; byte++) {
        const v = bits[byte]!;
        if (v === 0) continue;
        for (let b = 0; b < 8; b++) if (v & (1 << b)) pages.push(byte * 8 + b);
        bits[byte] = 0;
      }
      return { block, pages };
    });
  }

  private giveUp(reason: string): number {
    this.state = 'unavailable';
    this.unavailableReason = reason;
    return 0;
  }

  private step(b: Buffer, p: number): number {
    const avail = b.length - p;
    switch (this.mode) {
      case 'file-header': {
        if (avail < 8) return MORE;
        if (b.readUInt32BE(p) !== QEVM_MAGIC)
          return this.giveUp('not a QEMU migration stream (no QEVM magic)');
        const version = b.readUInt32BE(p + 4);
        if (version !== 3) return this.giveUp(`unsupported stream version ${version}`);
        this.mode = 'section';
        return 8;
      }
      case 'footer': {
        // After a section's content, QEMU writes a footer (0x7e, section id) on all current machine types.
        if (avail < 1) return MORE;
        if (b[p] !== SECTION.FOOTER) {
          this.mode = 'section';
          return 0;
        }
        if (avail < 5) return MORE;
        this.mode = 'section';
        return 5;
      }
      case 'section':
        return this.sectionHeader(b, p, avail);
      case 'ram-blocks':
        return this.ramBlock(b, p, avail);
      case 'ram-records':
        return this.ramRecord(b, p, avail);
    }
  }

  private sectionHeader(b: Buffer, p: number, avail: number): number {
    if (avail < 1) return MORE;
    const type = b[p]!;
    switch (type) {
      case SECTION.CONFIGURATION: {
        if (avail < 5) return MORE;
        const len = b.readUInt32BE(p + 1);
        if (avail < 5 + len + 1) return MORE;
        // Optional configuration subsections (capabilities, uuid) have no length we could skip by.
        if (b[p + 5 + len] === SECTION.SUBSECTION)
          return this.giveUp('configuration subsections are not supported');
        return 5 + len;
      }
      case SECTION.START:
      case SECTION.FULL: {
        if (avail < 6) return MORE;
        const idLen = b[p + 5]!;
        if (avail < 6 + idLen + 8) return MORE;
        const id = b.subarray(p + 6, p + 6 + idLen).toString('latin1');
        if (id !== 'ram') {
          if (type === SECTION.FULL && this.ramComplete) {
            this.state = 'done'; // device state after the last RAM section: nothing more to learn
            return 0;
          }
          return this.giveUp(`section '${id}' is not parsed (only RAM is)`);
        }
        this.ramSectionId = b.readUInt32BE(p + 1);
        this.mode = 'ram-records';
        return 6 + idLen + 8;
      }
      case SECTION.PART:
      case SECTION.END: {
        if (avail < 5) return MORE;
        if (b.readUInt32BE(p + 1) !== this.ramSectionId)
          return this.giveUp('an iterative section other than RAM');
        if (type === SECTION.END) this.ramComplete = true;
        this.mode = 'ram-records';
        return 5;
      }
      case SECTION.COMMAND: {
        if (avail < 5) return MORE;
        const cmd = b.readUInt16BE(p + 1);
        const len = b.readUInt16BE(p + 3);
        if (cmd === MIG_CMD_PACKAGED) {
          // Post-copy: device state wrapped in a length-prefixed package; skip it whole.
          if (avail < 9) return MORE;
          this.skip = b.readUInt32BE(p + 5);
          return 9;
        }
        this.skip = len; // SWITCHOVER_START, POSTCOPY_* …: payloads we need not read
        return 5;
      }
      case SECTION.EOF:
        this.state = 'done';
        return 1;
      default:
        return this.giveUp(`unknown section type 0x${type.toString(16)}`);
    }
  }

  private ramBlock(b: Buffer, p: number, avail: number): number {
    if (avail < 1) return MORE;
    const idLen = b[p]!;
    if (avail < 1 + idLen + 8) return MORE;
    const id = b.subarray(p + 1, p + 1 + idLen).toString('latin1');
    const bytes = Number(b.readBigUInt64BE(p + 1 + idLen));
    this.blocks.push({ id, bytes });
    this.sent.push(new Uint8Array(Math.ceil(bytes / PAGE / 8)));
    this.blockBytesLeft -= bytes;
    if (this.blockBytesLeft < 0)
      return this.giveUp('RAM block list does not add up (hugepages or ignore-shared?)');
    if (this.blockBytesLeft === 0) this.mode = 'ram-records';
    return 1 + idLen + 8;
  }

  private ramRecord(b: Buffer, p: number, avail: number): number {
    if (avail < 8) return MORE;
    const hi = b.readUInt32BE(p);
    const lo = b.readUInt32BE(p + 4);
    const flags = lo & FLAG_MASK;
    const offset = hi * 2 ** 32 + (lo - flags);
    if (flags & RAM_FLAG.MEM_SIZE) {
      this.blockBytesLeft = offset;
      this.mode = 'ram-blocks';
      return 8;
    }
    if (flags & RAM_FLAG.EOS) {
      this.mode = 'footer';
      return 8;
    }
    if (flags & (RAM_FLAG.COMPRESS_PAGE | RAM_FLAG.HOOK))
      return this.giveUp('compressed or RDMA pages are not parsed');
    if (flags === RAM_FLAG.MULTIFD_FLUSH) return 8;
    if (!(flags & (RAM_FLAG.ZERO | RAM_FLAG.PAGE | RAM_FLAG.XBZRLE)))
      return this.giveUp(`unknown RAM flags 0x${flags.toString(16)}`);
    let used = 8;
    if (!(flags & RAM_FLAG.CONTINUE)) {
      if (avail < used + 1) return MORE;
      const idLen = b[p + used]!;
      if (avail < used + 1 + idLen) return MORE;
      const id = b.subarray(p + used + 1, p + used + 1 + idLen).toString('latin1');
      this.currentBlock = this.blocks.findIndex((x) => x.id === id);
      if (this.currentBlock < 0) return this.giveUp(`page of unknown RAM block '${id}'`);
      used += 1 + idLen;
    }
    if (this.currentBlock < 0) return this.giveUp('a page continues no block');
    const page = offset / PAGE;
    if (flags & RAM_FLAG.ZERO) {
      if (avail < used + 1) return MORE;
      used += 1;
      this.zeroPages++;
      this.record(page, true);
    } else if (flags & RAM_FLAG.PAGE) {
      this.onPayload?.(this.bufBase + p + used, PAGE);
      this.skip = PAGE;
      this.normalPages++;
      this.record(page, false);
    } else {
      // XBZRLE: an encoding flag, be16 length, then the delta.
      if (avail < used + 3) return MORE;
      this.skip = b.readUInt16BE(p + used + 1);
      used += 3;
      this.normalPages++;
      this.record(page, false);
    }
    return used;
  }

  private record(page: number, zero: boolean): void {
    const bits = this.sent[this.currentBlock]!;
    if (page >= bits.length * 8) {
      this.giveUp('page beyond its RAM block');
      return;
    }
    bits[page >> 3]! |= 1 << (page & 7);
    this.onPage?.(this.currentBlock, page, zero);
  }
}
