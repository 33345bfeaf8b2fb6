import { afterEach, describe, expect, it } from 'vitest';
import type { RegionSource } from '../../src/core/regions.js';
import { MigrationSession, type SessionOptions } from '../../src/migration/session.js';
import { resolvePolicy } from '../../src/policy/index.js';
import { QmpClient } from '../../src/qmp/index.js';
import { FakeQemu, migrating, type Script } from '../support/fake-qemu.js';

// The QMP session without region sets: a sampler that is missing, fails to open, or fails while the
// migration runs is said in the decision log and the run goes on (mp decides as its FRS fallback);
// a sampler that works changes nothing. Against scripted QMP peers.

const open: { close(): void }[] = [];
afterEach(() => {
  while (open.length) open.pop()!.close();
});

let polls = 0;
/** One pass per poll, never converging by itself; completes at pass 12, or once the downtime-limit is raised past 10 s. */
const source: Script = (cmd, args, q) => {
  if (cmd === 'migrate-set-parameters' && Number(args['downtime-limit']) >= 10_000)
    q.state.migration = migrating('completed', { syncs: 99, remaining: 0 });
  if (cmd !== 'query-migrate' || q.state.migration.status === undefined) return undefined;
  if (q.state.migration.status === 'completed') {
    q.state.runState = 'postmigrate';
    return undefined;
  }
  const syncs = ++polls;
  const m = migrating(syncs >= 12 ? 'completed' : 'active', {
    syncs,
    transferred: syncs * 1e5,
    remaining: syncs >= 12 ? 0 : 3e8,
  });
  // A guest dirtying faster than the link sends: QEMU cannot converge by itself.
  q.state.migration = { ...m, ram: { ...(m.ram as object), 'dirty-pages-rate': 1e6, 'page-size': 4096 } };
  return undefined;
};
const destination: Script = (cmd, _a, q) => {
  if (cmd === 'query-migrate') q.state.runState = 'paused';
  return cmd === 'query-migrate' ? { return: { status: 'completed' } } : undefined;
};

async function run(extra: Partial<SessionOptions>) {
  polls = 0;
  const src = await FakeQemu.start({}, source);
  const dst = await FakeQemu.start({ runState: 'inmigrate' }, destination);
  open.push(src, dst);
  const [s, d] = await Promise.all([QmpClient.connect(src.socketPath), QmpClient.connect(dst.socketPath)]);
  open.push(s, d);
  const r = await new MigrationSession({
    source: s,
    destination: d,
    migrateUri: 'tcp:127.0.0.1:1',
    policy: resolvePolicy('mp'),
    downtimeBudgetMs: 300,
    deadlineMs: 20_000,
    pollMs: 5,
    regionSampleMs: 60_000,
    destinationTimeoutMs: 1500,
    ...extra,
  }).run();
  return { r, reasons: r.decisions.map((d) => d.action.reason) };
}

function sampler(failAtRead?: number): { reads: () => number; open: () => Promise<RegionSource> } {
  let reads = 0;
  const rs: RegionSource = {
    source: 'sampling',
    regionBytes: 2 << 20,
    regionCount: 256,
    changed: () => {
      if (++reads === failAtRead) throw new Error('cannot read QEMU 42 memory: ESRCH');
      return [1, 2, 3];
    },
    close: () => undefined,
  };
  return { reads: () => reads, open: async () => rs };
}

describe('QMP session: region sets unavailable', () => {
  it('a sampler that works: regions attached, mp classifies, no note', async () => {
    const s = sampler();
    const { r, reasons } = await run({ regionSampler: s.open });
    expect(r.regionSource).toBe('sampling');
    expect(s.reads()).toBeGreaterThan(0);
    expect(reasons.some((x) => x.startsWith('mp[sampling]'))).toBe(true);
    expect(reasons.some((x) => x.startsWith('no region sets'))).toBe(false);
  });

  it.each([
    [
      'the sampler fails to open',
      { regionSampler: () => Promise.reject(new Error('cannot read QEMU 42 memory: EACCES')) },
      /^no region sets \(cannot read QEMU 42 memory: EACCES\): the policy decides without them$/,
    ],
    [
      'there is no sampler, and the caller says why',
      { regionsUnavailable: "the source's QMP is a TCP address" },
      /^no region sets \(the source's QMP is a TCP address\)/,
    ],
    ['there is no sampler', {}, /^no region sets \(no region source given\)/],
  ])('%s: says why in the decision log, and the run goes on without regions', async (_what, extra, why) => {
    const { r, reasons } = await run(extra);
    expect(r.outcome).toBe('completed');
    expect(r.regionSource).toBeUndefined();
    expect(reasons[0]).toMatch(why);
    expect(reasons.some((x) => x.startsWith('mp['))).toBe(false);
  });

  it('a sampler that fails while the migration runs: said once, the run goes on without regions', async () => {
    const s = sampler(3);
    const { r, reasons } = await run({ regionSampler: s.open });
    expect(r.outcome).toBe('completed');
    expect(s.reads()).toBe(3); // never read again
    expect(r.regionSource).toBeUndefined();
    const lost = reasons.filter((x) => x.startsWith('no region sets from now on'));
    expect(lost).toEqual([
      'no region sets from now on (reading the sampling region source failed: cannot read QEMU 42 memory: ESRCH): the policy decides without them',
    ]);
    expect(reasons.slice(reasons.indexOf(lost[0]!)).some((x) => x.startsWith('mp['))).toBe(false);
  });
});
