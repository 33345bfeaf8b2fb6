import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import {
  ewmaBandwidth,
  POLICIES,
  rampSchedule,
  replayProxmox,
  replayStallDetector,
  resolvePolicy,
  xbzrleCacheBytes,
  type ControllerState,
  type PassRecord,
} from '../../src/policy/index.js';
import { KubevirtStallConfigSchema } from '../../src/policy/kubevirt-stall.js';
import { KubevirtRampConfigSchema } from '../../src/policy/kubevirt-ramp.js';
import { ProxmoxConfigSchema } from '../../src/policy/proxmox.js';

/** resolvePolicy's config is `unknown`; the tests call the policies' helpers with their own config type. */
function typed<S extends z.ZodType>(name: string, _schema: S, opts: Record<string, unknown> = {}) {
  const r = resolvePolicy(name, opts);
  return { policy: r.policy, config: r.config as z.infer<S> };
}

const MiB = 2 ** 20;
const RAM = 512 * MiB; // 0.54 GB → KubeVirt's data size 1 GB → completion time 150 s

const base: ControllerState = {
  elapsedMs: 0,
  status: 'active',
  passes: [],
  currentPass: 1,
  atPassEnd: false,
  ramBytes: RAM,
  remainingBytes: RAM,
  transferredBytes: 0,
  bandwidthBps: 100e6,
  downtimeBudgetMs: 300,
  deadlineMs: 1e9,
  downtimeLimitMs: 300,
  postcopyPermitted: false,
  progressWatermark: { remainingBytes: 0, atMs: 0 },
  actions: [],
};

function rec(p: Partial<PassRecord> & { pass: number; startMs: number; endMs: number }): PassRecord {
  return {
    bytesSent: 0,
    normalPages: 0,
    zeroPages: 0,
    remainingAtStartBytes: 0,
    dirtyAtEndBytes: 0,
    bandwidthBps: 100e6,
    qemuMbps: 800,
    dirtyPagesRate: 0,
    downtimeLimitMs: 300,
    ...p,
  };
}

describe('baselines: registry and config schemas', () => {
  it('registers the four and documents every option with a default', () => {
    for (const name of ['kubevirt-stall', 'kubevirt-ramp', 'proxmox', 'xen']) {
      const policy = POLICIES[name]!;
      expect(policy.name).toBe(name);
      const js = z.toJSONSchema(policy.configSchema, { io: 'input', unrepresentable: 'any' }) as {
        properties: Record<string, { description?: string; default?: unknown }>;
      };
      const props = Object.entries(js.properties);
      expect(props.length).toBeGreaterThan(0);
      // Every option has a default: parsing no options fills them all in.
      const defaults = (policy.configSchema as z.ZodType).parse({}) as Record<string, unknown>;
      for (const [key, p] of props) {
        expect(p.description, `${name}.${key} description`).toMatch(/\w/);
        expect(defaults[key], `${name}.${key} default`).not.toBeUndefined();
      }
    }
  });
});

// ---------------------------------------------------------------------------------------------
// xen
// ---------------------------------------------------------------------------------------------

/** `n` ended passes, each with `toSendPages` to send and `sentPages` sent. */
function xenState(n: number, toSendPages: number, sentPages: number, extra: Partial<ControllerState> = {}) {
  const passes = Array.from({ length: n }, (_, i) =>
    rec({
      pass: i + 1,
      startMs: i * 1000,
      endMs: (i + 1) * 1000,
      remainingAtStartBytes: toSendPages * 4096,
      normalPages: sentPages,
      bytesSent: sentPages * 4096,
    }),
  );
  return { ...base, passes, currentPass: n + 1, atPassEnd: true, elapsedMs: n * 1000, ...extra };
}

describe('xen', () => {
  const { policy, config } = resolvePolicy('xen');
  it("has libxc's defaults and starts at the budget without post-copy", () => {
    expect(config).toEqual({ maxIters: 29, maxFactor: 3, minPages: 50 });
    expect(policy.setup(config, { downtimeBudgetMs: 300, postcopyPermitted: true })).toEqual({
      downtimeLimitMs: 300,
      postcopy: false,
      autoConverge: false,
    });
  });

  it('stops after 29 live passes (stop-and-copy is pass 30)', () => {
    expect(policy.decide(xenState(28, 10_000, 100), config).kind).toBe('continue');
    const a = policy.decide(xenState(29, 10_000, 100), config);
    expect(a.kind).toBe('switchover');
    expect(a).not.toHaveProperty('downtimeLimitMs'); // QEMU's maximum: stop now
    expect(a.reason).toMatch(/29 passes ≥ max_iters 29/);
  });

  it('stops when the pass that ended had fewer than 50 pages to send', () => {
    expect(policy.decide(xenState(3, 50, 50), config).kind).toBe('continue');
    const a = policy.decide(xenState(3, 49, 49), config);
    expect(a.kind).toBe('switchover');
    expect(a.reason).toMatch(/49 pages to send < 50/);
  });

  it('stops once more than 3 × RAM (in pages) has been sent', () => {
    const ramPages = RAM / 4096;
    expect(policy.decide(xenState(3, 10_000, ramPages), config).kind).toBe('continue'); // exactly 3×
    const a = policy.decide(xenState(3, 10_000, ramPages + 1), config);
    expect(a.kind).toBe('switchover');
    expect(a.reason).toMatch(/> 3 × 131072 RAM pages/);
  });

  it('decides only at pass ends, and once', () => {
    expect(policy.decide({ ...xenState(29, 10_000, 100), atPassEnd: false }, config).kind).toBe('continue');
    const done = xenState(30, 10_000, 100, { actions: [{ kind: 'switchover', atMs: 29_000, pass: 30 }] });
    expect(policy.decide(done, config).kind).toBe('continue');
  });
});

// ---------------------------------------------------------------------------------------------
// proxmox
// ---------------------------------------------------------------------------------------------

const PX_BPS = 100e6;

/**
 * A Proxmox scenario: pass 1 runs 0–1500 ms, pass k ≥ 2 runs (k − 1)·1000 + 500 to k·1000 + 500,
 * every pass sends 100 MB/s and starts with `remStartMiB[k − 1]`. Proxmox polls at 1, 2, 3 … s, so
 * poll k falls in pass k: it sees remStart − 100 MB on pass 1, remStart − 50 MB later.
 */
function pxState(
  remStartMiB: number[],
  elapsedMs: number,
  extra: Partial<ControllerState> = {},
): ControllerState {
  const span = (k: number) => [k === 1 ? 0 : (k - 1) * 1000 + 500, k * 1000 + 500] as const;
  const passes: PassRecord[] = [];
  let tx = 0;
  for (let k = 1; span(k)[1] <= elapsedMs; k++) {
    const [s, e] = span(k);
    const bytes = ((e - s) / 1000) * PX_BPS;
    passes.push(
      rec({
        pass: k,
        startMs: s,
        endMs: e,
        bytesSent: bytes,
        normalPages: bytes / 4096,
        remainingAtStartBytes: remStartMiB[k - 1]! * MiB,
        dirtyAtEndBytes: remStartMiB[k]! * MiB,
        bandwidthBps: PX_BPS,
      }),
    );
    tx += bytes;
  }
  const c = passes.length + 1;
  const start = span(c)[0];
  const sent = ((elapsedMs - start) / 1000) * PX_BPS;
  return {
    ...base,
    elapsedMs,
    passes,
    currentPass: c,
    remainingBytes: Math.max(0, remStartMiB[c - 1]! * MiB - sent),
    transferredBytes: tx + sent,
    downtimeLimitMs: 100,
    ...extra,
  };
}

const rising = Array.from({ length: 30 }, (_, i) => 200 + 10 * i);

describe('proxmox', () => {
  const { policy, config } = typed('proxmox', ProxmoxConfigSchema);

  it('starts at 100 ms with auto-converge and xbzrle (10% of RAM, rounded up to 2^k), no post-copy', () => {
    const setup = policy.setup(config, { downtimeBudgetMs: 300, postcopyPermitted: true });
    expect(setup).toEqual({
      downtimeLimitMs: 100,
      postcopy: false,
      autoConverge: true,
      xbzrle: { cacheRamShare: 0.1, roundUpToPowerOf2: true },
    });
    expect(xbzrleCacheBytes(setup.xbzrle!, 512 * MiB)).toBe(64 * MiB);
    expect(xbzrleCacheBytes(setup.xbzrle!, 1024 * MiB)).toBe(128 * MiB);
    expect(xbzrleCacheBytes({ cacheRamShare: 0.5, roundUpToPowerOf2: true }, 2 * MiB)).toBe(MiB);
    expect(xbzrleCacheBytes({ cacheRamShare: 0.1, roundUpToPowerOf2: false }, 512 * MiB)).toBe(53_687_091);
    const off = typed('proxmox', ProxmoxConfigSchema, { xbzrle: 'false', autoConverge: 'false' });
    expect(off.policy.setup(off.config, { downtimeBudgetMs: 300, postcopyPermitted: false })).toEqual({
      downtimeLimitMs: 100,
      postcopy: false,
      autoConverge: false,
    });
  });

  it('polls every second and doubles the limit on the 6th poll where remaining grew', () => {
    // Poll 1 has nothing to compare with; polls 2…7 each see more remaining than the one before.
    const polls = replayProxmox(pxState(rising, 7000), config).polls;
    expect(polls.map((p) => p.atMs)).toEqual([1000, 2000, 3000, 4000, 5000, 6000, 7000]);
    expect(polls.map((p) => p.counter)).toEqual([0, 1, 2, 3, 4, 5, 0]);
    expect(polls.at(-1)!.increasedTo).toBe(200);
    expect(policy.decide(pxState(rising, 6999), config).kind).toBe('continue');
    const a = policy.decide(pxState(rising, 7000), config);
    expect(a).toMatchObject({ kind: 'setDowntimeLimit', downtimeLimitMs: 200 });
    expect(a.reason).toMatch(/at 7\.0 s → downtime-limit doubled to 200 ms/);
    // Applied: later polls do not ask again until the counter fills up once more.
    expect(policy.decide(pxState(rising, 7050, { downtimeLimitMs: 200 }), config).kind).toBe('continue');
    expect(policy.decide(pxState(rising, 12_999, { downtimeLimitMs: 200 }), config).kind).toBe('continue');
    expect(policy.decide(pxState(rising, 13_000, { downtimeLimitMs: 200 }), config)).toMatchObject({
      downtimeLimitMs: 400,
    });
  });

  it('never lowers the counter on progress: growth on every other poll doubles at poll 12', () => {
    const zigzag = [200, 250, 230, 260, 240, 270, 250, 280, 260, 290, 270, 300, 280, 310, 290];
    const polls = replayProxmox(pxState(zigzag, 12_000), config).polls;
    expect(polls.map((p) => p.counter)).toEqual([0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 0]);
    expect(policy.decide(pxState(zigzag, 11_999), config).kind).toBe('continue');
    expect(policy.decide(pxState(zigzag, 12_000), config)).toMatchObject({ downtimeLimitMs: 200 });
  });

  it('counts a poll that sees remaining = 0', () => {
    // Growth on polls 2…6 (5), then pass 7 starts lower: poll 7 sees less, unless it sees 0.
    const dip = [200, 210, 220, 230, 240, 250, 100, 100];
    expect(policy.decide(pxState(dip, 7000), config).kind).toBe('continue');
    expect(policy.decide(pxState(dip, 7000, { remainingBytes: 0 }), config)).toMatchObject({
      kind: 'setDowntimeLimit',
      downtimeLimitMs: 200,
    });
  });

  it('polls every 100 ms once remaining < the bytes sent so far ÷ the poll count', () => {
    // Pass 1: 100 MiB in 0–2000 ms. At poll 2 (2 s) the new pass has 10 MiB < 50 MiB sent ÷ 2.
    const passes = [
      rec({
        pass: 1,
        startMs: 0,
        endMs: 2000,
        bytesSent: 100 * MiB,
        normalPages: (100 * MiB) / 4096,
        remainingAtStartBytes: 100 * MiB,
        dirtyAtEndBytes: 10 * MiB,
      }),
    ];
    const s = {
      ...base,
      passes,
      currentPass: 2,
      elapsedMs: 2500,
      remainingBytes: 5 * MiB,
      transferredBytes: 105 * MiB,
    };
    expect(replayProxmox(s, config).polls.map((p) => p.atMs)).toEqual([
      1000, 2000, 2100, 2200, 2300, 2400, 2500,
    ]);
  });

  it('caps the doubling at QEMU maximum and never acts outside active', () => {
    const big = typed('proxmox', ProxmoxConfigSchema, { downtimeMs: '1500000' });
    expect(
      big.policy.decide(pxState(rising, 7000, { downtimeLimitMs: 1_500_000 }), big.config),
    ).toMatchObject({
      downtimeLimitMs: 2_000_000,
    });
    expect(policy.decide(pxState(rising, 7000, { status: 'postcopy-active' }), config).kind).toBe('continue');
    expect(ProxmoxConfigSchema.parse({})).toMatchObject({ pollMs: 1000, fastPollMs: 100, increaseAfter: 5 });
  });
});

// ---------------------------------------------------------------------------------------------
// kubevirt-ramp
// ---------------------------------------------------------------------------------------------

/** Passes ending at `ends` (ms); the state is at `elapsedMs`, making progress (no legacy timeout). */
function rampState(ends: number[], elapsedMs: number, extra: Partial<ControllerState> = {}): ControllerState {
  const passes = ends.map((e, i) => rec({ pass: i + 1, startMs: i === 0 ? 0 : ends[i - 1]!, endMs: e }));
  return {
    ...base,
    passes,
    currentPass: ends.length + 1,
    elapsedMs,
    downtimeLimitMs: 150,
    progressWatermark: { remainingBytes: 1, atMs: elapsedMs },
    ...extra,
  };
}

describe('kubevirt-ramp', () => {
  const { policy, config } = typed('kubevirt-ramp', KubevirtRampConfigSchema);
  const ends = Array.from({ length: 200 }, (_, i) => 2000 + 1000 * i); // iteration 3 begins at 3 s

  it("starts at 150 ms and ramps to KubeVirt's default maxDowntimeMs 900 in 7 integer steps", () => {
    expect(policy.setup(config, { downtimeBudgetMs: 300, postcopyPermitted: false })).toEqual({
      downtimeLimitMs: 150,
      postcopy: false,
      autoConverge: false,
    });
    const all = rampSchedule(rampState(ends, 200_000), config);
    expect(all.map((s) => s.downtimeMs)).toEqual([150, 257, 364, 471, 578, 685, 792, 899, 900]);
    // The initial setting at the first poll, then one step per 10 s cooldown on the 400 ms poll grid.
    expect(all.map((s) => s.atMs)).toEqual([
      400, 10_400, 20_400, 30_400, 40_400, 50_400, 60_400, 70_400, 80_400,
    ]);
    const v1050 = typed('kubevirt-ramp', KubevirtRampConfigSchema, { maxDowntimeMs: '1050' }).config;
    expect(rampSchedule(rampState(ends, 20_400), v1050).map((s) => s.downtimeMs)).toEqual([150, 278, 406]);
  });

  it('steps only on a poll at least 10 s after the last setting', () => {
    expect(policy.decide(rampState(ends, 10_399), config).kind).toBe('continue');
    const a = policy.decide(rampState(ends, 10_400), config);
    expect(a).toMatchObject({ kind: 'setDowntimeLimit', downtimeLimitMs: 257 });
    expect(a.reason).toMatch(/downtime-limit 257 ms \(ceiling 900\)/);
    expect(policy.decide(rampState(ends, 10_450, { downtimeLimitMs: 257 }), config).kind).toBe('continue');
    expect(policy.decide(rampState(ends, 20_399, { downtimeLimitMs: 257 }), config).kind).toBe('continue');
    expect(policy.decide(rampState(ends, 20_400, { downtimeLimitMs: 257 }), config)).toMatchObject({
      downtimeLimitMs: 364,
    });
    expect(policy.decide(rampState(ends, 149_000, { downtimeLimitMs: 900 }), config).kind).toBe('continue');
  });

  it('waits for iteration 3; the cooldown runs from the initial setting, so the first step comes at once', () => {
    const slow = [12_000, 25_000, 40_000]; // iteration 3 begins at 25 s
    expect(rampSchedule(rampState(slow, 25_000), config).map((s) => s.downtimeMs)).toEqual([150]);
    expect(policy.decide(rampState(slow, 25_199), config).kind).toBe('continue');
    expect(policy.decide(rampState(slow, 25_200), config)).toMatchObject({ downtimeLimitMs: 257 });
    // Never before iteration 3, however long it takes.
    expect(policy.decide(rampState([12_000], 30_000), config).kind).toBe('continue');
  });

  it("keeps KubeVirt's legacy monitor: completion and progress timeouts take precedence", () => {
    expect(policy.decide(rampState(ends, 150_001, { downtimeLimitMs: 900 }), config)).toMatchObject({
      kind: 'abort',
      reason: expect.stringMatching(/completion/),
    });
    const stuck = rampState(ends, 150_001, { progressWatermark: { remainingBytes: 1, atMs: 0 } });
    expect(policy.decide({ ...stuck, elapsedMs: 149_000 }, config).kind).toBe('setDowntimeLimit');
    expect(policy.decide(stuck, config)).toMatchObject({
      kind: 'abort',
      reason: expect.stringMatching(/no progress/),
    });
    const pc = typed('kubevirt-ramp', KubevirtRampConfigSchema, { allowPostCopy: 'true' });
    expect(pc.policy.setup(pc.config, { downtimeBudgetMs: 300, postcopyPermitted: true }).postcopy).toBe(
      true,
    );
    expect(pc.policy.decide(rampState(ends, 150_001, { postcopyPermitted: true }), pc.config).kind).toBe(
      'postcopy',
    );
    const after = rampState(ends, 160_000, { actions: [{ kind: 'postcopy', atMs: 150_001, pass: 149 }] });
    expect(pc.policy.decide(after, pc.config).kind).toBe('continue');
    expect(KubevirtRampConfigSchema.parse({})).toMatchObject({
      startAfterIteration: 3,
      cooldownS: 10,
      pollMs: 400,
    });
  });
});

// ---------------------------------------------------------------------------------------------
// kubevirt-stall
// ---------------------------------------------------------------------------------------------

/**
 * Iteration boundaries at `points` ([ms, remaining bytes]); passes run back to back from 0 at
 * 100 MB/s, so the EWMA is 100 MB/s and the implied downtime is remaining ÷ 100,000 ms.
 */
function stallState(points: [number, number][], extra: Partial<ControllerState> = {}): ControllerState {
  const passes = points.map(([endMs, rem], i) =>
    rec({
      pass: i + 1,
      startMs: i === 0 ? 0 : points[i - 1]![0],
      endMs,
      remainingAtStartBytes: i === 0 ? RAM : points[i - 1]![1],
      dirtyAtEndBytes: rem,
    }),
  );
  const last = points.at(-1)!;
  return {
    ...base,
    passes,
    currentPass: passes.length + 1,
    atPassEnd: true,
    elapsedMs: last[0],
    remainingBytes: last[1],
    ...extra,
  };
}

const threshold = (min: number) => Math.trunc(min * (1 - 0.04));
const M = 1e6;

describe('kubevirt-stall', () => {
  const { policy, config } = typed('kubevirt-stall', KubevirtStallConfigSchema);
  const early: [number, number][] = [
    [1000, 100 * M],
    [11_000, 98 * M],
    [21_000, 99 * M],
    [31_000, 99 * M],
  ];

  it("has VEP 248's defaults and starts at min(maxDowntimeMs, budget)", () => {
    expect(config).toMatchObject({
      maxDowntimeMs: 900,
      stallMargin: 4,
      stallProgressTimeoutS: 40,
      switchoverTimeoutS: 60,
      ewmaAlpha: 0.4,
      precopyPossibleFactor: 1.5,
      patienceWindowDecayFactor: 0.5,
      searchLocalMinima: true,
      completionTimeoutFactor: 2,
      completionTimeoutPerGiB: 150,
      allowPostCopy: false,
      allowWorkloadDisruption: 'auto',
      pollMs: 400,
    });
    expect(policy.setup(config, { downtimeBudgetMs: 300, postcopyPermitted: true })).toEqual({
      downtimeLimitMs: 300,
      postcopy: false,
      autoConverge: false,
    });
    const low = typed('kubevirt-stall', KubevirtStallConfigSchema, {
      maxDowntimeMs: '200',
      allowPostCopy: 'true',
    });
    expect(low.policy.setup(low.config, { downtimeBudgetMs: 300, postcopyPermitted: true })).toMatchObject({
      downtimeLimitMs: 200,
      postcopy: true,
    });
  });

  it('is stalled when remaining ≥ (1 − 4%) × the minimum of records ≥ 40 s old', () => {
    const t = threshold(100 * M);
    const below = stallState([...early, [41_000, t - 1]]);
    const r = replayStallDetector(below, config);
    expect(r.stalled).toBe(false);
    expect(r.outsideWindowMin).toEqual({ elapsedMs: 1000, remainingBytes: 100 * M, iteration: 2 });
    const c = policy.decide(below, config);
    expect(c.kind).toBe('continue');
    expect(c.reason).toMatch(/progressing/);
    // At the threshold: stalled; best = the lowest seen (this one) → a local minimum at once.
    const at = stallState([...early, [41_000, t]]);
    expect(replayStallDetector(at, config)).toMatchObject({
      stalled: true,
      bestRemainingBytes: t,
      patienceMs: 40_000,
    });
    const a = policy.decide(at, config);
    expect(a).toMatchObject({ kind: 'switchover', downtimeLimitMs: 900 });
    expect(a.reason).toMatch(/implied downtime 960 ms ≤ 1.5 × maxDowntimeMs → soft stop-and-copy/);
  });

  it('needs a record at least 40 s old', () => {
    const young = stallState([...early, [40_999, 100 * M]]);
    expect(replayStallDetector(young, config).stalled).toBe(false);
    expect(policy.decide(young, config).reason).toMatch(/no record outside the stall window/);
    expect(replayStallDetector(stallState([...early, [41_000, 100 * M]]), config).stalled).toBe(true);
  });

  it('then waits for remaining to come back within 4% of the best value (a local minimum)', () => {
    // Stalled at 41 s with 105 MB; best = 98 MB (seen at 11 s) → wait for ≤ 101.92 MB.
    const stalled = stallState([...early, [41_000, 105 * M]]);
    expect(replayStallDetector(stalled, config)).toMatchObject({ stalled: true, bestRemainingBytes: 98 * M });
    expect(policy.decide(stalled, config).reason).toMatch(/not at a local minimum/);
    const above = stallState([...early, [41_000, 105 * M], [46_000, 101_920_001]]);
    expect(policy.decide(above, config).kind).toBe('continue');
    const dip = stallState([...early, [41_000, 105 * M], [46_000, 101_920_000]]);
    expect(policy.decide(dip, config)).toMatchObject({ kind: 'switchover', downtimeLimitMs: 900 });
  });

  it('relaxes to the next-best post-stall value when the patience runs out, halving it each time', () => {
    const seq: [number, number][] = [
      ...early,
      [41_000, 105 * M], // stall: best 98 MB, patience 40 s → relax at 81 s
      [46_000, 110 * M],
      [56_000, 108 * M],
      [66_000, 112 * M],
      [76_000, 109 * M],
    ];
    const before = stallState([...seq, [80_999, 120 * M]]);
    expect(replayStallDetector(before, config)).toMatchObject({ relaxations: 0, bestRemainingBytes: 98 * M });
    // At 81 s: 108 MB (the lowest since the stall) becomes the best; patience 20 s.
    const first = stallState([...seq, [81_000, 120 * M]]);
    expect(replayStallDetector(first, config)).toMatchObject({
      relaxations: 1,
      bestRemainingBytes: 108 * M,
      patienceMs: 20_000,
      relaxationDeadlineMs: 101_000,
    });
    expect(policy.decide(first, config).kind).toBe('continue'); // 120 > 108 × 1.04
    const seq2: [number, number][] = [...seq, [81_000, 120 * M], [100_999, 118 * M]];
    expect(replayStallDetector(stallState(seq2), config).relaxations).toBe(1);
    // At 101 s: next best 109 MB, patience 10 s; at 111 s: 110 MB and 113 MB ≤ 110 × 1.04 → switch.
    const second = stallState([...seq2, [101_000, 118 * M]]);
    expect(replayStallDetector(second, config)).toMatchObject({
      relaxations: 2,
      bestRemainingBytes: 109 * M,
      patienceMs: 10_000,
    });
    const third = stallState([...seq2, [101_000, 118 * M], [111_000, 113 * M]]);
    const r = replayStallDetector(third, config);
    expect(r).toMatchObject({ relaxations: 3, bestRemainingBytes: 110 * M, patienceMs: 5000 });
    expect(r.decision?.action).toMatchObject({ kind: 'switchover', downtimeLimitMs: 900 });
    expect(policy.decide(third, config)).toMatchObject({ kind: 'switchover', downtimeLimitMs: 900 });
  });

  it('with searchLocalMinima=false switches as soon as it is stalled', () => {
    const now = typed('kubevirt-stall', KubevirtStallConfigSchema, { searchLocalMinima: 'false' });
    expect(now.policy.decide(stallState([...early, [41_000, 105 * M]]), now.config)).toMatchObject({
      kind: 'switchover',
      downtimeLimitMs: 900,
    });
  });

  // Two records 40 s apart with the same remaining: stalled at a local minimum at once.
  const flat = (rem: number, extra: Partial<ControllerState> = {}) =>
    stallState(
      [
        [1000, rem],
        [41_000, rem],
      ],
      extra,
    );

  it('pre-copy only: soft stop-and-copy up to 1.5 × maxDowntimeMs implied downtime, abort above', () => {
    expect(policy.decide(flat(90 * M), config)).toMatchObject({
      kind: 'switchover',
      downtimeLimitMs: 900,
      reason: expect.stringMatching(/implied downtime 900 ms ≤ maxDowntimeMs/),
    });
    expect(policy.decide(flat(135 * M), config)).toMatchObject({ kind: 'switchover', downtimeLimitMs: 900 });
    // The implied downtime is truncated to whole ms (uint32), so 1350.99 ms still passes.
    expect(policy.decide(flat(135_099_999), config)).toMatchObject({
      kind: 'switchover',
      downtimeLimitMs: 900,
    });
    const a = policy.decide(flat(135_100_000), config);
    expect(a.kind).toBe('abort');
    expect(a.reason).toMatch(/implied downtime 1351 ms > 1.5 × maxDowntimeMs 900 ms → abort/);
  });

  it('with workload disruption: post-copy if allowed and permitted, else QEMU maximum downtime-limit', () => {
    const hard = typed('kubevirt-stall', KubevirtStallConfigSchema, { allowWorkloadDisruption: 'true' });
    const h = hard.policy.decide(flat(500 * M), hard.config);
    expect(h.kind).toBe('switchover');
    expect(h).not.toHaveProperty('downtimeLimitMs');
    expect(h.reason).toMatch(/hard stop-and-copy/);
    const pc = typed('kubevirt-stall', KubevirtStallConfigSchema, { allowPostCopy: 'true' }); // disruption defaults to it
    expect(pc.policy.decide(flat(500 * M, { postcopyPermitted: true }), pc.config).kind).toBe('postcopy');
    const notPermitted = pc.policy.decide(flat(500 * M), pc.config);
    expect(notPermitted.kind).toBe('switchover');
    expect(notPermitted).not.toHaveProperty('downtimeLimitMs');
    // Post-copy needs both flags: allowPostCopy without disruption takes the pre-copy path.
    const both = typed('kubevirt-stall', KubevirtStallConfigSchema, {
      allowPostCopy: 'true',
      allowWorkloadDisruption: 'false',
    });
    expect(both.policy.decide(flat(500 * M, { postcopyPermitted: true }), both.config).kind).toBe('abort');
  });

  it('waits while the implied downtime overruns what is left of 2 × the completion time', () => {
    // scale 0.1: window 4 s, completion time 15 s → budget 30 s − elapsed.
    const fast = typed('kubevirt-stall', KubevirtStallConfigSchema, {
      scale: '0.1',
      allowWorkloadDisruption: 'true',
    });
    const pts = (rem: number): [number, number][] => [
      [1000, rem],
      [5000, rem],
    ];
    expect(fast.policy.decide(stallState(pts(2_500_000_000)), fast.config).kind).toBe('switchover'); // 25000 ms
    const wait = fast.policy.decide(stallState(pts(2_500_100_000)), fast.config); // 25001 ms
    expect(wait.kind).toBe('continue');
    expect(wait.reason).toMatch(/exceeds the 25000 ms left before the completion deadline/);
  });

  it('smooths bandwidth with an EWMA (α 0.4) of one sample per 400 ms poll, seeded by the first', () => {
    const s: ControllerState = {
      ...base,
      elapsedMs: 2500,
      bandwidthBps: 20e6,
      passes: [
        rec({ pass: 1, startMs: 500, endMs: 1000, bandwidthBps: 100e6 }),
        rec({ pass: 2, startMs: 1000, endMs: 2000, bandwidthBps: 50e6 }),
      ],
    };
    // 400: setup, no sample; 800: seed 100; 1200, 1600: 80, 68; 2000, 2400: the pass under way (20).
    const [t300, t800, t1999, t2400] = ewmaBandwidth(s, config, [300, 800, 1999, 2400]);
    expect(t300).toBe(0);
    expect(t800).toBe(100e6);
    expect(t1999).toBeCloseTo(68e6, 0);
    expect(t2400).toBeCloseTo(0.4 * 20e6 + 0.6 * (0.4 * 20e6 + 0.6 * 68e6), 0);
    // A boundary before the first sample is ignored, as KubeVirt skips it.
    const tiny = stallState([
      [300, 100 * M],
      [1000, 100 * M],
      [40_500, 100 * M],
    ]);
    expect(replayStallDetector(tiny, config).stalled).toBe(false);
  });

  it('aborts when the switch-over has not completed within 60 s; never in post-copy', () => {
    const sw = { actions: [{ kind: 'switchover' as const, atMs: 50_000, pass: 6 }], atPassEnd: false };
    expect(policy.decide({ ...flat(90 * M), ...sw, elapsedMs: 110_000 }, config).kind).toBe('continue');
    const a = policy.decide({ ...flat(90 * M), ...sw, elapsedMs: 110_001 }, config);
    expect(a.kind).toBe('abort');
    expect(a.reason).toMatch(/not completed 60.0 s after the switch-over began/);
    const pc = { actions: [{ kind: 'postcopy' as const, atMs: 50_000, pass: 6 }], elapsedMs: 500_000 };
    expect(policy.decide({ ...flat(90 * M), ...pc }, config).kind).toBe('continue');
    expect(
      policy.decide({ ...flat(90 * M), status: 'postcopy-active', elapsedMs: 500_000 }, config).kind,
    ).toBe('continue');
  });

  it('past the completion time (150 s per GB) without a switch-over: post-copy, hard switch-over or abort', () => {
    const progressing = stallState([
      [1000, 400 * M],
      [140_000, 100 * M],
    ]);
    const late = { ...progressing, atPassEnd: false, elapsedMs: 150_001 };
    expect(policy.decide({ ...late, elapsedMs: 150_000 }, config).kind).toBe('continue');
    expect(policy.decide(late, config)).toMatchObject({
      kind: 'abort',
      reason: expect.stringMatching(/completion time 150.0 s/),
    });
    const pc = typed('kubevirt-stall', KubevirtStallConfigSchema, {
      allowPostCopy: 'true',
      allowWorkloadDisruption: 'false',
    });
    expect(pc.policy.decide({ ...late, postcopyPermitted: true }, pc.config).kind).toBe('postcopy');
    const hard = typed('kubevirt-stall', KubevirtStallConfigSchema, { allowWorkloadDisruption: 'true' });
    const forced = hard.policy.decide(late, hard.config);
    expect(forced.kind).toBe('switchover');
    expect(forced).not.toHaveProperty('downtimeLimitMs');
    // That switch-over has its own 60 s deadline.
    const after = { ...late, actions: [{ kind: 'switchover' as const, atMs: 150_001, pass: 3 }] };
    expect(hard.policy.decide({ ...after, elapsedMs: 210_001 }, hard.config).kind).toBe('continue');
    expect(hard.policy.decide({ ...after, elapsedMs: 210_002 }, hard.config).kind).toBe('abort');
  });

  it('replays boundaries only at pass ends and stops after a switch-over', () => {
    expect(policy.decide({ ...flat(90 * M), atPassEnd: false }, config).kind).toBe('continue');
    const sw = { actions: [{ kind: 'switchover' as const, atMs: 41_000, pass: 3 }] };
    expect(policy.decide({ ...flat(90 * M), ...sw }, config).kind).toBe('continue');
    expect(KubevirtStallConfigSchema.parse({ allowWorkloadDisruption: '1' }).allowWorkloadDisruption).toBe(
      true,
    );
  });
});
