import net from 'node:net';
import type { RegionSource } from '../core/regions.js';
import { MigrationStreamParser } from './parser.js';

export interface TapStatus {
  state: 'waiting' | 'running' | 'done' | 'unavailable';
  reason?: string;
  bytes: number;
  normalPages: number;
  zeroPages: number;
}

/**
 * The migration tap: a transparent TCP relay between the source QEMU and the destination that
 * forwards every byte unchanged (with backpressure both ways; the reverse direction carries
 * post-copy page requests) and parses the forward stream on the side. It serves as the session's
 * region source: exact sets of what each pass sent. Parsing trouble never touches the relay.
 */
export class MigrationTap implements RegionSource {
  readonly source = 'tap' as const;
  readonly regionBytes: number;
  readonly regionCount: number;
  private parser = new MigrationStreamParser({ onPage: (block, page) => this.onPage(block, page) });
  /**
   * Scan rounds: QEMU's cursor moves up through guest RAM and wraps; each wrap starts a round.
   * One bitmap of guest RAM pages per round (the last `maxRounds`). A round is not a pass: a bitmap
   * sync can fall mid-scan, and the stop-and-copy continues from the cursor.
   */
  readonly rounds: Uint8Array[] = [];
  private lastPage = -1;
  private readonly maxRounds = 64;
  private readonly server: net.Server;
  private readonly sockets = new Set<net.Socket>();
  private connected = false;
  /** Cumulative stream bytes and pages parsed (full + zero), one point per chunk, with its time. */
  readonly timeline: { at: number; bytes: number; pages: number }[] = [];
  /** The pages behind each `changed()` call, with its time: what the tap saw in that window. */
  readonly windows: { at: number; pages: Uint32Array }[] = [];

  private constructor(
    server: net.Server,
    readonly listenHost: string,
    readonly listenPort: number,
    readonly ramBytes: number,
    regionBytes: number,
  ) {
    this.server = server;
    this.regionBytes = regionBytes;
    this.regionCount = Math.ceil(ramBytes / regionBytes);
  }

  /** Listens on host:port (port 0 = any free one) and relays each connection to `upstream`. */
  static async start(opts: {
    listenHost?: string;
    listenPort?: number;
    upstreamHost: string;
    upstreamPort: number;
    ramBytes: number;
    regionBytes?: number;
  }): Promise<MigrationTap> {
    const server = net.createServer();
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(opts.listenPort ?? 0, opts.listenHost ?? '127.0.0.1', () => resolve());
    });
    const addr = server.address() as net.AddressInfo;
    const tap = new MigrationTap(server, addr.address, addr.port, opts.ramBytes, opts.regionBytes ?? 2 << 20);
    server.on('connection', (src) => tap.relay(src, opts.upstreamHost, opts.upstreamPort));
    return tap;
  }

  get uri(): string {
    return `tcp:${this.listenHost}:${this.listenPort}`;
  }

  /**
   * Pages parsed by stream offset `bytes` (QEMU's `ram.transferred` is that offset), interpolated
   * within the chunk that holds it.
   */
  pagesAtByte(bytes: number): number {
    const tl = this.timeline;
    let lo = 0;
    let hi = tl.length - 1;
    if (hi < 0 || bytes <= 0) return 0;
    if (bytes >= tl[hi]!.bytes) return tl[hi]!.pages;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (tl[mid]!.bytes < bytes) lo = mid + 1;
      else hi = mid;
    }
    const cur = tl[lo]!;
    const prev = lo > 0 ? tl[lo - 1]! : { bytes: 0, pages: 0 };
    return (
      prev.pages + ((cur.pages - prev.pages) * (bytes - prev.bytes)) / Math.max(1, cur.bytes - prev.bytes)
    );
  }

  status(): TapStatus {
    const p = this.parser;
    return {
      state: !this.connected ? 'waiting' : p.state,
      reason: p.unavailableReason,
      bytes: p.bytesSeen,
      normalPages: p.normalPages,
      zeroPages: p.zeroPages,
    };
  }

  /** Regions of guest RAM (the first block, pc.ram) with pages sent since the last call. */
  changed(): number[] {
    if (this.parser.state === 'unavailable') return [];
    const ram = this.parser.drain()[0];
    if (!ram) return [];
    this.windows.push({ at: performance.now(), pages: Uint32Array.from(ram.pages) });
    const pagesPerRegion = this.regionBytes / 4096;
    return [...new Set(ram.pages.map((p) => Math.floor(p / pagesPerRegion)))];
  }

  private onPage(block: number, page: number): void {
    if (block !== 0) return; // guest RAM (pc.ram); ROMs and firmware are not the workload's
    if (page < this.lastPage || this.rounds.length === 0) {
      this.rounds.push(new Uint8Array(Math.ceil(this.ramBytes / 4096 / 8)));
      if (this.rounds.length > this.maxRounds) this.rounds.shift();
    }
    this.lastPage = page;
    const round = this.rounds.at(-1)!;
    if (page < round.length * 8) round[page >> 3]! |= 1 << (page & 7);
  }

  private relay(src: net.Socket, host: string, port: number): void {
    if (this.connected) {
      src.destroy(); // one migration per tap
      return;
    }
    this.connected = true;
    const dst = net.createConnection({ host, port });
    for (const s of [src, dst]) {
      this.sockets.add(s);
      s.setNoDelay(true);
      s.on('error', () => {
        src.destroy();
        dst.destroy();
      });
      s.on('close', () => this.sockets.delete(s));
    }
    src.on('data', (chunk: Buffer) => {
      try {
        this.parser.feed(chunk);
        this.timeline.push({
          at: performance.now(),
          bytes: this.parser.bytesSeen,
          pages: this.parser.normalPages + this.parser.zeroPages,
        });
      } catch (err) {
        // The parser must not throw; if it does, stop parsing and keep relaying.
        this.parser.state = 'unavailable';
        this.parser.unavailableReason = `parser error: ${(err as Error).message}`;
      }
    });
    src.pipe(dst);
    dst.pipe(src);
  }

  async close(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    await new Promise<void>((r) => this.server.close(() => r()));
  }
}
