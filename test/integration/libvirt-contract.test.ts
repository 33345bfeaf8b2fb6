import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import type { MigrationResult } from '../../src/core/result.js';
import { EventLineSchema } from '../../src/core/schema.js';
import { LibvirtPair } from '../../src/lab/libvirt-pair.js';
import { parseWorkload } from '../../src/lab/workload.js';
import { LibvirtClient, UNLIMITED_SPEED_MIBPS } from '../../src/libvirt/index.js';
import { controlRequest } from '../../src/migration/control-socket.js';
import { EXIT } from '../../src/util/errors.js';
import { pairPerFile } from './libvirt-helpers.js';
import { kvmigrateChild } from '../support/cli.js';

// `kvmigrate migrate --libvirt` with the operator contract of the QMP path, on a real libvirt 11
// pair: --bandwidth through virDomainMigrateSetMaxSpeed (85% of the wire cap, as QMP), the
// domain's own speed put back, --events, the control socket, and mp with region sets sampled
// from the source QEMU libvirt runs (its PID from libvirt's pidfile, its RAM from its address map);
// a speed another party sets while it runs is noticed and kept.

let pair: LibvirtPair;
let src: LibvirtClient;
let dst: LibvirtClient;
const dir = mkdtempSync(path.join(tmpdir(), 'kvm-lv-contract-'));

pairPerFile((f) => ({ pair, src, dst } = f), { log: true });

afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
});

const kvmigrate = (args: string[]) => kvmigrateChild(args);

/** 400 Mbit/s on the wire: QEMU is given 85% of it, in libvirt's whole MiB/s. */
const CAP_MIBPS = Math.floor(Math.floor((400e6 / 8) * 0.85) / 2 ** 20);

describe('migrate --libvirt: the operator contract of the QMP path', () => {
  it('mp with sampled regions, --bandwidth applied and put back, --events, the control socket, a foreign speed noticed', async () => {
    const guest = await pair.startGuest({ workload: parseWorkload('random:200'), ramMiB: 512 });
    try {
      // A speed of the domain's own, which the run must leave as it found it.
      await src.setMaxSpeed(guest.name, 900);
      const socket = path.join(dir, 'ctl.sock');
      const events = path.join(dir, 'events.ndjson');
      const base = [
        'migrate', '--libvirt', pair.source.uri, '--domain', guest.name, '--to', pair.destination.uri,
        '--migrate-uri', pair.migrateUri, '--policy', 'mp', '--bandwidth', '400mbit',
      ]; // prettier-ignore

      // A migration that fails at once (the destination cannot listen there): the speed is put back.
      const failed = await kvmigrate([...base, '--listen-address', '192.0.2.1', '--no-control-socket'])
        .exited;
      expect(failed.code, failed.stderr).toBe(EXIT.migrationFailed);
      expect(JSON.parse(failed.stdout.trim())).toMatchObject({ outcome: 'failed', guestRunsOn: 'source' });
      expect(await src.maxSpeed(guest.name)).toBe(900);

      const run = kvmigrate([
        ...base, '--listen-address', pair.listenAddress, '--control-socket', socket, '--events', events,
      ]); // prettier-ignore
      let status: Awaited<ReturnType<typeof controlRequest>> | undefined;
      let speedDuring: number | undefined;
      while (run.child.exitCode === null && (status === undefined || speedDuring === undefined)) {
        if (!status && existsSync(socket)) {
          const s = await controlRequest(socket, { op: 'status' }, 5000).catch(() => undefined);
          if (s?.accepted && s.status && s.status.pass >= 1) status = s;
        }
        if (speedDuring === undefined && status)
          speedDuring = await src.maxSpeed(guest.name).catch(() => undefined);
        await new Promise((r) => setTimeout(r, 100));
      }
      // (d) another party (as `virsh migrate-setspeed` would) lowers the speed while it runs.
      await src.setMaxSpeed(guest.name, CAP_MIBPS - 8);
      const r = await run.exited;
      expect(r.code, r.stderr).toBe(EXIT.ok);
      // (c) the control socket answered while it ran.
      expect(status, r.stderr).toMatchObject({ accepted: true, status: { status: 'active' } });
      expect(r.stderr).toContain(`control socket ${socket}`);
      // (b) libvirt held the job to 85% of the cap; the domain left with it, and on the
      // destination it has that daemon's default, not our cap (the failed run above showed the
      // source's own speed put back).
      expect(speedDuring).toBe(CAP_MIBPS);
      expect(await dst.maxSpeed(guest.name)).toBe(UNLIMITED_SPEED_MIBPS);
      // (a) mp had region sets: sampled from the source QEMU, and it classified on them.
      expect(r.stderr).toContain(`region sets by sampling QEMU ${guest.sourcePid}'s guest RAM (512 MiB`);
      const lines = readFileSync(events, 'utf8').trimEnd().split('\n');
      const last = EventLineSchema.parse(JSON.parse(lines.at(-1)!));
      expect(last.type).toBe('outcome');
      const result = (last as { result: MigrationResult }).result;
      const reasons = result.decisions.map((d) => d.action.reason);
      console.log(
        `mp via libvirt at ${CAP_MIBPS} MiB/s: ${result.outcome}, total ${result.totalTimeMs} ms, downtime ${result.qemuDowntimeMs} ms; ${reasons.join(' | ')}`,
      );
      expect(result).toMatchObject({
        outcome: 'completed',
        guestRunsOn: 'destination',
        regionSource: 'sampling',
      });
      expect(reasons.some((x) => x.startsWith('mp[sampling]'))).toBe(true);
      expect(reasons.some((x) => /no region s/.test(x))).toBe(false);
      expect(reasons).toContainEqual(
        expect.stringContaining(`another party set the bandwidth to ${CAP_MIBPS - 8} MiB/s`),
      );
      expect(JSON.parse(r.stdout.trim())).toEqual(result);
      expect(await dst.domainState(guest.name)).toMatchObject({ state: 'running' });
    } finally {
      await dst.destroyDomain(guest.name).catch(() => undefined);
      await src.destroyDomain(guest.name).catch(() => undefined);
      await guest.close();
    }
  });

  it('mp with --tap: the source QEMU sends through the relay on this host, which reads exact region sets', async () => {
    const guest = await pair.startGuest({ workload: parseWorkload('random:200'), ramMiB: 512 });
    try {
      const r = await kvmigrate([
        'migrate', '--libvirt', pair.source.uri, '--domain', guest.name, '--to', pair.destination.uri,
        '--migrate-uri', pair.migrateUri, '--listen-address', pair.listenAddress, '--policy', 'mp',
        '--tap', '--no-control-socket', '--json',
      ]).exited; // prettier-ignore
      expect(r.code, r.stderr).toBe(EXIT.ok);
      const result = JSON.parse(r.stdout) as MigrationResult;
      expect(result).toMatchObject({ outcome: 'completed', guestRunsOn: 'destination', regionSource: 'tap' });
      expect(result.decisions.some((d) => d.action.reason.startsWith('mp[tap]'))).toBe(true);
      expect(await dst.domainState(guest.name)).toMatchObject({ state: 'running' });
      // attach cannot relay a migration it did not start: one line, nothing touched.
      const refused = await kvmigrate([
        'attach', '--libvirt', pair.source.uri, '--domain', guest.name, '--policy', 'mp', '--tap',
      ]).exited; // prettier-ignore
      expect(refused.code).not.toBe(EXIT.ok);
    } finally {
      await dst.destroyDomain(guest.name).catch(() => undefined);
      await src.destroyDomain(guest.name).catch(() => undefined);
      await guest.close();
    }
  });
});
