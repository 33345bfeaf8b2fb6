import { describe, expect, it } from 'vitest';
import { driverRows } from '../../src/bench/drivers.js';
import { reportMarkdown, resultsCsv } from '../../src/bench/report.js';
import { ResultsSchema, type Results, type RunRecord } from '../../src/bench/results.js';
import {
  benchConfigOf,
  parseDrivers,
  planOf,
  validateBench,
  type BenchOptions,
} from '../../src/bench/run.js';
import { benchSchedule, keepWholeReps, type Unit } from '../../src/bench/schedule.js';
import { summarize } from '../../src/bench/summary.js';
import { UsageError } from '../../src/util/errors.js';
import { runRecord } from '../support/run-record.js';

const base: BenchOptions = {
  workloads: ['random:200'],
  policies: ['stock', 'frs'],
  ramMiB: 512,
  link: '1gbit',
  reps: 3,
  downtimeBudgetMs: 300,
  deadlineS: 20,
  out: '/tmp/x',
};

const units = (names: string[]): Unit[] =>
  names.map((n) => ({ role: 'matrix', policyName: n, config: {}, label: n }));

describe('--driver', () => {
  it('qmp, libvirt, both (qmp first: the reference), or a list in the order wanted', () => {
    expect(parseDrivers('qmp')).toEqual(['qmp']);
    expect(parseDrivers('libvirt')).toEqual(['libvirt']);
    expect(parseDrivers('both')).toEqual(['qmp', 'libvirt']);
    expect(parseDrivers('libvirt,qmp')).toEqual(['libvirt', 'qmp']);
    expect(() => parseDrivers('virsh')).toThrow(/^unknown driver 'virsh': use qmp, libvirt or both$/);
    expect(() => parseDrivers('qmp,qmp')).toThrow(UsageError);
  });

  it('libvirt refuses what its lab cannot do, in one line, before anything runs', () => {
    expect(() => validateBench({ ...base, drivers: ['libvirt'], workloads: ['app:pgbench'] })).toThrow(
      /^--driver libvirt runs the synthetic workloads only .*: drop app:pgbench$/,
    );
    expect(() => validateBench({ ...base, drivers: ['qmp', 'libvirt'], tap: true })).toThrow(
      /--tap works with the QMP driver only/,
    );
    expect(() => validateBench({ ...base, drivers: [] })).toThrow(UsageError);
    expect(() => validateBench({ ...base, drivers: ['libvirt'] })).not.toThrow();
  });

  it('the config records the drivers; QMP alone is what a config without them means', () => {
    expect(benchConfigOf(base).drivers).toBeUndefined();
    expect(benchConfigOf({ ...base, drivers: ['qmp'] }).drivers).toBeUndefined();
    expect(benchConfigOf({ ...base, drivers: ['qmp', 'libvirt'] }).drivers).toEqual(['qmp', 'libvirt']);
    expect(benchConfigOf({ ...base, drivers: ['libvirt'] }).drivers).toEqual(['libvirt']);
  });
});

describe('a driver is one more dimension, interleaved', () => {
  it('each unit runs under every driver back to back, the first driver alternating', () => {
    const plan = benchSchedule(['w'], units(['a', 'b', 'c']), 2, ['qmp', 'libvirt']);
    expect(plan).toHaveLength(3 * 2 * 2);
    expect(plan.map((p) => `${p.rep}:${p.label}@${p.driver}`)).toEqual([
      '0:a@qmp', '0:a@libvirt', '0:b@libvirt', '0:b@qmp', '0:c@qmp', '0:c@libvirt',
      // rep 2 starts elsewhere in the unit order (rotated by ⌊1 × 3 / 2⌋ = 1) and with the other driver
      '1:b@libvirt', '1:b@qmp', '1:c@qmp', '1:c@libvirt', '1:a@libvirt', '1:a@qmp',
    ]); // prettier-ignore
    expect(new Set(plan.map((p) => p.key)).size).toBe(plan.length);
    // QMP runs keep the keys they always had: results from before --driver resume as they are.
    expect(plan[0]!.key).toBe('matrix|w|a|0');
    expect(plan[1]!.key).toBe('matrix|w|a|libvirt|0');
  });

  it('one driver: the plan of before, with that driver on every run', () => {
    const before = benchSchedule(['w1', 'w2'], units(['a', 'b']), 3);
    expect(before.every((p) => p.driver === 'qmp')).toBe(true);
    const libvirt = planOf({ ...base, drivers: ['libvirt'] });
    expect(libvirt.every((p) => p.driver === 'libvirt')).toBe(true);
    expect(libvirt.map((p) => p.label)).toEqual(planOf(base).map((p) => p.label));
  });

  it('a re-run replaces whole reps across both drivers', () => {
    const plan = benchSchedule(['w'], units(['a']), 2, ['qmp', 'libvirt']);
    const rec = (key: string) => ({ key, rep: Number(key.split('|').at(-1)) });
    const { kept, dropped } = keepWholeReps(
      plan,
      [plan[0]!, plan[1]!, plan[2]!].map((p) => rec(p.key)),
    );
    expect(kept.map((r) => r.key)).toEqual([plan[0]!.key, plan[1]!.key]);
    expect(dropped.map((r) => r.key)).toEqual([plan[2]!.key]);
  });
});

function mixed(runs: RunRecord[]): Results {
  const opts = { ...base, policies: ['frs'], drivers: parseDrivers('both') };
  return ResultsSchema.parse({
    version: 1,
    createdAt: '2026-11-27T00:00:00.000Z',
    environment: { qemu: 'QEMU 10', kernelPackage: 'k', hostKernel: 'h', cpu: 'c', cores: 2, accel: 'tcg', node: 'v20' },
    matrix: { ...opts, postcopyPermitted: false },
    config: benchConfigOf(opts),
    provenance: { commit: 'abcdef1234567890', dirty: false, commits: ['abcdef1234567890'] },
    relaxedLimitMs: null,
    runs,
  }); // prettier-ignore
}

const frs = (driver: 'qmp' | 'libvirt', rep: number, totalTimeMs: number, totalStallMs = 1900) =>
  runRecord({
    workload: 'random:200',
    policy: 'frs',
    driver,
    rep,
    key: `matrix|random:200|frs|${driver === 'qmp' ? '' : 'libvirt|'}${rep}`,
    totalTimeMs,
    totalStallMs,
  });

describe('the report with two drivers', () => {
  const runs = [
    frs('qmp', 0, 6000),
    frs('libvirt', 0, 8000),
    frs('libvirt', 1, 8200),
    frs('qmp', 1, 6100),
    frs('qmp', 2, 6200),
    frs('libvirt', 2, 8100),
  ];

  it("the main figures are the reference driver's runs alone", () => {
    const sum = summarize(mixed(runs));
    const cell = sum.cells.find((c) => c.policy === 'frs')!;
    expect(cell.runs).toBe(3);
    expect(cell.totalMs.median).toBe(6100);
  });

  it('side by side per policy × workload: medians, intervals, and the ratio to the reference', () => {
    const rows = driverRows(mixed(runs), ['frs']);
    expect(rows.map((r) => r.driver)).toEqual(['qmp', 'libvirt']);
    expect(rows[0]!.vsReference).toBeUndefined();
    const lv = rows[1]!;
    expect(lv.cell.totalMs.median).toBe(8100);
    expect(lv.outcomes).toEqual({ completed: 3, failed: 0, cancelled: 0 });
    // Every libvirt run is slower than every QMP run: the interval lies wholly above 1.
    expect(lv.vsReference!.ratios.total.estimate).toBeCloseTo(8100 / 6100);
    expect(lv.vsReference!.total).toBe('worse');
    // Same stall on both: a tie (the same result within noise).
    expect(lv.vsReference!.stall).toBe('tie');

    const md = reportMarkdown(mixed(runs));
    expect(md).toMatch(/## Drivers\n/);
    expect(md).toMatch(
      /\| random:200 \| frs \| qmp \| 3 completed \| 100% \| 3 \| 6\.10 \[6\.00–6\.20\] \|.*\| \(reference\) \|/,
    );
    expect(md).toMatch(
      /\| random:200 \| frs \| libvirt \| 3 completed \| 100% \| 3 \| 8\.10 \[8\.00–8\.20\] \|.*\| \+33% \[/,
    );
    expect(md).toMatch(/random:200 × frs libvirt: time more, stall tie, data tie/);
    expect(resultsCsv(mixed(runs)).split('\n')[0]).toContain(',role,driver,success,');
  });

  it('QMP alone (and results from before --driver): no drivers section', () => {
    const qmpOnly = mixed(runs.filter((r) => r.driver === 'qmp'));
    delete qmpOnly.config!.drivers;
    for (const r of qmpOnly.runs) delete r.driver;
    expect(reportMarkdown(qmpOnly)).not.toMatch(/## Drivers/);
    expect(resultsCsv(qmpOnly)).toMatch(/,matrix,qmp,true,/);
  });
});
