import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { parseWorkload } from '../../src/lab/workload.js';
import { resolvePolicy } from '../../src/policy/index.js';
import { workloadClasses, type PageClass } from '../../src/sim/model.js';
import { simulate, type SimOptions } from '../../src/sim/simulate.js';
import { readTrace, traceClasses } from '../../src/sim/trace.js';

const MiB = 2 ** 20;
const B = 125e6; // 1 Gbit/s
const base = (
  classes: PageClass[],
  policy = resolvePolicy('stock'),
  extra: Partial<SimOptions> = {},
): SimOptions => ({
  ramBytes: 512 * MiB,
  linkBps: B,
  classes,
  policy,
  downtimeBudgetMs: 300,
  deadlineMs: 60_000,
  ...extra,
});

describe('simulator: analytic cases', () => {
  it('an idle VM (all pages full, nothing dirtied) takes RAM / bandwidth, within 2%', () => {
    const r = simulate(base([{ name: 'all', pages: (512 * MiB) / 4096, rate: 0 }]));
    expect(r.outcome).toBe('completed');
    const expected = ((512 * MiB * 4104) / 4096 / B) * 1000;
    expect(Math.abs(r.totalTimeMs - expected) / expected).toBeLessThan(0.02);
  });

  it('a constant dirty rate D < B shrinks each pass by D/B', () => {
    // A huge region written at D: no page is written twice, so the dirty set grows linearly.
    const D = 0.5 * B;
    const r = simulate(
      base(
        [
          { name: 'all', pages: (512 * MiB) / 4096, rate: 0 },
          { name: 'w', pages: 1e12, initialPages: 0, rate: D / 4096 },
        ],
        resolvePolicy('stock'),
        { ramBytes: 512 * MiB },
      ),
    );
    expect(r.outcome).toBe('completed');
    // Each pass sends what the previous one let the guest dirty: sent_{k+1} = (D/B) × sent_k — for
    // passes long enough that QEMU's 50 ms check granularity does not dominate.
    const full = r.passes.filter((p) => p.endMs - p.startMs >= 400);
    expect(full.length).toBeGreaterThanOrEqual(4);
    for (let i = 2; i < full.length; i++) {
      const ratio = full[i]!.bytesSent / full[i - 1]!.bytesSent;
      expect(ratio).toBeGreaterThan(0.4);
      expect(ratio).toBeLessThan(0.6);
    }
  });

  it('D ≥ B: stock never converges; it is cancelled at the deadline', () => {
    const all: PageClass = { name: 'all', pages: (512 * MiB) / 4096, rate: 0 };
    const writer: PageClass = { name: 'w', pages: 1e12, initialPages: 0, rate: (1.2 * B) / 4096 };
    const r = simulate(base([all, writer], resolvePolicy('stock'), { deadlineMs: 20_000 }));
    expect(r.outcome).toBe('cancelled');
    expect(r.decisions.at(-1)!.action.kind).toBe('abort');
  });

  it('is deterministic', () => {
    const o = base(workloadClasses(parseWorkload('hotcold:32:256:90')), resolvePolicy('mp'));
    expect(simulate(o)).toEqual(simulate(o));
  });
});

describe('simulator runs the live policies unchanged', () => {
  const random = workloadClasses(parseWorkload('random:200'));
  it('random:200 at 1 Gbit: stock fails; frs, mp and adaptive complete', () => {
    expect(simulate(base(random, resolvePolicy('stock'), { deadlineMs: 30_000 })).outcome).toBe('cancelled');
    for (const name of ['frs', 'mp', 'adaptive']) {
      const r = simulate(base(random, resolvePolicy(name), { deadlineMs: 30_000 }));
      expect(r.outcome, name).toBe('completed');
      expect(
        r.decisions.some((d) => d.action.kind === 'switchover' && d.action.reason.startsWith(name)),
      ).toBe(true);
    }
  });

  it('simulates a 64 GiB VM on 10 Gbit in well under a second', () => {
    const t0 = performance.now();
    const r = simulate(
      base(workloadClasses(parseWorkload('random:8192')), resolvePolicy('frs'), {
        ramBytes: 64 * 2 ** 30,
        linkBps: 1.25e9,
        deadlineMs: 600_000,
      }),
    );
    expect(r.outcome).toBe('completed');
    expect(performance.now() - t0).toBeLessThan(1000); // a sanity bound; the benchmark note has the number
  });
});

describe('bench: where the relaxed(L*) ladder starts', () => {
  it('at the rung under 0.9 × dirty / bandwidth seen in stock’s passes, ignoring the bulk and the last pass', async () => {
    const { ladderStart } = await import('../../src/bench/run.js');
    const pass = (n: number, dirtyMiB: number) => ({
      pass: n, startMs: n * 1000, endMs: n * 1000 + 1500, bytesSent: 1, normalPages: 0, zeroPages: 0,
      remainingAtStartBytes: 0, dirtyAtEndBytes: dirtyMiB * MiB, bandwidthBps: 119 * MiB, qemuMbps: 0, dirtyPagesRate: 0, downtimeLimitMs: 300,
    }); // prettier-ignore
    const run = { passTimeline: [pass(1, 210), pass(2, 200), pass(3, 200), pass(4, 0)] } as never;
    // 0.9 × 200/119 s = 1.51 s → the 1500 ms rung.
    expect(ladderStart([run])).toBe(1500);
    expect(ladderStart([])).toBe(300);
  });
});

describe('traces', () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'kvm-trace-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  const header = {
    format: 'kvmigrate-trace',
    version: 1,
    ramBytes: 512 * MiB,
    recordedAt: '2026-11-25T00:00:00Z',
  };
  const write = (name: string, lines: unknown[], tail = '\n') => {
    const f = path.join(dir, name);
    writeFileSync(f, lines.map((l) => (typeof l === 'string' ? l : JSON.stringify(l))).join('\n') + tail);
    return f;
  };
  const sample = (atMs: number, mib: number) => ({
    type: 'sample',
    atMs,
    windowMs: 125,
    dirtyBytes: mib * MiB,
  });

  it('round-trips and drives the simulator: a recorded burst replays its quiet phases', () => {
    // 1 s busy, 2.5 s quiet, as sampled every ~0.4 s.
    const records = Array.from({ length: 30 }, (_, i) => sample(i * 400, (i * 400) % 3500 < 1000 ? 200 : 0));
    const f = write('burst.jsonl', [header, ...records]);
    const trace = readTrace(f);
    expect(trace.records).toHaveLength(30);
    const classes = traceClasses(trace);
    expect(classes[1]!.pages).toBeCloseTo((200 * MiB) / 4096, 0);
    expect(classes[1]!.schedule?.some((s) => s.share === 0)).toBe(true);
    const r = simulate(base(classes, resolvePolicy('adaptive')));
    expect(r.outcome).toBe('completed');
  });

  it('names the line of what is wrong: version, truncation, negative values, order', () => {
    const bad =
      (lines: unknown[], tail = '\n') =>
      () =>
        readTrace(write('bad.jsonl', lines, tail));
    expect(bad([{ ...header, version: 2 }, sample(0, 1)])).toThrow(/bad\.jsonl:1: trace version 2/);
    expect(bad([header, sample(0, 1), '{"type":"sam'])).toThrow(/bad\.jsonl:3: not JSON/);
    expect(bad([header, sample(0, 1)], '')).toThrow(/bad\.jsonl:2: .*truncated/);
    expect(bad([header, { ...sample(0, 1), dirtyBytes: -5 }])).toThrow(/bad\.jsonl:2: dirtyBytes/);
    expect(bad([header, sample(500, 1), sample(100, 1)])).toThrow(/bad\.jsonl:3: records out of time order/);
    expect(bad([{ format: 'something-else' }])).toThrow(/bad\.jsonl:1: format/);
    expect(() => readTrace(path.join(dir, 'missing.jsonl'))).toThrow(
      /^trace .*missing.jsonl does not exist$/,
    );
  });
});

describe('simulated calc-dirty-rate and post-copy', () => {
  it('adaptive sees the working set in the simulator as it does live: post-copy in the bulk pass when permitted', () => {
    const r = simulate(
      base(workloadClasses(parseWorkload('random:200')), resolvePolicy('adaptive'), {
        postcopyPermitted: true,
      }),
    );
    expect(r.postcopy).toBe(true);
    expect(r.passes.length).toBeLessThanOrEqual(1);
    // The guest stalls until its 200 MiB working set has crossed: ≈ 1.7 s at 1 Gbit, not 40 ms.
    expect(r.downtimeMs).toBeGreaterThan(1000);
  });
  it('waits for the quiet phase of a bursty guest', () => {
    const classes = workloadClasses(parseWorkload('burst:200:1000:2500'));
    const adaptive = simulate(base(classes, resolvePolicy('adaptive')));
    const frs = simulate(base(classes, resolvePolicy('frs')));
    expect(adaptive.outcome).toBe('completed');
    expect(adaptive.downtimeMs).toBeLessThan(frs.downtimeMs / 3);
  });
});

describe('simulated region sets', () => {
  it('let mp classify as it does live: uniform-heavy random → post-copy when permitted; hot/cold → switchover', () => {
    const random = simulate(
      base(workloadClasses(parseWorkload('random:200')), resolvePolicy('mp'), { postcopyPermitted: true }),
    );
    expect(random.decisions.find((d) => d.action.kind !== 'continue')?.action).toMatchObject({
      kind: 'postcopy',
      reason: expect.stringMatching(/^mp\[model\]: uniform-heavy/),
    });
    const hotcold = simulate(
      base(workloadClasses(parseWorkload('hotcold:32:256:90:200000')), resolvePolicy('mp')),
    );
    expect(hotcold.outcome).toBe('completed');
    expect(hotcold.decisions.some((d) => /^mp\[model\]/.test(d.action.reason))).toBe(true);
  });
});
