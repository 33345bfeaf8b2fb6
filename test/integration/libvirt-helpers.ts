import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, expect } from 'vitest';
import type { MigrationInfo } from '../../src/core/sample.js';
import { findLeftovers, leaksOf } from '../../src/lab/clean.js';
import { LibvirtPair } from '../../src/lab/libvirt-pair.js';
import { parseLink } from '../../src/lab/link.js';
import { LibvirtClient } from '../../src/libvirt/index.js';

export interface Latency {
  n: number;
  medianMs: number;
  p95Ms: number;
}

export function latency(samples: number[]): Latency {
  const s = [...samples].sort((a, b) => a - b);
  const q = (p: number) => s[Math.min(s.length - 1, Math.floor(p * s.length))] ?? NaN;
  return { n: s.length, medianMs: round(q(0.5)), p95Ms: round(q(0.95)) };
}

const round = (x: number) => Math.round(x * 100) / 100;

/** Times one call. */
export async function timed<T>(samples: number[], f: () => Promise<T>): Promise<T> {
  const t0 = performance.now();
  const v = await f();
  samples.push(performance.now() - t0);
  return v;
}

/**
 * Polls job stats every `everyMs` until stopped, as the controller would; records each sample and
 * its round trip. Stats of a job that ended (domain gone from the source) end the loop.
 */
export function pollJobStats(client: LibvirtClient, name: string, everyMs = 50) {
  const samples: MigrationInfo[] = [];
  const rtt: number[] = [];
  let stop = false;
  const loop = (async () => {
    while (!stop) {
      try {
        const info = await timed(rtt, () => client.jobStats(name));
        if (info.status === 'active' || info.status?.startsWith('postcopy')) samples.push(info);
      } catch {
        return; // the domain left the source: the job is over
      }
      await new Promise((r) => setTimeout(r, everyMs));
    }
  })();
  return {
    samples,
    rtt,
    async stop() {
      stop = true;
      await loop;
    },
  };
}

/** Job statistics only grow while one job runs (remaining may go either way). */
export function expectMonotonic(samples: MigrationInfo[]): void {
  for (let i = 1; i < samples.length; i++) {
    const a = samples[i - 1]!;
    const b = samples[i]!;
    expect(b['total-time']!).toBeGreaterThanOrEqual(a['total-time']!);
    expect(b.ram!.transferred).toBeGreaterThanOrEqual(a.ram!.transferred);
    expect(b.ram!['dirty-sync-count']).toBeGreaterThanOrEqual(a.ram!['dirty-sync-count']);
    expect(b.ram!.normal).toBeGreaterThanOrEqual(a.ram!.normal);
    expect(b.ram!.total).toBe(a.ram!.total);
  }
}

/** Before teardown: `kvmigrate lab clean` would find the pair's daemons, its guests' QEMUs, netns, veth and dir. */
export async function expectPairFound(pair: LibvirtPair): Promise<void> {
  const left = await findLeftovers();
  expect(left.libvirtdPids).toEqual(expect.arrayContaining([pair.source.pid, pair.destination.pid]));
  const qemus = [...pair.source.qemuPids(), ...pair.destination.qemuPids()];
  expect(left.qemuPids).toEqual(expect.arrayContaining(qemus));
  expect(left.netns).toContain(pair.link.netns);
  expect(left.links).toContain(pair.link.hostIf);
  expect(left.dirs).toContain(pair.dir);
}

/** After teardown: none of the pair's daemons, QEMUs, netns, veth or dirs is left. */
export async function expectPairGone(pair: LibvirtPair, pids: number[]): Promise<void> {
  expect(await leaksOf(pair.id, pids)).toEqual([]);
  for (const pid of pids) expect(alive(pid)).toBe(false);
}

/** A killed QEMU whose parent is the host's init may linger as a zombie for a moment: that is gone. */
function alive(pid: number): boolean {
  try {
    return !/^\d+ \(.*\) Z/.test(readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return false;
  }
}

export interface PairFixture {
  pair: LibvirtPair;
  src: LibvirtClient;
  dst: LibvirtClient;
}

/**
 * One libvirt pair on a 1 Gbit lab link for a whole test file, with a connection to each daemon:
 * started before its tests (`opened` receives it), and after them closed and destroyed, with a
 * check that none of its daemons, QEMUs (and `pids`: others the tests started), netns, veth or
 * dirs is left.
 */
export function pairPerFile(
  opened: (f: PairFixture) => void,
  opts: { log?: boolean; pids?: number[] } = {},
): void {
  const pids = opts.pids ?? [];
  let f: Partial<PairFixture> = {};
  beforeAll(async () => {
    const log = opts.log ? (l: string) => console.log(l) : undefined;
    f.pair = await LibvirtPair.start({ link: parseLink('1gbit'), log });
    pids.push(f.pair.source.pid, f.pair.destination.pid);
    f.src = await LibvirtClient.open(f.pair.source.uri);
    f.dst = await LibvirtClient.open(f.pair.destination.uri);
    opened(f as PairFixture);
  });
  afterAll(async () => {
    const { pair, src, dst } = f;
    f = {};
    await src?.close();
    await dst?.close();
    if (!pair) return;
    pids.push(...pair.source.qemuPids(), ...pair.destination.qemuPids());
    await pair.destroy();
    await expectPairGone(pair, pids);
  });
}
