import { describe, expect, it } from 'vitest';
import { resolvePolicy } from '../../src/policy/index.js';
import * as lib from '../../src/index.js';
import { workloadClasses } from '../../src/sim/model.js';
import { simulate } from '../../src/sim/simulate.js';
import { linkBps, runSweep, simClasses } from '../../src/sim/sweep.js';
import { parseWorkload } from '../../src/util/specs.js';

const MiB = 2 ** 20;
const sweep = (extra: Record<string, unknown>) => () =>
  runSweep({
    workloads: ['random:200'],
    ramMiB: [512],
    links: ['1gbit'],
    policies: ['frs'],
    downtimeBudgetMs: 300,
    deadlineS: 30,
    ...extra,
  });

describe('simulator inputs: every one checked, one clear line', () => {
  it('a working set larger than RAM is refused, not "completed"', () => {
    expect(() => simClasses('random:8192', 512)).toThrow(/writes 8208 MiB: more than the guest's 512 MiB/);
    expect(() =>
      simulate({
        ramBytes: 512 * MiB,
        linkBps: 125e6,
        classes: workloadClasses(parseWorkload('random:8192')),
        policy: resolvePolicy('frs'),
        downtimeBudgetMs: 300,
        deadlineMs: 60_000,
      }),
    ).toThrow(/^simulator: the workload holds \d+ MiB but the guest has 512 MiB of RAM$/);
  });
  it('link options the model does not model are rejected; rates and delays within bounds', () => {
    expect(() => linkBps('1gbit,loss=5%')).toThrow(/does not model packet loss/);
    expect(() => linkBps('none')).toThrow(/needs a link rate/);
    expect(() => linkBps('5000gbit')).toThrow(/from 1 mbit to 1600 gbit/);
    expect(() => linkBps('1gbit,delay=20000ms')).toThrow(/delay over/);
    expect(linkBps('10gbit,delay=1ms')).toEqual({ bps: 1.25e9, rttMs: 2 });
  });
  it('RAM bounds; bad numbers', () => {
    expect(sweep({ ramMiB: [32] })).toThrow(/out of the simulator's range/);
    expect(() =>
      simulate({
        ramBytes: 512 * MiB,
        linkBps: -1,
        classes: workloadClasses(parseWorkload('random:100')),
        policy: resolvePolicy('frs'),
        downtimeBudgetMs: 300,
        deadlineMs: 60_000,
      }),
    ).toThrow(/the link rate must be a number above 0/);
  });
  it('--policy-opt: switch-at-pass and post-copy at once can be simulated; bad options are named', () => {
    const [run] = sweep({ policies: ['switch-at-pass'], policyOptions: ['pass=3'] })();
    expect(run!.policyConfig).toMatchObject({ pass: 3 });
    expect(run!.result.decisions.find((d) => d.action.kind === 'switchover')?.pass).toBe(3);
    const [pc] = sweep({
      policies: ['postcopy-after'],
      policyOptions: ['pass=0'],
      postcopyPermitted: true,
    })();
    expect(pc!.result.postcopy).toBe(true);
    expect(sweep({ policies: ['frs', 'mp'], policyOptions: ['x=1'] })).toThrow(/one policy/);
    expect(sweep({ policies: ['frs'], policyOptions: ['nonsense=1'] })).toThrow(/bad option for policy frs/);
    expect(sweep({ policies: ['frs'], policyOptions: ['novalue'] })).toThrow(/use key=value/);
  });
  it('simulate() is exported from the package', () => {
    expect(typeof lib.simulate).toBe('function');
    expect(typeof lib.sim.runSweep).toBe('function');
  });
});
