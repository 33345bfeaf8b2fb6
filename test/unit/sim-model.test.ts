import { describe, expect, it } from 'vitest';
import type { MigrationInfo } from '../../src/core/sample.js';
import { resolvePolicy } from '../../src/policy/index.js';
import { maxMinShare, SharedLink } from '../../src/sim/link.js';
import { workloadClasses, type PageClass } from '../../src/sim/model.js';
import { DEFAULT_PARAMS, syncMs } from '../../src/sim/params.js';
import { simulate, type SimOptions } from '../../src/sim/simulate.js';
import { parseWorkload } from '../../src/util/specs.js';

const MiB = 2 ** 20;
const GiB = 2 ** 30;
const run = (o: Partial<SimOptions> & { classes: PageClass[] }, policy = 'stock', opts = {}) =>
  simulate({
    ramBytes: 512 * MiB,
    linkBps: 125e6,
    policy: resolvePolicy(policy, opts),
    downtimeBudgetMs: 300,
    deadlineMs: 60_000,
    ...o,
  });
const full = (bytes: number): PageClass[] => [{ name: 'all', pages: bytes / 4096, rate: 0 }];
const w = (spec: string) => workloadClasses(parseWorkload(spec));

describe('multifd: channels with a per-channel limit', () => {
  it('an idle 16 GiB VM on 100 Gbit scales with channels until the link binds', () => {
    const bytes = 16 * GiB * (4104 / 4096);
    const time = (channels: number) =>
      run({ ramBytes: 16 * GiB, linkBps: 12.5e9, classes: full(16 * GiB), params: { channels } }).totalTimeMs;
    const expectNear = (ms: number, bps: number) =>
      expect(Math.abs(ms - (bytes / bps) * 1000) / ms).toBeLessThan(0.05);
    expectNear(time(1), DEFAULT_PARAMS.channelBps);
    expectNear(time(4), 4 * DEFAULT_PARAMS.channelBps);
    expectNear(time(16), 12.5e9); // link-bound: 16 × 10 Gbit > 100 Gbit
  });
  it('random:1024 at 100 Gbit: one stream cannot converge, 8 channels can', () => {
    const o = { ramBytes: 8 * GiB, linkBps: 12.5e9, classes: w('random:1024'), deadlineMs: 30_000 };
    expect(run({ ...o, params: { channels: 1 } }).outcome).toBe('cancelled');
    expect(run({ ...o, params: { channels: 8 } }).outcome).toBe('completed');
  });
});

describe("QEMU's own bandwidth estimate", () => {
  it('mbps is what was sent over ≥100 ms windows: the link, or max-bandwidth when lower', () => {
    const mbps = (extra: Partial<SimOptions>) => {
      const seen: MigrationInfo[] = [];
      run({ classes: full(512 * MiB), onObserve: (i) => seen.push(i), ...extra });
      return seen[Math.floor(seen.length / 2)]!.ram!.mbps!;
    };
    expect(mbps({})).toBeCloseTo(1000, -1);
    expect(mbps({ maxBandwidthBps: 62.5e6 })).toBeCloseTo(500, -1);
  });
  it('a link that halves its capacity half the time slows the run', () => {
    const steady = run({ classes: full(512 * MiB) }).totalTimeMs;
    const varying = run({
      classes: full(512 * MiB),
      linkVariation: {
        schedule: [
          { atS: 0, share: 1 },
          { atS: 1, share: 0.5 },
        ],
      },
    }).totalTimeMs;
    expect(varying).toBeGreaterThan(steady * 1.2);
  });
});

describe('costs that grow with RAM', () => {
  it('bitmap sync and switchover cost grow with RAM: an idle 64 GiB VM stops for longer than a 1 GiB one', () => {
    expect(syncMs(DEFAULT_PARAMS, 256 * GiB)).toBeCloseTo(256.2, 1);
    const idle = (ram: number) =>
      run({
        ramBytes: ram,
        linkBps: 12.5e9,
        classes: w('idle'),
        params: { channels: 8 },
        deadlineMs: 600_000,
      });
    const small = idle(GiB);
    const big = idle(64 * GiB);
    expect(small.outcome).toBe('completed');
    expect(big.outcome).toBe('completed');
    expect(big.downtimeMs - small.downtimeMs).toBeGreaterThanOrEqual(63 * DEFAULT_PARAMS.syncMsPerGiB - 1);
  });
});

describe('post-copy stall', () => {
  it('depends on when post-copy starts and on the round trip per fault', () => {
    const pc = (pass: number, rttMs = 0) =>
      run({ classes: w('random:200'), rttMs, postcopyPermitted: true }, 'postcopy-after', { pass })
        .downtimeMs;
    expect(pc(0)).not.toBeCloseTo(pc(1), -2);
    // The background stream keeps the link busy: the guest waits for bytes, plus its last fault's trip.
    expect(pc(1, 20)).toBeGreaterThanOrEqual(pc(1, 0) + 19.9);
  });
  it('a hot set the guest hammers ends the stall long before its cold pages have crossed', () => {
    const r = run({ classes: w('hotcold:32:256:90'), postcopyPermitted: true }, 'postcopy-after', {
      pass: 1,
    });
    expect(r.postcopy).toBe(true);
    expect(r.downtimeMs).toBeLessThan(((288 * MiB) / 125e6) * 1000 * 0.6);
  });
});

describe('page size, vCPUs, KVM dirty logging', () => {
  it('64 KiB pages resend 16× more per sparse write: a guest that converges at 4 KiB does not', () => {
    const classes = w('rate:200:5000');
    expect(run({ classes, deadlineMs: 20_000 }).outcome).toBe('completed');
    expect(run({ classes, deadlineMs: 20_000, params: { pageBytes: 65536 } }).outcome).toBe('cancelled');
  });
  it('the write-protection fault cost caps how fast vCPUs dirty new pages', () => {
    const dirty = (params: SimOptions['params']) =>
      run({ classes: w('random:200'), deadlineMs: 10_000, params }).passes[2]!.dirtyAtEndBytes;
    const free = dirty({});
    const capped = dirty({ dirtyLogFaultUs: 50, vcpus: 1 });
    expect(capped).toBeLessThan(free * 0.5);
    expect(dirty({ dirtyLogFaultUs: 50, vcpus: 4 })).toBeGreaterThan(capped);
  });
  it('parameters are checked', () => {
    expect(() => run({ classes: w('random:100'), params: { channels: 0 } })).toThrow(/multifd channels/);
    expect(() => run({ classes: w('random:100'), params: { pageBytes: 5000 } })).toThrow(/page size/);
  });
});

describe('the core’s commands reach the model', () => {
  it('setThrottle slows the guest’s writes: throttle converges where stock does not', () => {
    const classes = w('rate:200:40000');
    expect(run({ classes, deadlineMs: 20_000 }).outcome).toBe('cancelled');
    const r = run({ classes, deadlineMs: 20_000 }, 'throttle');
    expect(r.outcome).toBe('completed');
    expect(r.decisions.some((d) => d.action.kind === 'throttle')).toBe(true);
  });
});

describe('shared links: max-min fair share', () => {
  it('equal shares; a flow that wants less leaves the rest to the others', () => {
    expect(maxMinShare(10, [100, 100])).toEqual([5, 5]);
    expect(maxMinShare(10, [2, 100, 100])).toEqual([2, 4, 4]);
    expect(maxMinShare(10, [1, 2])).toEqual([1, 2]);
    expect(maxMinShare(10, [])).toEqual([]);
  });
  it('capacity varies over time (schedule or sinusoid) and bad variations are refused', () => {
    const l = new SharedLink('l', 100, 0, {
      schedule: [
        { atS: 0, share: 1 },
        { atS: 2, share: 0.25 },
      ],
    });
    expect(l.capacityAt(1000)).toBe(100);
    expect(l.capacityAt(2500)).toBe(25);
    expect(new SharedLink('s', 100, 0, { periodS: 10, depth: 0.5 }).capacityAt(5000)).toBeCloseTo(50);
    expect(() => new SharedLink('x', 100, 0, { depth: 1.5 })).toThrow(/depth/);
  });
});
