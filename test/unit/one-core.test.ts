import { afterEach, describe, expect, it } from 'vitest';
import type { MigrationInfo } from '../../src/core/sample.js';
import { parseWorkload } from '../../src/lab/workload.js';
import { MigrationSession } from '../../src/migration/session.js';
import { resolvePolicy } from '../../src/policy/index.js';
import { QmpClient } from '../../src/qmp/index.js';
import { workloadClasses } from '../../src/sim/model.js';
import { simulate } from '../../src/sim/simulate.js';
import { FakeQemu } from '../support/fake-qemu.js';

// One scripted scenario through two drivers of the same core: the simulator's model, and the QMP
// driver talking to a peer that plays the model's own samples back in real time. Same decisions.

const open: { close(): void }[] = [];
afterEach(() => {
  while (open.length) open.pop()!.close();
});

const MiB = 2 ** 20;

async function throughQmp(
  timeline: { info: MigrationInfo; atMs: number }[],
  policy: string,
  options: Record<string, unknown>,
) {
  let t0 = 0;
  let next = 0;
  const source = await FakeQemu.start({ ramBytes: 256 * MiB }, (cmd, _a, q) => {
    if (cmd === 'migrate') t0 = performance.now();
    if (cmd !== 'query-migrate' || t0 === 0) return undefined;
    // One sample per poll, never ahead of the model's clock: a slow poll (a loaded host) delays
    // the replay but never skips a sample, so every pass end is seen as the simulator saw it.
    const due = performance.now() - t0;
    if (next < timeline.length - 1 && timeline[next + 1]!.atMs <= due) next++;
    const at = timeline[next]!;
    if (at.info.status === 'completed') q.state.runState = 'postmigrate';
    return { return: at.info };
  });
  const destination = await FakeQemu.start({ runState: 'inmigrate', ramBytes: 256 * MiB }, (cmd) =>
    cmd === 'query-migrate' ? { return: { status: 'completed' } } : undefined,
  );
  open.push(source, destination);
  const [s, d] = await Promise.all([
    QmpClient.connect(source.socketPath),
    QmpClient.connect(destination.socketPath),
  ]);
  open.push(s, d);
  return new MigrationSession({
    source: s,
    destination: d,
    migrateUri: 'tcp:127.0.0.1:1',
    policy: resolvePolicy(policy, options),
    downtimeBudgetMs: 300,
    deadlineMs: 60_000,
    pollMs: 10,
  }).run();
}

const sequence = (ds: { pass: number; action: { kind: string } }[]) =>
  ds.map((d) => `${d.action.kind}@${d.pass}`);

describe('one controller core under every driver', () => {
  it.each([
    ['frs', {}],
    ['switch-at-pass', { pass: 3 }],
  ])(
    '%s: the simulator and the QMP driver make the same decisions',
    async (policy, options: Record<string, unknown>) => {
      const timeline: { info: MigrationInfo; atMs: number }[] = [];
      const sim = simulate({
        ramBytes: 256 * MiB,
        linkBps: 125e6,
        classes: workloadClasses(parseWorkload('random:100')),
        policy: resolvePolicy(policy, options),
        downtimeBudgetMs: 300,
        deadlineMs: 60_000,
        onObserve: (info, atMs) => timeline.push({ info, atMs }),
      });
      expect(sim.outcome).toBe('completed');
      expect(sequence(sim.decisions).some((d) => d.startsWith('switchover'))).toBe(true);
      const live = await throughQmp(timeline, policy, options);
      expect(live.outcome).toBe('completed');
      expect(sequence(live.decisions)).toEqual(sequence(sim.decisions));
      expect(live.passes.map((p) => p.pass)).toEqual(sim.passes.map((p) => p.pass));
    },
  );
});
