import { EventEmitter } from 'node:events';
import { describe, expect, it } from 'vitest';
import type { RunEvent } from '../../src/core/result.js';
import type { MigrationInfo } from '../../src/core/sample.js';
import { UNLIMITED_SPEED_MIBPS, type LibvirtClient, type MigrationOutcome } from '../../src/libvirt/index.js';
import { LibvirtUnreachableError } from '../../src/libvirt/errors.js';
import { LibvirtSession, speedMiBps, type LibvirtSessionOptions } from '../../src/libvirt/libvirt-session.js';
import type { RegionSource } from '../../src/migration/region-sampler.js';
import { resolvePolicy } from '../../src/policy/index.js';
import { migrating } from '../support/fake-qemu.js';

// The libvirt driver's operator contract against a scripted libvirt connection (the real daemon
// is in test/integration/libvirt-*.test.ts): its speed limits put back on every way out, the
// control socket's interface (request, status), the outcome event, and what it says about region sets.

/** A libvirt connection whose job iterates (one pass per poll) until aborted or `failWith` hits. */
class ScriptedLibvirt extends EventEmitter {
  readonly uri = 'qemu:///scripted';
  speed = 777;
  // As libvirt reports an unset post-copy limit: QEMU's default max-postcopy-bandwidth, 0.
  postcopySpeed = 0;
  downtime = 500;
  readonly speedsSeen: number[] = [];
  private polls = 0;
  private over: ((o: MigrationOutcome) => void) | undefined;
  private ended = false;

  constructor(private readonly failWith?: { atPoll: number; error: Error }) {
    super();
  }

  async domainState() {
    return { state: 'running', reason: 'unpaused' };
  }
  async assertMigrating() {
    return {};
  }
  async maxDowntime() {
    return this.downtime;
  }
  async setMaxDowntime(_d: string, ms: number) {
    this.downtime = ms;
  }
  async maxSpeed(_d: string, o: { postcopy?: boolean } = {}) {
    return o.postcopy ? this.postcopySpeed : this.speed;
  }
  async setMaxSpeed(_d: string, mib: number, o: { postcopy?: boolean } = {}) {
    if (o.postcopy) this.postcopySpeed = mib;
    else this.speed = mib;
    this.speedsSeen.push(mib);
  }
  async startMigration(domain: string) {
    const done = new Promise<MigrationOutcome>((r) => (this.over = r));
    return { domain, startedAt: performance.now(), done };
  }
  async jobStats(_d: string, o: { completed?: boolean } = {}): Promise<MigrationInfo> {
    if (o.completed || this.ended) return { status: 'none' };
    this.polls++;
    if (this.failWith && this.polls >= this.failWith.atPoll) throw this.failWith.error;
    return migrating('active', {
      syncs: this.polls,
      transferred: this.polls * 1e5,
      remaining: 3e8,
    }) as MigrationInfo;
  }
  async abortJob() {
    this.ended = true;
    this.over?.({ outcome: 'cancelled', error: 'operation aborted', endedAt: performance.now() });
  }
  /** libvirt finishes the job: its job-completed event, then the migration call returns. */
  complete(at: number) {
    this.ended = true;
    const info = { status: 'completed' } as MigrationInfo;
    this.emit('event', { kind: 'job-completed', domain: 'vm1', at, info });
    this.over?.({ outcome: 'completed', final: info, endedAt: performance.now() });
  }
  async startPostCopy() {}
  async suspend() {}
  async resume() {}
}

function session(lv: ScriptedLibvirt, extra: Partial<LibvirtSessionOptions> = {}) {
  return new LibvirtSession({
    source: lv as unknown as LibvirtClient,
    domain: 'vm1',
    start: { destUri: 'qemu+unix:///system?socket=/elsewhere' },
    policy: resolvePolicy('stock'),
    downtimeBudgetMs: 300,
    deadlineMs: 60_000,
    pollMs: 5,
    maxBandwidthBps: 200e6 / 8,
    ...extra,
  });
}

/** Waits until the session has observed pass `n`. */
async function passReached(s: LibvirtSession, n: number) {
  while ((s.status?.pass ?? 0) < n) await new Promise((r) => setTimeout(r, 5));
}

describe('LibvirtSession: speed limits', () => {
  it('libvirt takes whole MiB/s: rounded down, never above the cap, at least 1', () => {
    expect(speedMiBps(200e6 / 8)).toBe(23); // 23.84 MiB/s
    expect(speedMiBps(2 ** 20)).toBe(1);
    expect(speedMiBps(1000)).toBe(1);
    expect(speedMiBps(1e30)).toBe(UNLIMITED_SPEED_MIBPS);
  });

  it('sets the job speed, answers the control socket, and puts the old speed back after an operator abort', async () => {
    const lv = new ScriptedLibvirt();
    const events: RunEvent[] = [];
    let started = 0;
    const s = session(lv, {
      postcopyBandwidthBps: 2 ** 30,
      onEvent: (e) => events.push(e),
      onStarted: () => started++,
    });
    expect(s.status).toBeUndefined();
    expect(await s.request({ kind: 'abort' })).toMatchObject({
      accepted: false,
      detail: expect.stringMatching(/not started/),
    });
    const run = s.run();
    await passReached(s, 2);
    expect(started).toBe(1);
    expect(lv.speed).toBe(23);
    expect(lv.postcopySpeed).toBe(1024);
    expect(s.status).toMatchObject({ status: 'active', downtimeLimitMs: 300, postcopy: false });
    expect(await s.request({ kind: 'postcopy' })).toMatchObject({ accepted: false });
    expect(await s.request({ kind: 'abort' })).toMatchObject({ accepted: true, detail: 'cancel' });
    const r = await run;
    expect(r).toMatchObject({ outcome: 'cancelled', guestRunsOn: 'source' });
    expect(lv.speed).toBe(777);
    expect(lv.postcopySpeed).toBe(0);
    expect(lv.downtime).toBe(500);
    expect(events.at(-1)).toEqual({ type: 'outcome', result: r });
  });

  it.each([
    ['contact with libvirt lost', new LibvirtUnreachableError('libvirtd closed the connection')],
    ['an unexpected error', new Error('boom')],
  ])('puts the old speed back when %s ends the run', async (_what, error) => {
    const lv = new ScriptedLibvirt({ atPoll: 3, error });
    const run = session(lv).run();
    if (error instanceof LibvirtUnreachableError) await run;
    else await expect(run).rejects.toThrow('boom');
    expect(lv.speedsSeen).toEqual([23, 777]);
    expect(lv.speed).toBe(777);
  });

  it('leaves the speed alone without --bandwidth', async () => {
    const lv = new ScriptedLibvirt({ atPoll: 2, error: new LibvirtUnreachableError('gone') });
    await session(lv, { maxBandwidthBps: undefined }).run();
    expect(lv.speedsSeen).toEqual([]);
  });
});

describe('LibvirtSession: region sets', () => {
  const mp = resolvePolicy('mp');

  it('attaches the sampler and reads it at pass ends (not at every poll)', async () => {
    const lv = new ScriptedLibvirt({ atPoll: 40, error: new LibvirtUnreachableError('gone') });
    let reads = 0;
    const source: RegionSource = {
      source: 'sampling',
      regionBytes: 2 << 20,
      regionCount: 256,
      changed: () => (reads++, [1, 2, 3]),
      close: () => undefined,
    };
    const r = await session(lv, {
      policy: mp,
      regionSampler: async () => source,
      regionSampleMs: 60_000,
    }).run();
    expect(r.regionSource).toBe('sampling');
    // Every poll is a new pass here: one read per pass end, none in between.
    expect(reads).toBeGreaterThan(30);
    expect(reads).toBeLessThanOrEqual(40);
    expect(r.decisions.some((d) => d.action.reason.startsWith('mp[sampling]'))).toBe(true);
    expect(r.decisions.some((d) => /no region source/.test(d.action.reason))).toBe(false);
  });

  it.each([
    [{ regionsUnavailable: 'no QEMU process for domain vm1 on this host' }, /no QEMU process for domain vm1/],
    [
      {
        regionSampler: () => Promise.reject(new Error('cannot read QEMU 42 memory')),
        regionsUnavailable: undefined,
      },
      /cannot read QEMU 42 memory/,
    ],
  ])('without regions, says why in the decision log, and mp runs as its FRS fallback', async (extra, why) => {
    const lv = new ScriptedLibvirt({ atPoll: 8, error: new LibvirtUnreachableError('gone') });
    const r = await session(lv, { policy: mp, ...extra }).run();
    expect(r.regionSource).toBeUndefined();
    const reasons = r.decisions.map((d) => d.action.reason);
    expect(reasons.find((x) => x.startsWith('no region sets'))).toMatch(why);
    // mp never classified (its FRS fallback decides).
    expect(reasons.some((x) => x.startsWith('mp['))).toBe(false);
  });
});

describe('LibvirtSession: beside an orchestrator', () => {
  /** Runs until the decision log has a line matching `until`, with `meddle` done by "another party" at pass 2. */
  async function meddled(lv: ScriptedLibvirt, meddle: () => void, until: RegExp, extra = {}) {
    let noted = false;
    const s = session(lv, {
      foreignCheckMs: 10,
      postcopyBandwidthBps: 2 ** 30,
      onDecision: (d) => (noted ||= until.test(d.action.reason)),
      ...extra,
    });
    const run = s.run();
    await passReached(s, 2);
    meddle();
    while (!noted) await new Promise((r) => setTimeout(r, 5));
    await s.request({ kind: 'abort' });
    return run;
  }

  it('notices another party setting the bandwidth, says so, keeps it, and does not put its own back over it', async () => {
    const lv = new ScriptedLibvirt();
    const r = await meddled(lv, () => (lv.speed = 50), /another party set the bandwidth/);
    const note = r.decisions.map((d) => d.action.reason).find((x) => x.includes('another party'));
    expect(note).toMatch(
      /another party set the bandwidth to 50 MiB\/s \(419 Mbit\/s\): was 23 MiB\/s \(193 Mbit\/s\); kvmigrate keeps it \(does not set it back/,
    );
    // Only kvmigrate's own settings: 23 (pre-copy), 1024 (post-copy), then the post-copy one put back.
    expect(lv.speedsSeen).toEqual([23, 1024, 0]);
    expect(lv.speed).toBe(50);
    expect(r.decisions.filter((d) => d.action.reason.includes('another party'))).toHaveLength(1);
  });

  it('without --bandwidth, notes the change and never sets a speed', async () => {
    const lv = new ScriptedLibvirt();
    const r = await meddled(lv, () => (lv.speed = 100), /another party/, {
      maxBandwidthBps: undefined,
      postcopyBandwidthBps: undefined,
    });
    expect(r.decisions.map((d) => d.action.reason)).toContainEqual(
      expect.stringMatching(
        /bandwidth to 100 MiB\/s .*: was 777 MiB\/s .*; kvmigrate keeps it \(does not set it back/,
      ),
    );
    expect(lv.speedsSeen).toEqual([]);
    expect(lv.speed).toBe(100);
  });

  it("a changed post-copy bandwidth is the other party's too", async () => {
    const lv = new ScriptedLibvirt();
    await meddled(lv, () => (lv.postcopySpeed = 64), /post-copy phase's bandwidth to 64 MiB\/s/);
    expect(lv.postcopySpeed).toBe(64);
    expect(lv.speed).toBe(777); // the pre-copy one was still ours: put back
  });

  it('adopts another downtime limit (the policy sees it) and leaves it in place at the end', async () => {
    const lv = new ScriptedLibvirt();
    const r = await meddled(lv, () => (lv.downtime = 2000), /downtime limit was changed outside/);
    expect(r.decisions.map((d) => d.action.reason)).toContainEqual(
      expect.stringMatching(/downtime limit was changed outside kvmigrate: 300 → 2000 ms/),
    );
    expect(lv.downtime).toBe(2000);
    expect(lv.speed).toBe(777);
  });

  it('puts its own downtime limit back when nobody else changed it', async () => {
    const lv = new ScriptedLibvirt();
    const s = session(lv, { foreignCheckMs: 10 });
    const run = s.run();
    await passReached(s, 3);
    expect(lv.downtime).toBe(300);
    await s.request({ kind: 'abort' });
    const r = await run;
    expect(r.decisions.some((d) => /another party|outside kvmigrate/.test(d.action.reason))).toBe(false);
    expect(lv.downtime).toBe(500);
  });
});

describe('LibvirtSession: clock', () => {
  it("the source's completion is libvirt's job-completed event", async () => {
    const lv = new ScriptedLibvirt();
    const s = session(lv);
    const run = s.run();
    await passReached(s, 2);
    const at = performance.now();
    lv.complete(at);
    const r = await run;
    expect(r).toMatchObject({ outcome: 'completed', guestRunsOn: 'destination' });
    expect(r.clock.sourceCompletedAt).toBe(at);
    expect(r.clock.sourceCompletedAt).toBeGreaterThan(r.clock.startedAt);
    expect(r.clock.endedAt).toBeGreaterThanOrEqual(at);
  });

  it('has none when the job did not complete', async () => {
    const lv = new ScriptedLibvirt();
    const s = session(lv);
    const run = s.run();
    await passReached(s, 2);
    await s.request({ kind: 'abort' });
    expect((await run).clock.sourceCompletedAt).toBeUndefined();
  });
});
