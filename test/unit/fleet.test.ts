import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import * as lib from '../../src/index.js';
import { plannerVerdict, runStrategies } from '../../src/bench/fleet-report.js';
import { buildFleet, readFleet } from '../../src/sim/fleet-spec.js';
import {
  evacuate,
  fixedConcurrency,
  kubevirtStrategy,
  novaStrategy,
  progressiveFill,
} from '../../src/sim/fleet.js';
import { SharedLink } from '../../src/sim/link.js';
import { plannerStrategy } from '../../src/sim/planner.js';
import { simulate } from '../../src/sim/simulate.js';
import { resolvePolicy } from '../../src/policy/index.js';
import { workloadClasses } from '../../src/sim/model.js';
import { parseWorkload } from '../../src/util/specs.js';

const base = {
  links: [{ name: 'up', rate: '10gbit' }],
  hosts: [{ name: 'h1', link: 'up' }],
  policy: 'frs',
  downtimeSloMs: 500,
  seed: 7,
};

describe('shared links', () => {
  it('progressive filling: max-min fair over every link of each path', () => {
    const a = new SharedLink('a', 10);
    const b = new SharedLink('b', 4);
    // Flow 0 crosses a and b, flows 1 and 2 only a: b limits flow 0 to 4, the others split the rest.
    expect(
      progressiveFill(
        [
          { demand: 100, path: [a, b] },
          { demand: 100, path: [a] },
          { demand: 100, path: [a] },
        ],
        0,
      ),
    ).toEqual([3.3333333333333335, 3.3333333333333335, 3.3333333333333335]);
    expect(
      progressiveFill(
        [
          { demand: 100, path: [b] },
          { demand: 1, path: [a] },
          { demand: 100, path: [a] },
        ],
        0,
      ),
    ).toEqual([4, 1, 9]);
  });
  it('two identical migrations started together on one link each get half: same end, about twice the solo time', () => {
    const fleet = buildFleet({ ...base, vms: [{ host: 'h1', count: 2, ramMiB: 4096, workload: 'idle' }] });
    const solo = simulate({
      ramBytes: 4096 * 2 ** 20,
      linkBps: 1.25e9 / 2,
      classes: workloadClasses(parseWorkload('idle')),
      policy: resolvePolicy('frs'),
      downtimeBudgetMs: 500,
      deadlineMs: 600_000,
      stepMs: 50,
    });
    const r = evacuate(fleet, fixedConcurrency(2));
    expect(r.maxConcurrent).toBe(2);
    const [x, y] = r.vms;
    expect(Math.abs(x!.endedAtMs - y!.endedAtMs)).toBeLessThan(60);
    expect(Math.abs(x!.endedAtMs - solo.totalTimeMs) / solo.totalTimeMs).toBeLessThan(0.1);
  });
});

describe('fleet strategies', () => {
  const fleet = buildFleet({
    ...base,
    links: [
      { name: 'up1', rate: '10gbit' },
      { name: 'up2', rate: '10gbit' },
      { name: 'up3', rate: '10gbit' },
    ],
    hosts: [
      { name: 'h1', link: 'up1' },
      { name: 'h2', link: 'up2' },
      { name: 'h3', link: 'up3' },
    ],
    vms: ['h1', 'h2', 'h3'].map((host) => ({ host, count: 6, ramMiB: [1024, 2048], workload: 'idle' })),
  });
  const concurrency = (r: ReturnType<typeof evacuate>, host?: string) => {
    const vs = r.vms.filter((v) => !host || v.host === host);
    return Math.max(
      ...vs.map(
        (v) => vs.filter((w) => w.startedAtMs <= v.startedAtMs && w.endedAtMs > v.startedAtMs).length,
      ),
    );
  };
  it('Nova: one at a time per host, in queue order', () => {
    const r = evacuate(fleet, novaStrategy());
    expect(r.completed).toBe(18);
    for (const h of ['h1', 'h2', 'h3']) expect(concurrency(r, h)).toBe(1);
    const order = fleet.vms.filter((v) => v.host === 'h1').map((v) => v.name);
    const started = r.vms
      .filter((v) => v.host === 'h1')
      .sort((a, b) => a.startedAtMs - b.startedAtMs)
      .map((v) => v.vm);
    expect(started).toEqual(order);
  });
  it('KubeVirt: at most 2 per node and 5 in the cluster', () => {
    const r = evacuate(fleet, kubevirtStrategy());
    expect(r.maxConcurrent).toBe(5);
    for (const h of ['h1', 'h2', 'h3']) expect(concurrency(r, h)).toBeLessThanOrEqual(2);
    expect(concurrency(r)).toBeLessThanOrEqual(5);
  });
  it('the planner orders by predicted cost, longest first', () => {
    const p = plannerStrategy(fleet);
    const cost = (name: string) => {
      const vm = fleet.vms.find((v) => v.name === name)!;
      return p.plan.get(vm)!.options[0]!.predicted.totalTimeMs;
    };
    const order = p.order(fleet.vms).map((v) => cost(v.name));
    expect(order).toEqual([...order].sort((a, b) => b - a));
  });
});

describe('the planner against fixed concurrency (seeded fleet)', () => {
  it('shorter than the fastest fixed strategy with no more SLO violations, by ≥25%; no more violations than the fastest fixed', () => {
    const fleet = buildFleet({
      ...base,
      links: [{ name: 'up', rate: '25gbit' }],
      setupS: 5,
      params: { channels: 2 },
      seed: 18,
      vms: [
        { name: 'web', host: 'h1', count: 12, ramMiB: [2048, 4096], workload: 'idle' },
        { name: 'app', host: 'h1', count: 6, ramMiB: 8192, workload: 'rate:1024:50000' },
        { name: 'cache', host: 'h1', count: 4, ramMiB: 16384, workload: 'hotcold:256:4096:90:300000' },
        { name: 'db', host: 'h1', count: 2, ramMiB: 32768, workload: 'rate:4096:150000' },
      ],
    });
    const results = runStrategies(fleet, ['fixed', 'planner']);
    const planner = results.find((r) => r.strategy === 'planner')!;
    const fixed = results.filter((r) => r.strategy !== 'planner');
    const fair = fixed
      .filter((r) => r.sloViolations <= planner.sloViolations)
      .sort((a, b) => a.makespanMs - b.makespanMs)[0]!;
    const fastest = [...fixed].sort((a, b) => a.makespanMs - b.makespanMs)[0]!;
    expect(planner.completed).toBe(24);
    expect(planner.makespanMs).toBeLessThanOrEqual(0.75 * fair.makespanMs);
    expect(planner.sloViolations).toBeLessThanOrEqual(fastest.sloViolations);
    expect(plannerVerdict(results)).toMatch(/^planner: makespan/);
  });
});

describe('fleet files', () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'kvm-fleet-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  it('JSON and YAML; every problem is one line naming the field', async () => {
    const f = path.join(dir, 'f.json');
    writeFileSync(f, JSON.stringify({ ...base, vms: [{ host: 'h1', ramMiB: 1024 }] }));
    expect((await readFleet(f)).vms).toHaveLength(1);
    const y = path.join(dir, 'f.yaml');
    writeFileSync(
      y,
      'links: [{name: up, rate: 10gbit}]\nhosts: [{name: h1, link: up}]\nvms:\n  - {host: h1, ramMiB: 1024, count: 3}\n',
    );
    expect((await readFleet(y)).vms).toHaveLength(3);
    const bad = (d: unknown) => () => buildFleet(d, 'x.json');
    expect(bad({ ...base, vms: [{ host: 'h1', ramMiB: 512, workload: 'random:8192' }] })).toThrow(
      /x\.json: vms\.0: workload random:8192 writes/,
    );
    expect(bad({ ...base, vms: [{ host: 'nope', ramMiB: 1024 }] })).toThrow(/host nope is not defined/);
    expect(
      bad({ ...base, links: [{ name: 'up', rate: '1gbit,loss=1%' }], vms: [{ host: 'h1', ramMiB: 1024 }] }),
    ).toThrow(/packet loss/);
    expect(bad({ ...base, vms: [{ host: 'h1', ramMiB: -1 }] })).toThrow(/^x\.json: vms\.0\.ramMiB/);
    expect(bad({ ...base, vms: [], extra: 1 })).toThrow(/x\.json: /);
  });
  it('the fleet simulator is exported from the package', () => {
    expect(typeof lib.sim.evacuate).toBe('function');
    expect(typeof lib.sim.plannerStrategy).toBe('function');
  });
});
