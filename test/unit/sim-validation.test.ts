import { describe, expect, it } from 'vitest';
import { benchConfig, cellOf, parseBenchCell, VALIDATION_CONFIGS } from '../../src/bench/config.js';
import { readResults, type Results, type RunRecord } from '../../src/bench/results.js';
import { benchConfigOf, optionsFromConfig, planOf, validateBench } from '../../src/bench/run.js';
import {
  isCalibrationCell,
  LAB_STREAM_CAPS,
  streamCaps,
  validate,
  validationTable,
} from '../../src/bench/sim-results.js';
import { quantile } from '../../src/bench/stats.js';
import { runRecord } from '../support/run-record.js';

describe('bench cells: a workload with its own RAM, link and streams', () => {
  it('parses every part in any order; a plain workload keeps the bench defaults', () => {
    expect(parseBenchCell('random:100@256MiB/1gbit/4ch')).toEqual({
      workload: 'random:100',
      ramMiB: 256,
      link: '1gbit',
      channels: 4,
    });
    expect(parseBenchCell('idle@4ch/2.5gbit,delay=1ms')).toEqual({
      workload: 'idle',
      link: '2.5gbit,delay=1ms',
      channels: 4,
    });
    expect(parseBenchCell('rate:200:20000')).toEqual({ workload: 'rate:200:20000' });
    const bench = { ramMiB: 512, link: '1gbit' };
    expect(cellOf('idle@256MiB', bench)).toEqual({
      workload: 'idle',
      ramMiB: 256,
      link: '1gbit',
      channels: 1,
    });
    expect(cellOf('idle', { ...bench, multifdChannels: 2 }).channels).toBe(2);
    expect(() => parseBenchCell('idle@256MiB/512MiB')).toThrow(/gives its RAM twice/);
    expect(() => parseBenchCell('idle@0ch')).toThrow(/at least 1/);
  });

  it('checks cells before anything runs: bad parts, multifd with post-copy, the tap or libvirt', () => {
    const base = optionsFromConfig(benchConfig('validation'), { out: '/tmp/x' });
    expect(() => validateBench(base)).not.toThrow();
    expect(() => validateBench({ ...base, workloads: ['idle@1gbitt'] })).toThrow(/bad link '1gbitt'/);
    expect(() => validateBench({ ...base, workloads: ['nope@1gbit'] })).toThrow(/nope/);
    expect(() => validateBench({ ...base, postcopyPermitted: true })).toThrow(
      /runs multifd, which QEMU refuses with post-copy/,
    );
    expect(() => validateBench({ ...base, tap: true })).toThrow(/the tap follows one stream/);
    expect(() => validateBench({ ...base, drivers: ['libvirt'] })).toThrow(/QMP only/);
    const plain = { ...base, workloads: ['idle'], summaryWorkloads: undefined };
    expect(() => validateBench({ ...plain, multifdChannels: 4, postcopyPermitted: true })).toThrow(
      /refuses with post-copy/,
    );
  });
});

describe('the validation benches', () => {
  it('cover 256 Mbit, 1 and 2.5 Gbit, 1 and 4 channels, two RAM sizes; post-copy one stream only', () => {
    const pre = benchConfig('validation');
    const post = benchConfig('validation-postcopy');
    const cells = (ws: string[]) => ws.map((w) => cellOf(w, pre));
    const all = [...cells(pre.workloads), ...cells(post.workloads)];
    expect(new Set(all.map((c) => c.link))).toEqual(new Set(['25gbit', '256mbit', '1gbit', '2.5gbit']));
    expect(new Set(all.map((c) => c.ramMiB))).toEqual(new Set([256, 512]));
    for (const link of ['1gbit', '2.5gbit'])
      expect(
        new Set(
          cells(pre.workloads)
            .filter((c) => c.link === link)
            .map((c) => c.channels),
        ),
      ).toEqual(new Set([1, 4]));
    expect(cells(post.workloads).every((c) => c.channels === 1)).toBe(true);
    expect(post.postcopyPermitted).toBe(true);
    // Every config parses, and what a run records is the committed config (so --resume matches).
    for (const name of Object.keys(VALIDATION_CONFIGS)) {
      const c = benchConfig(name);
      const opts = optionsFromConfig(c, { out: '/tmp/x' });
      validateBench(opts);
      expect(benchConfigOf(opts)).toEqual(c);
    }
    // Small enough for ~40 minutes on this machine: 64 pre-copy runs, 24 post-copy.
    expect(planOf(optionsFromConfig(pre, { out: '/tmp/x' }))).toHaveLength(64);
    const postPlan = planOf(optionsFromConfig(post, { out: '/tmp/x' }));
    expect(postPlan).toHaveLength(24);
    expect(new Set(postPlan.map((p) => p.label))).toEqual(
      new Set(['frs', 'relaxed(5000)', 'switch-at-pass(2)', 'postcopy-after(1)']),
    );
  });
});

/** A validation bench's results with a few hand-made runs. */
function cellResults(runs: Partial<RunRecord>[], workloads: string[]): Results {
  return {
    version: 1,
    createdAt: '2026-11-28T00:00:00Z',
    environment: {
      qemu: '10.0.2',
      kernelPackage: '',
      hostKernel: '',
      cpu: '',
      cores: 2,
      accel: 'tcg',
      node: '',
    },
    matrix: {
      workloads,
      policies: ['stock'],
      ramMiB: 512,
      link: '1gbit',
      reps: 1,
      downtimeBudgetMs: 300,
      deadlineS: 15,
      postcopyPermitted: false,
    },
    relaxedLimitMs: null,
    runs: runs.map((r) => runRecord({ workload: workloads[0]!, policy: 'stock', ...r })),
  };
}

const pass1 = (bandwidthBps: number) => ({
  pass: 1,
  startMs: 0,
  endMs: 1000,
  bytesSent: bandwidthBps,
  normalPages: 0,
  zeroPages: 0,
  remainingAtStartBytes: 0,
  dirtyAtEndBytes: 0,
  bandwidthBps,
  qemuMbps: 0,
  dirtyPagesRate: 0,
  downtimeLimitMs: 300,
});

describe('validate over a validation bench', () => {
  const cal1 = 'rate:384:100@512MiB/10gbit/1ch';
  const cal4 = 'rate:384:100@512MiB/10gbit/4ch';
  const w1 = 'rate:384:100@512MiB/2.5gbit/1ch';
  const w4 = 'rate:384:100@512MiB/2.5gbit/4ch';
  const real = cellResults(
    [
      { workload: cal1, passTimeline: [pass1(100e6)] },
      { workload: cal1, passTimeline: [pass1(120e6)] },
      { workload: cal4, passTimeline: [pass1(400e6)] },
      { workload: w1 },
      { workload: w4 },
      { workload: w4, policy: 'frs', policyName: 'frs', success: false, outcome: 'cancelled' },
    ],
    [cal1, cal4, w1, w4],
  );

  it("measures the streams' limit on the calibration cells and simulates each cell with its own", () => {
    expect(isCalibrationCell(cal1, real)).toBe(true);
    expect(isCalibrationCell(w1, real)).toBe(false);
    expect(streamCaps(real)).toEqual({ ...LAB_STREAM_CAPS, 1: 110e6, 4: 400e6 });
    const v = validate(real);
    expect(v.streamCaps[1]).toBe(110e6);
    const row = (w: string) => v.rows.find((r) => r.workload === w)!;
    expect(row(cal1).calibration).toBe(true);
    expect(row(w1).calibration).toBeUndefined();
    // 2.5 Gbit: one stream carries 110 MB/s, four 400 MB/s: ~410 MiB of data in ~3.9 s vs ~1.1 s.
    expect(row(w1).sim.totalMs).toBeGreaterThan(3500);
    expect(row(w4).sim.totalMs).toBeLessThan(0.4 * row(w1).sim.totalMs);
    // A cell no real run completed: the simulator's outcome beside it.
    expect(v.outcomes).toEqual([
      { workload: w4, policy: 'frs', realRuns: 1, realOutcomes: ['cancelled'], simOutcome: 'completed' },
    ]);
    const table = validationTable(v);
    expect(table).toContain(`| ${cal1} (calibration) | stock |`);
    expect(table).toContain(`- ${w4} × frs: real cancelled; sim completed (differs)`);
    expect(table).toMatch(/streams' limit used: 1 channel\(s\) 110 MB\/s, 4 channel\(s\) 400 MB\/s/);
  });
});

describe('the published benches still validate as before', () => {
  // Median |error| over workload × policy cells since the post-copy stall became the time the
  // guest's vCPU waits for faults (it stalls while its writes × missing share × one fault's cost
  // exceed 1) and a bursty guest starts where the lab starts it in its cycle; for
  // docs/results-postcopy, of its re-run under the benchmark rules (5 reps, the guest's total stall
  // for post-copy runs). Before: 9%, 59%, 4% (hotcold's stall 0.8 s simulated against 2.4 s, the
  // bursty guest +120…+200%). What is left there: sweep's stall (+84…+103%: the model's kernel
  // pages, which a sweeping guest faults on) and the bursty guest's stop-and-copy (−35%, ~50 ms).
  // docs/results' total moved from 4% to 5% when a pass began as soon as QEMU's round was done (not
  // at the next 50 ms check): the lab's link carries 1448 bytes of TCP payload per 1514-byte frame
  // that tbf counts, which the model does not, and the late passes had hidden that (−4…−5% there).
  // A guard against the simulator getting worse, not its accuracy goal.
  for (const [dir, limits] of [
    ['docs/results', { total: 0.05, downtime: 0.04, bytes: 0.02 }],
    ['docs/results-postcopy', { total: 0.05, downtime: 0.11, bytes: 0.02 }],
  ] as const)
    it(dir, () => {
      const v = validate(readResults(`${dir}/results.json`));
      expect(v.outcomes).toEqual([]);
      const med = (f: (e: (typeof v.rows)[number]['error']) => number) =>
        quantile(
          v.rows
            .map((r) => f(r.error))
            .filter(Number.isFinite)
            .map(Math.abs),
          0.5,
        );
      expect(med((e) => e.total)).toBeLessThanOrEqual(limits.total + 0.005);
      expect(med((e) => e.downtime)).toBeLessThanOrEqual(limits.downtime + 0.005);
      expect(med((e) => e.bytes)).toBeLessThanOrEqual(limits.bytes + 0.005);
    });
});

describe('CI: the simulator against the committed validation benches (docs/results-validation)', () => {
  // The goal is 10% on total time and guest downtime per cell. The cells beyond it (with the lab's
  // multifd switchover cost in the model, a pass beginning as soon as the round is done) keep a
  // bound of their error plus 3 points
  // (docs/results-validation/README.md says why each is off): a model change that moves any cell
  // further fails here.
  const GOAL = 0.1;
  const KNOWN: Record<string, { total?: number; downtime?: number }> = {
    'postcopy|random:100@256MiB/256mbit/1ch|relaxed(5000)': { total: 0.14 },
    'postcopy|random:200@512MiB/2.5gbit/1ch|frs': { total: 0.13 },
    'postcopy|random:200@512MiB/2.5gbit/1ch|switch-at-pass(2)': { total: 0.16 },
  };
  for (const [name, disagreeing] of [
    ['precopy', 0],
    // At 256 Mbit the four policies' stalls lie within 3.45–3.74 s (relaxed(5000) 150–170 ms longer than
    // frs's and switch-at-pass(2)'s, postcopy-after(1) 120–290 ms shorter than the others); the model
    // has all four within 30 ms: 5 pairs ordered differently. The lab's post-copy stall ends
    // 100–170 ms before its last page crosses, the model's with it.
    ['postcopy', 5],
  ] as const)
    it(name, () => {
      const v = validate(readResults(`docs/results-validation/${name}/results.json`));
      const checked = v.rows.filter((r) => !r.calibration);
      expect(checked.length).toBe(name === 'precopy' ? 21 : 12);
      for (const r of checked) {
        const key = `${name}|${r.workload}|${r.policy}`;
        const tol = { total: GOAL, downtime: GOAL, ...KNOWN[key] };
        expect.soft(Math.abs(r.error.total), `${key} total`).toBeLessThanOrEqual(tol.total);
        expect.soft(Math.abs(r.error.downtime), `${key} downtime`).toBeLessThanOrEqual(tol.downtime);
        expect.soft(Math.abs(r.error.bytes), `${key} data`).toBeLessThanOrEqual(0.2);
      }
      // Where no real run completed (stock on random), the simulator does not complete either.
      for (const o of v.outcomes)
        expect.soft(o.simOutcome, `${o.workload} ${o.policy}`).not.toBe('completed');
      expect(v.rankingChecks.filter((c) => !c.agrees)).toHaveLength(disagreeing);
    });

  it("LAB_STREAM_CAPS are the committed calibration's", () => {
    const caps = streamCaps(readResults('docs/results-validation/precopy/results.json'));
    for (const ch of [1, 4]) expect(Math.abs(caps[ch]! / LAB_STREAM_CAPS[ch]! - 1)).toBeLessThan(0.01);
  });
});
