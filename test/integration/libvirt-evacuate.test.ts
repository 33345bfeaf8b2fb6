import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import type { LibvirtLabGuest, LibvirtPair } from '../../src/lab/libvirt-pair.js';
import { parseWorkload } from '../../src/lab/workload.js';
import type { LibvirtClient } from '../../src/libvirt/index.js';
import { EXIT } from '../../src/util/errors.js';
import { kvmigrateChild, kvmigrateSync } from '../support/cli.js';
import { pairPerFile } from './libvirt-helpers.js';

// `kvmigrate evacuate PLAN` through the libvirt driver, on a real libvirt 11 pair (two daemons,
// the destination behind the lab's emulated 1 Gbit link) with real QEMU TCG guests; the CLI is
// the built one, run as a child. No mocks.

const WORKLOAD = 'rate:8:500';
const dir = mkdtempSync(path.join(os.tmpdir(), 'evac-libvirt-'));
const t0 = performance.now();
let pair: LibvirtPair;
let src: LibvirtClient;
let dst: LibvirtClient;
const guests: LibvirtLabGuest[] = [];

// Registered first, so it runs after the pair's teardown.
afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
  console.log(`libvirt evacuate tests: ${((performance.now() - t0) / 1000).toFixed(1)} s`);
});

pairPerFile((f) => ({ pair, src, dst } = f), { log: true });

/** Two 128 MiB guests on the source daemon, booted once for the file. */
async function twoGuests(): Promise<LibvirtLabGuest[]> {
  while (guests.length < 2)
    guests.push(await pair.startGuest({ workload: parseWorkload(WORKLOAD), ramMiB: 128 }));
  return guests;
}

/** A plan file for these VMs (each its own destination port: two destination QEMUs listen at once). */
function writePlan(file: string, vms: object[], plan: object = {}): string {
  const f = path.join(dir, file);
  writeFileSync(
    f,
    JSON.stringify({ strategy: 2, link: '1gbit', policy: 'frs', deadlineS: 60, ...plan, vms }),
  );
  return f;
}

const libvirtVm = (g: LibvirtLabGuest, i: number, extra: object = {}) => ({
  name: `vm${i + 1}`,
  libvirt: pair.source.uri,
  domain: g.name,
  to: pair.destination.uri,
  // tcp:HOST:PORT as `migrate --libvirt --migrate-uri` takes it.
  migrateUri: `tcp:${pair.listenAddress}:${49152 + i}`,
  listenAddress: pair.listenAddress,
  ramMiB: 128,
  workload: WORKLOAD,
  ...extra,
});

/** At least three heartbeats within the next 2 s on that console: the guest runs there. */
async function expectBeats(g: LibvirtLabGuest, console = g.sourceConsole): Promise<void> {
  const since = performance.now();
  expect(await g.waitForBeats(3, 2000, console, since), g.name).toBe(true);
}

describe('kvmigrate evacuate PLAN through libvirt', () => {
  it('bad input is one line and exit 2, before anything is touched: the domains run on at the source', async () => {
    const [a, b] = await twoGuests();
    const missing = `qemu+unix:///system?socket=${pair.dir}/none/libvirt-sock`;
    const cases: [object[], RegExp][] = [
      [
        [libvirtVm(a!, 0), libvirtVm(b!, 1, { domain: 'kvmm-nope' })],
        /^kvmigrate: vm2: no domain 'kvmm-nope' on qemu\+unix:\/\/\/system\?socket=/,
      ],
      [
        [libvirtVm(a!, 0), libvirtVm(b!, 1, { to: missing })],
        /^kvmigrate: vm2: cannot reach the destination's libvirt daemon at .*none\/libvirt-sock: .*is libvirtd running\?/,
      ],
      [
        [libvirtVm(a!, 0, { libvirt: missing })],
        /^kvmigrate: vm1: cannot reach the source's libvirt daemon at /,
      ],
      [
        [libvirtVm(a!, 0, { to: pair.source.uri })],
        /^kvmigrate: vm1: the destination .* is the source's own libvirt daemon/,
      ],
    ];
    for (const [i, [vms, msg]] of cases.entries()) {
      const r = kvmigrateSync(['evacuate', writePlan(`bad-${i}.json`, vms)], { timeoutMs: 60_000 });
      expect(r.code, r.stderr).toBe(EXIT.usage);
      expect(r.stderr.split('\n'), r.stderr).toHaveLength(1);
      expect(r.stderr).toMatch(msg);
      expect(r.stdout).toBe('');
    }
    for (const g of [a!, b!]) {
      expect(await src.domainState(g.name)).toEqual({ state: 'running', reason: 'booted' });
      expect(await src.jobStats(g.name)).toEqual({ status: 'none' });
      await expectBeats(g);
    }
  });

  it("Ctrl-C cancels the running migration by the core's rules: the source runs on, nothing more starts, exit 1", async () => {
    const [a, b] = await twoGuests();
    // The operator's cap on the first domain (1 MiB/s: its 128 MiB take two minutes) is kept.
    const speed = await src.maxSpeed(a!.name);
    await src.setMaxSpeed(a!.name, 1);
    try {
      const plan = writePlan('plan-int.json', [libvirtVm(a!, 0), libvirtVm(b!, 1)], { strategy: 1 });
      const { code, stdout, stderr, interrupted } = await kvmigrateChild(['evacuate', plan], {
        interruptWhen: /vm1: migrating/,
        afterMs: 1500,
      }).exited;
      expect(interrupted, stderr).toBe(true);
      expect(code, stderr).toBe(EXIT.migrationFailed);
      const report = JSON.parse(stdout);
      expect(report.vms.map((v: { outcome: string }) => v.outcome)).toEqual(['cancelled', 'not started']);
      expect(report.vms[0]).toMatchObject({ guestRunsOn: 'source', exitCode: 1 });
      expect(report.vms[0].reason).toMatch(/interrupted/);
      expect(report.vms[0].transferredBytes).toBeLessThan(16 * 2 ** 20);
    } finally {
      await src.setMaxSpeed(a!.name, speed);
    }
    for (const g of [a!, b!]) {
      expect((await src.domainState(g.name)).state).toBe('running');
      expect(['none', 'cancelled']).toContain((await src.jobStats(g.name)).status);
      await expectBeats(g);
      // Never on the destination too (libvirt may still be tearing the incoming QEMU down).
      const there = await dst.domainState(g.name).catch(() => undefined);
      expect(['running', 'paused']).not.toContain(there?.state);
    }
  });

  it('two guests, two at a time: both complete, run on the destination daemon, guests intact; exit 0', async () => {
    const [a, b] = await twoGuests();
    const plan = writePlan('plan.json', [libvirtVm(a!, 0), libvirtVm(b!, 1)]);
    const { code, stdout, stderr } = await kvmigrateChild(['evacuate', plan]).exited;
    expect(code, stderr).toBe(EXIT.ok);
    expect(stderr).toMatch(/evacuating 2 VM\(s\) through libvirt: fixed:2, 2 at a time, order vm1 vm2/);
    expect(stderr).toMatch(/fixed:2, 2 at a time: makespan [\d.]+ s; simulated [\d.]+ s/);
    const report = JSON.parse(stdout);
    expect(report).toMatchObject({ strategy: 'fixed:2', concurrency: 2, exitCode: EXIT.ok });
    expect(report.vms.map((v: { vm: string }) => v.vm)).toEqual(['vm1', 'vm2']);
    for (const v of report.vms) {
      expect(v, JSON.stringify(v)).toMatchObject({
        outcome: 'completed',
        guestRunsOn: 'destination',
        exitCode: 0,
      });
      expect(v.transferredBytes).toBeGreaterThan(0);
      expect(v.stallSource).toBe('qemu downtime');
    }
    // Two at a time: the second started before the first was over.
    expect(report.vms[1].startedAtMs).toBeLessThan(report.vms[0].endedAtMs);
    expect(report.predictedMakespanMs).toBeGreaterThan(0);
    for (const g of [a!, b!]) {
      expect((await dst.domainState(g.name)).state).toBe('running');
      // A transient domain that left is gone from the source daemon.
      await expect(src.domainState(g.name)).rejects.toThrow(/no domain/);
      const console = await g.connectDestinationConsole();
      await expectBeats(g, console);
      expect((await console.integrityCheck()).ok).toBe(true);
    }
  });
});
