import { describe, expect, it } from 'vitest';
import type { WorkingSetSample } from '../../src/core/controller.js';
import { sampleWorkingSet } from '../../src/migration/working-set-sampler.js';
import type { QmpClient } from '../../src/qmp/index.js';

/**
 * A monitor that measures like QEMU's page-sampling: `calc-dirty-rate` starts a window,
 * `query-dirty-rate` says `measuring` until it is over, then `measured` with 40 MiB/s.
 */
function fakeMonitor() {
  const calls: { cmd: string; at: number }[] = [];
  let window: { from: number; ms: number } | undefined;
  const qmp = {
    execute: async (cmd: string, args: Record<string, unknown>) => {
      calls.push({ cmd, at: performance.now() });
      if (cmd === 'calc-dirty-rate') {
        expect(args).toMatchObject({ 'calc-time-unit': 'millisecond', mode: 'page-sampling' });
        window = { from: performance.now(), ms: Number(args['calc-time']) };
        return {};
      }
      if (cmd === 'query-dirty-rate') {
        return window && performance.now() >= window.from + window.ms
          ? { status: 'measured', 'dirty-rate': 40 }
          : { status: 'measuring' };
      }
      throw new Error(`unexpected ${cmd}`);
    },
  } as unknown as QmpClient;
  return { qmp, calls };
}

describe('working-set sampler', () => {
  it('asks for the result only once a window is over: one query per sample, not one every 50 ms', async () => {
    const { qmp, calls } = fakeMonitor();
    const samples: WorkingSetSample[] = [];
    let stopped = false;
    const loop = sampleWorkingSet({
      qmp: () => qmp,
      windowsMs: [60, 200],
      ramBytes: 512 * 2 ** 20,
      nowMs: () => performance.now(),
      stopped: () => stopped,
      onSample: (s) => {
        samples.push(s);
        if (samples.length === 4) stopped = true;
      },
    });
    await loop;
    expect(samples.map((s) => s.seconds)).toEqual([0.06, 0.2, 0.06, 0.2]);
    // 40 MiB/s over the window.
    expect(samples[1]!.bytes).toBeCloseTo(40 * 2 ** 20 * 0.2, 0);
    const queries = calls.filter((c) => c.cmd === 'query-dirty-rate');
    const starts = calls.filter((c) => c.cmd === 'calc-dirty-rate');
    expect(starts).toHaveLength(4);
    // Never asked before the window it measures was over (a timer may fire a hair early).
    for (const q of queries) {
      const start = starts.findLast((s) => s.at <= q.at)!;
      const ms = calls.indexOf(start) % 2 === 0 ? 60 : 200;
      expect(q.at - start.at).toBeGreaterThanOrEqual(ms - 2);
    }
    expect(queries.length).toBeLessThanOrEqual(2 * samples.length);
  });

  it('stops within a tick when told to, even in the middle of a long window', async () => {
    const { qmp } = fakeMonitor();
    let stopped = false;
    const t0 = performance.now();
    const loop = sampleWorkingSet({
      qmp: () => qmp,
      windowsMs: [5000],
      ramBytes: 2 ** 30,
      nowMs: () => performance.now(),
      stopped: () => stopped,
      onSample: () => undefined,
    });
    setTimeout(() => (stopped = true), 100);
    await loop;
    expect(performance.now() - t0).toBeLessThan(2000);
  });

  it('gives up quietly when QEMU refuses millisecond windows', async () => {
    const qmp = {
      execute: async () => {
        throw new Error("Parameter 'calc-time-unit' is unexpected");
      },
    } as unknown as QmpClient;
    const samples: WorkingSetSample[] = [];
    await sampleWorkingSet({
      qmp: () => qmp,
      windowsMs: [125, 500],
      ramBytes: 2 ** 30,
      nowMs: () => 0,
      stopped: () => false,
      onSample: (s) => samples.push(s),
    });
    expect(samples).toEqual([]);
  });

  it("waits out another client's measurement instead of giving up for the whole migration", async () => {
    const { qmp: measuring } = fakeMonitor();
    let refusals = 2;
    const qmp = {
      execute: async (cmd: string, args: Record<string, unknown>) => {
        // QEMU's words when a calc-dirty-rate of someone else's is still running.
        if (cmd === 'calc-dirty-rate' && refusals-- > 0)
          throw new Error('the dirty rate is already being measured.');
        return measuring.execute(cmd, args);
      },
    } as unknown as QmpClient;
    const samples: WorkingSetSample[] = [];
    let stopped = false;
    await sampleWorkingSet({
      qmp: () => qmp,
      windowsMs: [20],
      ramBytes: 2 ** 30,
      nowMs: () => performance.now(),
      stopped: () => stopped,
      onSample: (x) => {
        samples.push(x);
        stopped = true;
      },
    });
    expect(refusals).toBeLessThan(0);
    expect(samples).toHaveLength(1);
  });
});
