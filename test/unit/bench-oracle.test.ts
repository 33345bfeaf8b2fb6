import { describe, expect, it } from 'vitest';
import { chooseOracle, completedInTime, relaxedLimit, splitReps } from '../../src/bench/oracle.js';
import { reportMarkdown } from '../../src/bench/report.js';
import { ResultsSchema, verificationOf, type Results, type RunRecord } from '../../src/bench/results.js';
import { labelOf } from '../../src/bench/schedule.js';
import { summarize } from '../../src/bench/summary.js';
import { ladderSearch, RELAXED_LADDER } from '../../src/policy/relaxed.js';
import { runRecord } from '../support/run-record.js';

type Role = RunRecord['role'];
function run(
  role: Role,
  workload: string,
  policyName: string,
  config: Record<string, unknown>,
  rep: number,
  o: Partial<RunRecord> = {},
): RunRecord {
  const success = o.success ?? true;
  const policy = labelOf(policyName, config);
  return runRecord({
    key: `${role}|${workload}|${policy}|${rep}`,
    workload,
    policy,
    policyName,
    policyConfig: config,
    rep,
    role,
    verification: success ? 'byte-for-byte' : 'none',
    ...o,
  });
}
const rung = (w: string, l: number, rep: number, o: Partial<RunRecord> = {}) =>
  run('ladder', w, 'relaxed', { downtimeLimitMs: l }, rep, o);

describe('the shared relaxed(L*) ladder search', () => {
  it('finds the smallest rung that completes, in ascending order whatever the input order', () => {
    const tried: number[] = [];
    expect(
      ladderSearch([3000, 1000, 2000], (l) => {
        tried.push(l);
        return l >= 2000;
      }),
    ).toBe(2000);
    expect(tried).toEqual([1000, 2000]);
    expect(ladderSearch(RELAXED_LADDER, () => false)).toBeUndefined();
  });

  it('L*: per workload the smallest rung every rep completed in time; the largest of those', () => {
    const runs = [
      ...[0, 1, 2].flatMap((rep) => [
        rung('a', 1000, rep, { success: rep !== 1 }),
        rung('a', 2000, rep),
        rung('b', 1000, rep),
        rung('b', 2000, rep),
      ]),
    ];
    expect(relaxedLimit(runs, ['a', 'b'], 20)).toEqual({
      limitMs: 2000,
      perWorkload: { a: 2000, b: 1000 },
      unfinished: [],
    });
  });

  it('a run that completed past the deadline does not complete its rung (relaxed(1500) at 21.3 s of 20 s)', () => {
    const late = rung('a', 1500, 0, { totalTimeMs: 21_300 });
    expect(completedInTime(late, 20)).toBe(false);
    const r = relaxedLimit([late, rung('a', 3000, 0)], ['a'], 20)!;
    expect(r.limitMs).toBe(3000);
    const none = relaxedLimit(
      [rung('a', 1500, 0, { success: false }), rung('a', 3000, 0, { success: false })],
      ['a'],
      20,
    )!;
    expect(none).toEqual({ limitMs: 3000, perWorkload: { a: undefined }, unfinished: ['a'] });
    expect(relaxedLimit([], ['a'], 20)).toBeUndefined();
  });
});

describe('the oracle, chosen on some reps and reported on the others', () => {
  it('splits reps: even indexes choose, odd ones report', () => {
    expect(splitReps([0, 1, 2, 3, 4, 4])).toEqual({ select: [0, 2, 4], report: [1, 3] });
    expect(splitReps([0])).toEqual({ select: [0], report: [] });
  });

  it('picks on the selection reps only; reports the choice on the held-out reps', () => {
    const sw = (k: number, rep: number, stall: number) =>
      run('oracle', 'w', 'switch-at-pass', { pass: k }, rep, { totalStallMs: stall });
    const runs = [
      // switch-at-pass(2): good on the selection reps (0, 2), bad on the held-out ones.
      sw(2, 0, 100), sw(2, 2, 110), sw(2, 1, 900), sw(2, 3, 950),
      // switch-at-pass(3): the reverse — an oracle picked on all reps would flatter itself.
      sw(3, 0, 500), sw(3, 2, 520), sw(3, 1, 50), sw(3, 3, 60),
    ]; // prettier-ignore
    const c = chooseOracle(runs, 'stall')!;
    expect(c.policy).toBe('switch-at-pass(2)');
    expect(c.selectReps).toEqual([0, 2]);
    expect(c.reportReps).toEqual([1, 3]);
    expect(c.reportRuns.map((r) => r.totalStallMs)).toEqual([900, 950]);
    expect(
      chooseOracle(
        runs.filter((r) => r.rep === 0),
        'stall',
      ),
    ).toBeUndefined();
  });

  it('per objective, success first; ladder rungs ("let QEMU converge") are candidates', () => {
    const runs = [0, 1].flatMap((rep) => [
      rung('w', 300, rep, { totalStallMs: 20, totalTimeMs: 5000, transferredBytes: 500 }),
      run('oracle', 'w', 'switch-at-pass', { pass: 2 }, rep, {
        totalStallMs: 900,
        totalTimeMs: 4000,
        transferredBytes: 400,
      }),
      run('oracle', 'w', 'postcopy-after', { pass: 1 }, rep, { success: false, totalStallMs: 1 }),
    ]);
    expect(chooseOracle(runs, 'stall')!.policy).toBe('relaxed(300)');
    expect(chooseOracle(runs, 'total')!.policy).toBe('switch-at-pass(2)');
    expect(chooseOracle(runs, 'bytes')!.policy).toBe('switch-at-pass(2)');
  });
});

function results(runs: RunRecord[], reps: number, relaxedLimitMs: number | null = null): Results {
  return ResultsSchema.parse({
    version: 1,
    createdAt: '2026-11-27T00:00:00.000Z',
    environment: {
      qemu: 'Q',
      kernelPackage: 'k',
      hostKernel: 'h',
      cpu: 'c',
      cores: 2,
      accel: 'tcg',
      node: 'v20',
    },
    matrix: {
      workloads: ['w'],
      policies: ['stock', 'relaxed', 'frs', 'oracle'],
      ramMiB: 512,
      link: '1gbit',
      reps,
      downtimeBudgetMs: 300,
      deadlineS: 20,
      postcopyPermitted: false,
    },
    relaxedLimitMs,
    runs,
  });
}

describe('summary and report of a bench with a ladder and an oracle', () => {
  const reps = [0, 1, 2, 3];
  const runs = reps.flatMap((rep) => [
    run('matrix', 'w', 'stock', {}, rep, { success: false }),
    run('matrix', 'w', 'frs', {}, rep, { totalStallMs: 400 + rep * 10, totalTimeMs: 9000 + rep * 100 }),
    rung('w', 1000, rep, { success: rep !== 2 }),
    rung('w', 2000, rep, { totalStallMs: 1000 + rep * 10, totalTimeMs: 15_000 + rep * 100 }),
    run('oracle', 'w', 'switch-at-pass', { pass: 2 }, rep, {
      totalStallMs: 200 + rep,
      totalTimeMs: 8000 + rep,
    }),
  ]);

  it('relaxed(L*) is the ladder runs at L*; ratios have intervals; the oracle is on held-out reps', () => {
    const sum = summarize(results(runs, 4));
    expect(sum.relaxed).toBe('relaxed(2000)');
    expect(sum.policies).toEqual(['stock', 'relaxed(2000)', 'frs']);
    const frs = sum.cells.find((c) => c.policy === 'frs')!;
    expect(frs.vsRelaxed!.stall.estimate).toBeCloseTo(415 / 1015, 9);
    expect(frs.vsRelaxed!.stall.hi).toBeLessThan(1);
    // vs the stall oracle (switch-at-pass(2)), on reps 1 and 3 only: 420/201… over 410/430.
    expect(sum.oracle.w!.stall!.policy).toBe('switch-at-pass(2)');
    expect(frs.vsOracle!.stall!.estimate).toBeCloseTo(420 / 202, 9);
    const oracleRow = sum.cells.find((c) => c.policy === 'oracle(stall) = switch-at-pass(2)')!;
    expect(oracleRow.kind).toBe('oracle');
    expect(oracleRow.runs).toBe(2);
    const md = reportMarkdown(results(runs, 4));
    expect(md).toContain('| w | stall | switch-at-pass(2) | 1, 3 | 2, 4 |');
    expect(md).toMatch(/\| frs \| 100% \| 0% \| −\d+% \[/);
    expect(md).toContain('| frs | 100% (4) | 0% | 4 byte-for-byte |');
    expect(md).toContain('**an interval that contains 1 is a tie**');
  });

  it('a difference whose interval crosses 1 is reported as a tie', () => {
    const noisy = reps.flatMap((rep) => [
      run('matrix', 'w', 'frs', {}, rep, { totalStallMs: [900, 1200, 1000, 1100][rep]! }),
      rung('w', 2000, rep, { totalStallMs: [1050, 950, 1150, 1000][rep]! }),
    ]);
    const sum = summarize(results(noisy, 4));
    const frs = sum.perPolicy.find((p) => p.policy === 'frs')!;
    expect(frs.geoVsRelaxed!.stall.lo).toBeLessThan(1);
    expect(frs.geoVsRelaxed!.stall.hi).toBeGreaterThan(1);
    expect(reportMarkdown(results(noisy, 4))).toMatch(/\| frs \| 100% \| 0% \| tie [+−]\d+% \[/);
  });

  it('says how each run was verified; older records get it from what they recorded', () => {
    expect(verificationOf({ differingPages: 0, guestCheckOk: true })).toBe('byte-for-byte');
    expect(verificationOf({ differingPages: null, guestCheckOk: true })).toBe('guest-check-only');
    expect(verificationOf({ differingPages: null, guestCheckOk: null })).toBe('none');
    expect(verificationOf({ verification: 'none', differingPages: 0, guestCheckOk: true })).toBe('none');
    const pc = run('matrix', 'w', 'mp', {}, 0, { verification: 'guest-check-only', differingPages: null });
    const md = reportMarkdown(results([...runs, pc], 4));
    expect(md).toContain('| mp | 100% (1) | 100% | 1 guest check only |');
    expect(md).toMatch(
      /Of 21 runs: 15 verified \*\*byte for byte\*\*.*1 by the \*\*guest's own check only\*\*.*5 \*\*not verified\*\*/,
    );
  });
});
