import type { RunRecord } from '../../src/bench/results.js';

/**
 * A bench run record for report and summary tests: a completed 10 s run with a 100 ms stall
 * unless `o` says otherwise. One builder for every test that needs results.
 */
export function runRecord(o: Partial<RunRecord> & Pick<RunRecord, 'workload' | 'policy'>): RunRecord {
  const success = o.success ?? true;
  const stall = o.totalStallMs ?? 100;
  return {
    key: `matrix|${o.workload}|${o.policy}|${o.rep ?? 0}`,
    policyName: o.policy.replace(/\(.*$/, ''),
    policyConfig: {},
    rep: 0,
    role: 'matrix',
    startedAt: '2026-11-27T00:00:00.000Z',
    success,
    sloSuccess: success && stall <= 300,
    outcome: success ? 'completed' : 'cancelled',
    reason: 'test',
    totalTimeMs: 10_000,
    wallMs: 10_500,
    qemuDowntimeMs: 50,
    guestDowntimeMs: success ? stall : null,
    totalStallMs: stall,
    longestSilenceMs: 150,
    slowdown: 0.9,
    transferredBytes: 600 * 2 ** 20,
    linkBytes: null,
    passes: 4,
    differingPages: success ? 0 : null,
    guestCheckOk: success ? true : null,
    controllerCpuPct: 1,
    actionLatencyMs: null,
    predictedDowntimeMs: null,
    predictedTotalMs: null,
    predictedBytes: null,
    passTimeline: [],
    decisions: [],
    commit: 'abc',
    dirty: false,
    ...o,
  };
}
