import { afterEach, describe, expect, it } from 'vitest';
import { recoverAt, recoverMigration } from '../../src/migration/recover.js';
import { MigrationSession, type SessionOptions } from '../../src/migration/session.js';
import { resolvePolicy } from '../../src/policy/index.js';
import { QmpClient, QmpConnectionError } from '../../src/qmp/index.js';
import { UsageError } from '../../src/util/errors.js';
import { FakeQemu, migrating, type Script } from '../support/fake-qemu.js';

// The safety invariants of architecture.md, each against a scripted QMP peer that does what a
// real QEMU will not do on demand: stay silent, drop the connection, answer garbage, vanish.

const open: { close(): void }[] = [];
afterEach(() => {
  while (open.length) open.pop()!.close();
});

async function pair(src: Script, dst: Script, srcState = {}, dstState = {}) {
  const source = await FakeQemu.start(srcState, src);
  const destination = await FakeQemu.start({ runState: 'inmigrate', ...dstState }, dst);
  open.push(source, destination);
  const [s, d] = await Promise.all([
    QmpClient.connect(source.socketPath, { commandTimeoutMs: 2000 }),
    QmpClient.connect(destination.socketPath, { commandTimeoutMs: 2000 }),
  ]);
  open.push(s, d);
  return { source, destination, s, d };
}

function session(s: QmpClient, d: QmpClient, extra: Partial<SessionOptions> = {}) {
  return new MigrationSession({
    source: s,
    destination: d,
    migrateUri: 'tcp:127.0.0.1:1',
    policy: resolvePolicy('stock'),
    downtimeBudgetMs: 300,
    deadlineMs: 20_000,
    pollMs: 20,
    destinationTimeoutMs: 1500,
    ...extra,
  });
}

/** A source that iterates for a few polls, then reports `status` (and whatever `then` does). */
function sourceThat(status: string, after = 3, then?: (q: FakeQemu) => void): Script {
  let polls = 0;
  return (cmd, _args, q) => {
    if (cmd !== 'query-migrate' || q.state.migration.status === undefined) return undefined;
    if (++polls < after) return { return: migrating('active', { syncs: 1 + Math.floor(polls / 2) }) };
    if (polls === after) {
      q.state.migration = migrating(status, { syncs: 3, remaining: 0 });
      if (status === 'completed') q.state.runState = 'postmigrate';
      then?.(q);
    }
    return undefined;
  };
}

const silentMigrate: Script = (cmd) => (cmd === 'query-migrate' ? 'silent' : undefined);

describe('a source whose guest may have moved is resumed only when the destination provably lacks it', () => {
  it('source completed, destination does not answer → both left alone, guest runs on: none', async () => {
    const { source, destination, s, d } = await pair(sourceThat('completed'), silentMigrate);
    const r = await session(s, d).run();
    expect(r.guestRunsOn).toBe('none');
    expect(r.outcome).toBe('failed');
    expect(r.reason).toMatch(/operator decides/);
    expect(source.commands()).not.toContain('cont');
    expect(destination.commands()).not.toContain('cont');
  });

  it('source completed, destination process gone → the source (intact, stopped) is resumed', async () => {
    const peers: { dst?: FakeQemu } = {};
    const { source, destination, s, d } = await pair(
      sourceThat('completed', 3, () => peers.dst!.vanish()),
      () => undefined,
    );
    peers.dst = destination;
    const r = await session(s, d).run();
    expect(r.guestRunsOn).toBe('source');
    expect(r.outcome).toBe('failed');
    expect(source.commands()).toContain('cont');
  });

  it('source completed, destination reports completed → the destination is started, never the source', async () => {
    const { source, destination, s, d } = await pair(sourceThat('completed'), (cmd, _a, q) => {
      if (cmd === 'query-migrate') q.state.runState = 'paused';
      return cmd === 'query-migrate' ? { return: { status: 'completed' } } : undefined;
    });
    const r = await session(s, d).run();
    expect(r.outcome).toBe('completed');
    expect(r.guestRunsOn).toBe('destination');
    expect(destination.commands()).toContain('cont');
    expect(source.commands()).not.toContain('cont');
  });

  it('a pre-copy that fails leaves the source running', async () => {
    const { source, s, d } = await pair(sourceThat('failed'), () => undefined);
    const r = await session(s, d).run();
    expect(r.guestRunsOn).toBe('source');
    expect(source.state.runState).toBe('running');
  });
});

describe('post-copy is latched and never cancelled', () => {
  const postcopyAfter1 = { policy: resolvePolicy('postcopy-after', { pass: 1 }), postcopyPermitted: true };

  /** Iterates one pass, then answers `migrate-start-postcopy` as `onSwitch` says. */
  function switchingSource(onSwitch: (q: FakeQemu) => ReturnType<Script>, afterSwitch: () => object): Script {
    let switched = false;
    let polls = 0;
    return (cmd, _args, q) => {
      if (cmd === 'migrate-start-postcopy') {
        switched = true;
        return onSwitch(q);
      }
      if (cmd !== 'query-migrate' || q.state.migration.status === undefined) return undefined;
      if (switched) return { return: afterSwitch() };
      return { return: migrating('active', { syncs: ++polls > 2 ? 2 : 1 }) };
    };
  }

  it('the connection drops right after migrate-start-postcopy: after reconnecting, a paused post-copy is not resumed', async () => {
    const src = switchingSource(
      (q) => {
        q.state.runState = 'paused';
        return 'drop';
      },
      () => migrating('postcopy-paused', { syncs: 2 }),
    );
    const { source, destination, s, d } = await pair(src, silentMigrate);
    // The destination never answers: recovery is tried until its timeout, then both are left alone.
    const r = await session(s, d, { ...postcopyAfter1, postcopyRecovery: { timeoutMs: 1500 } }).run();
    expect(r.guestRunsOn).toBe('none');
    expect(r.decisions.some((x) => /recovery attempt 1/.test(x.action.reason))).toBe(true);
    expect(source.commands()).not.toContain('cont');
    expect(source.commands()).not.toContain('migrate_cancel');
    expect(destination.commands()).not.toContain('cont');
  });

  it('a paused post-copy with both sides alive is recovered over a new connection and completes', async () => {
    let resumed = false;
    const src = switchingSource(
      () => ({ return: {} }),
      () => (resumed ? migrating('completed', { syncs: 3 }) : migrating('postcopy-paused', { syncs: 2 })),
    );
    const { source, destination, s, d } = await pair(
      (cmd, args, q) => {
        if (cmd === 'migrate' && args.resume === true) {
          resumed = true;
          return { return: {} };
        }
        return src(cmd, args, q);
      },
      (cmd) =>
        cmd === 'query-migrate'
          ? { return: { status: resumed ? 'completed' : 'postcopy-paused' } }
          : undefined,
    );
    const r = await session(s, d, { ...postcopyAfter1, incomingUri: 'tcp:127.0.0.1:1' }).run();
    expect(destination.received.find((c) => c.command === 'migrate-recover')?.args.uri).toBe(
      'tcp:127.0.0.1:1',
    );
    expect(source.received.some((c) => c.command === 'migrate' && c.args.resume === true)).toBe(true);
    expect(source.commands()).not.toContain('migrate_cancel');
    expect(r.outcome).toBe('completed');
    expect(r.guestRunsOn).toBe('destination');
  });

  it('a reply that fails its schema during post-copy does not lead to migrate_cancel', async () => {
    const src = switchingSource(
      () => ({ return: {} }),
      () => ({ status: 'postcopy-active', ram: { transferred: 'lots' } }),
    );
    const { source, s, d } = await pair(src, (cmd) =>
      cmd === 'query-migrate' ? { return: { status: 'completed' } } : undefined,
    );
    const r = await session(s, d, postcopyAfter1).run();
    expect(source.commands()).toContain('migrate-start-postcopy');
    expect(source.commands()).not.toContain('migrate_cancel');
    expect(source.commands()).not.toContain('cont');
    expect(r.guestRunsOn).toBe('destination');
  });

  it('an interrupt during post-copy waits instead of cancelling', async () => {
    const ctl = new AbortController();
    let polls = 0;
    const src = switchingSource(
      () => ({ return: {} }),
      () => {
        if (++polls === 3) ctl.abort();
        return polls > 6 ? migrating('completed', { syncs: 3 }) : migrating('postcopy-active', { syncs: 2 });
      },
    );
    const { source, s, d } = await pair(src, (cmd) =>
      cmd === 'query-migrate' ? { return: { status: 'completed' } } : undefined,
    );
    const r = await session(s, d, { ...postcopyAfter1, signal: ctl.signal }).run();
    expect(source.commands()).not.toContain('migrate_cancel');
    expect(r.outcome).toBe('completed');
    expect(r.reason).toMatch(/post-copy, which cannot be cancelled/);
  });
});

describe('inputs and settings', () => {
  it('refuses exec: URIs before touching either QEMU', async () => {
    const { source, destination, s, d } = await pair(
      () => undefined,
      () => undefined,
    );
    const run = session(s, d, { migrateUri: 'exec:cat > /tmp/x' }).run();
    await expect(run).rejects.toThrow(UsageError);
    await expect(run).rejects.toThrow(/exec: runs a shell/);
    expect(source.received).toEqual([]);
    expect(destination.received).toEqual([]);
  });

  it.each(['tcp:10.0.0.2:4444', 'unix:/run/mig.sock', 'rdma:10.0.0.2:4444', 'fd:migfd'])(
    'accepts %s',
    async (uri) => {
      const { source, s, d } = await pair(sourceThat('completed'), (cmd) =>
        cmd === 'query-migrate' ? { return: { status: 'completed' } } : undefined,
      );
      await session(s, d, { migrateUri: uri }).run();
      expect(source.received.find((r) => r.command === 'migrate')?.args.uri).toBe(uri);
    },
  );

  it.each(['file:/tmp/x', 'EXEC:true', 'tcp:', 'http://x'])('refuses %s', async (uri) => {
    const { s, d } = await pair(
      () => undefined,
      () => undefined,
    );
    await expect(session(s, d, { migrateUri: uri }).run()).rejects.toThrow(UsageError);
  });

  it('puts back the parameters and capabilities it changed, after a cancelled migration', async () => {
    const { source, destination, s, d } = await pair(
      (cmd, _a, q) =>
        cmd === 'query-migrate' && q.state.migration.status === 'active'
          ? { return: migrating('active') }
          : undefined,
      () => undefined,
    );
    const before = { params: { ...source.state.parameters }, caps: { ...source.state.capabilities } };
    const dstCaps = { ...destination.state.capabilities };
    const r = await session(s, d, {
      deadlineMs: 200,
      maxBandwidthBps: 1e6,
      postcopyBandwidthBps: 2e6,
      downtimeBudgetMs: 700,
    }).run();
    expect(r.outcome).toBe('cancelled');
    expect(
      source.received.some((c) => c.command === 'migrate-set-parameters' && c.args['max-bandwidth'] === 1e6),
    ).toBe(true);
    expect(source.state.parameters).toEqual(before.params);
    expect(source.state.capabilities).toEqual(before.caps);
    expect(destination.state.capabilities).toEqual(dstCaps);
  });

  it('leaves max-bandwidth alone unless asked', async () => {
    const { source, s, d } = await pair(sourceThat('completed'), (cmd) =>
      cmd === 'query-migrate' ? { return: { status: 'completed' } } : undefined,
    );
    await session(s, d).run();
    const set = source.received.filter((c) => c.command === 'migrate-set-parameters');
    expect(set.some((c) => 'max-bandwidth' in c.args)).toBe(false);
  });

  it('a garbage line from the source in pre-copy: reconnects and carries on', async () => {
    let polls = 0;
    const { source, s, d } = await pair(
      (cmd, _a, q) => {
        if (cmd !== 'query-migrate' || q.state.migration.status === undefined) return undefined;
        polls++;
        if (polls === 2) return 'garbage';
        if (polls > 5) {
          q.state.runState = 'postmigrate';
          return { return: migrating('completed', { syncs: 2 }) };
        }
        return { return: migrating('active') };
      },
      (cmd) => (cmd === 'query-migrate' ? { return: { status: 'completed' } } : undefined),
    );
    const r = await session(s, d).run();
    expect(r.outcome).toBe('completed');
    expect(r.decisions.some((x) => /reconnected/.test(x.action.reason))).toBe(true);
    expect(source.commands()).not.toContain('migrate_cancel');
  });
});

describe('recover obeys the same rules', () => {
  it('source completed, destination silent → starts nothing, operator decides', async () => {
    const { source, destination, s, d } = await pair(() => undefined, silentMigrate, {
      runState: 'postmigrate',
      migration: { status: 'completed' },
    });
    const r = await recoverMigration(s, d, { waitMs: 500 });
    expect(r.running).toBe('none');
    expect(source.commands()).not.toContain('cont');
    expect(destination.commands()).not.toContain('cont');
  });

  it('source completed, destination gone (its socket refuses) → resumes the source', async () => {
    const source = await FakeQemu.start({ runState: 'postmigrate', migration: { status: 'completed' } });
    const gone = await FakeQemu.start();
    open.push(source, gone);
    const path = gone.socketPath;
    gone.vanish();
    await expect(QmpClient.connect(path, { timeoutMs: 500 })).rejects.toThrow(QmpConnectionError);
    const r = await recoverAt(source.socketPath, path);
    expect(r?.running).toBe('source');
    expect(source.commands()).toContain('cont');
  });

  it('post-copy paused, both sides alive → waits, then leaves both alone', async () => {
    const { source, s, d } = await pair(() => undefined, silentMigrate, {
      runState: 'paused',
      migration: { status: 'postcopy-paused' },
    });
    const r = await recoverMigration(s, d, { waitMs: 300 });
    expect(r.running).toBe('none');
    expect(source.commands()).not.toContain('cont');
    expect(source.commands()).not.toContain('migrate_cancel');
  });

  it('source completed, destination still loading → waits for its verdict, then resumes the destination', async () => {
    // The controller died right after forcing the switchover: QEMU finished the stop-and-copy on
    // its own and the destination (started with -S) is still loading what it received.
    let polls = 0;
    const { source, destination, s, d } = await pair(
      () => undefined,
      (cmd, _a, q) => {
        if (cmd !== 'query-migrate') return undefined;
        if (++polls < 4) return { return: { status: 'active' } };
        q.state.runState = 'paused';
        return { return: { status: 'completed' } };
      },
      { runState: 'postmigrate', migration: { status: 'completed' } },
    );
    const r = await recoverMigration(s, d, { waitMs: 5000 });
    expect(r.did).toMatch(/waited for the destination/);
    expect(r.running).toBe('destination');
    expect(destination.commands()).toContain('cont');
    expect(source.commands()).not.toContain('cont');
  });

  it('pre-copy under way → cancelled, the source runs', async () => {
    const { source, s, d } = await pair(
      () => undefined,
      () => undefined,
      {
        migration: migrating('active'),
      },
    );
    const r = await recoverMigration(s, d, { waitMs: 1000 });
    expect(r.running).toBe('source');
    expect(source.commands()).toContain('migrate_cancel');
  });
});

describe('evacuation: a plan never raises the bandwidth cap the operator set', () => {
  it("a planner share above the source's own max-bandwidth is lowered to it; one below is used", async () => {
    const { evacuateQmp } = await import('../../src/migration/evacuate.js');
    const completes = sourceThat('completed');
    const dstCompleted: Script = (cmd) =>
      cmd === 'query-migrate' ? { return: { status: 'completed' } } : undefined;
    const capped = await FakeQemu.start({ parameters: { 'max-bandwidth': 50e6 } }, completes);
    const roomy = await FakeQemu.start({ parameters: { 'max-bandwidth': 500e6 } }, sourceThat('completed'));
    const d1 = await FakeQemu.start({ runState: 'inmigrate' }, dstCompleted);
    const d2 = await FakeQemu.start({ runState: 'inmigrate' }, dstCompleted);
    open.push(capped, roomy, d1, d2);
    const vm = (name: string, source: FakeQemu, destination: FakeQemu) => ({
      name,
      source: source.socketPath,
      destination: destination.socketPath,
      migrateUri: 'tcp:127.0.0.1:1',
      policy: resolvePolicy('stock'),
      downtimeBudgetMs: 300,
      deadlineMs: 20_000,
      maxBandwidthBps: 125e6,
    });
    await evacuateQmp([vm('capped', capped, d1), vm('roomy', roomy, d2)], 1);
    const setBandwidth = (q: FakeQemu) =>
      q.received.find((c) => c.command === 'migrate-set-parameters' && 'max-bandwidth' in c.args)?.args[
        'max-bandwidth'
      ];
    expect(setBandwidth(capped)).toBe(50e6);
    expect(setBandwidth(roomy)).toBe(125e6);
  });
});
