import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LibvirtPair, type LibvirtLabGuest } from '../../src/lab/libvirt-pair.js';
import { parseLink } from '../../src/lab/link.js';
import { parseWorkload } from '../../src/lab/workload.js';
import { LibvirtClient, NotMigratingError, UnknownDomainError } from '../../src/libvirt/index.js';
import { LibvirtSession, type LibvirtSessionOptions } from '../../src/libvirt/libvirt-session.js';
import { resolvePolicy } from '../../src/policy/index.js';
import { expectPairGone } from './libvirt-helpers.js';

// The controller core steering real libvirt 11 migrations of real QEMU TCG guests (libvirt owns
// the monitor; the driver acts only through libvirt's calls). Every completed pre-copy run is
// checked byte for byte: destination left paused, RAM compared, then resumed and its guest checked.

let pair: LibvirtPair;
let src: LibvirtClient;
let dst: LibvirtClient;
const pids: number[] = [];

beforeAll(async () => {
  pair = await LibvirtPair.start({ link: parseLink('1gbit'), log: (l) => console.log(l) });
  pids.push(pair.source.pid, pair.destination.pid);
  src = await LibvirtClient.open(pair.source.uri);
  dst = await LibvirtClient.open(pair.destination.uri);
});

afterAll(async () => {
  await src?.close();
  await dst?.close();
  if (!pair) return;
  pids.push(...pair.source.qemuPids(), ...pair.destination.qemuPids());
  await pair.destroy();
  await expectPairGone(pair, pids);
});

const memoryIntensive = () => pair.startGuest({ workload: parseWorkload('random:200'), ramMiB: 512 });

function session(guest: LibvirtLabGuest, policy: string, extra: Partial<LibvirtSessionOptions> = {}) {
  return new LibvirtSession({
    source: src,
    destination: dst,
    domain: guest.name,
    start: {
      destUri: pair.destination.uri,
      migrateUri: pair.migrateUri,
      listenAddress: pair.listenAddress,
      paused: true,
    },
    policy: resolvePolicy(policy),
    downtimeBudgetMs: 300,
    deadlineMs: 60_000,
    resumeDestination: false,
    ...extra,
  });
}

/** A completed run left the destination paused: compare its RAM, resume it, check its guest. */
async function verify(guest: LibvirtLabGuest) {
  const check = await guest.verifyOnDestination(await dst.qemuPid(guest.name), () => dst.resume(guest.name));
  expect(check.ram.differingPages).toBe(0);
  expect(check.heartbeatResumed).toBe(true);
  expect(check.guestCheck.ok).toBe(true);
  return check;
}

async function cleanup(guest: LibvirtLabGuest) {
  await dst.destroyDomain(guest.name).catch(() => undefined);
  await src.destroyDomain(guest.name).catch(() => undefined);
  await guest.close();
}

describe('migrate --libvirt: the controller core through libvirt', () => {
  it.each(['frs', 'mp', 'adaptive'])(
    '%s completes random:200 (which stock cannot), 0 pages differ',
    async (policy) => {
      const guest = await memoryIntensive();
      try {
        const r = await session(guest, policy).run();
        console.log(
          `${policy} via libvirt: ${r.outcome}, total ${r.totalTimeMs} ms, QEMU downtime ${r.qemuDowntimeMs} ms, ` +
            `${r.passes.length} passes, ${(r.transferredBytes / 2 ** 20).toFixed(0)} MiB; ${r.decisions
              .filter((d) => d.action.kind !== 'continue')
              .map((d) => d.action.reason)
              .join(' | ')}`,
        );
        expect(r.outcome).toBe('completed');
        expect(r.guestRunsOn).toBe('destination');
        expect(r.decisions.some((d) => d.action.kind === 'switchover')).toBe(true);
        await verify(guest);
      } finally {
        await cleanup(guest);
      }
    },
  );

  it('stock at its deadline: aborted through libvirt, the domain runs on the source', async () => {
    const guest = await memoryIntensive();
    try {
      const r = await session(guest, 'stock', { deadlineMs: 8000 }).run();
      expect(r.outcome).toBe('cancelled');
      expect(r.guestRunsOn).toBe('source');
      expect(await src.domainState(guest.name)).toMatchObject({ state: 'running' });
      const since = performance.now();
      expect(await guest.waitForBeats(3, 5000, guest.sourceConsole, since)).toBe(true);
      expect((await guest.sourceConsole.integrityCheck()).ok).toBe(true);
    } finally {
      await cleanup(guest);
    }
  });

  it('attach: takes over a migration started as virsh migrate --live --p2p would, and completes it', async () => {
    const guest = await memoryIntensive();
    try {
      const handle = await src.startMigration(guest.name, pair.destination.uri, {
        migrateUri: pair.migrateUri,
        listenAddress: pair.listenAddress,
        paused: true,
      });
      // Let it iterate on its own first, as a migration someone else started.
      await new Promise((r) => setTimeout(r, 3000));
      const r = await session(guest, 'frs', { start: undefined }).run();
      expect(r.outcome).toBe('completed');
      expect((await handle.done).outcome).toBe('completed');
      await verify(guest);
    } finally {
      await cleanup(guest);
    }
  });

  it('with post-copy permitted: a post-copy through libvirt completes, the guest runs on the destination', async () => {
    const guest = await memoryIntensive();
    try {
      const r = await session(guest, 'postcopy-after', {
        policy: resolvePolicy('postcopy-after', { pass: 1 }),
        postcopyPermitted: true,
        start: {
          destUri: pair.destination.uri,
          migrateUri: pair.migrateUri,
          listenAddress: pair.listenAddress,
        },
        resumeDestination: true,
      }).run();
      expect(r.outcome).toBe('completed');
      expect(r.postcopy).toBe(true);
      expect(r.guestRunsOn).toBe('destination');
      const console = await guest.connectDestinationConsole();
      const since = performance.now();
      expect(await guest.waitForBeats(3, 10_000, console, since)).toBe(true);
      expect((await console.integrityCheck()).ok).toBe(true);
    } finally {
      await cleanup(guest);
    }
  });

  it('bad input: an unknown domain, attach to a domain that is not migrating — one line, nothing changed', async () => {
    await expect(
      new LibvirtSession({
        source: src,
        domain: 'kvmm-nope',
        policy: resolvePolicy('frs'),
        downtimeBudgetMs: 300,
        deadlineMs: 10_000,
      }).run(),
    ).rejects.toThrow(UnknownDomainError);
    const guest = await pair.startGuest({ workload: parseWorkload('idle'), ramMiB: 128 });
    try {
      const run = session(guest, 'frs', { start: undefined }).run();
      await expect(run).rejects.toThrow(NotMigratingError);
      await expect(run).rejects.toThrow(/^[^\n]*$/);
      expect(await src.domainState(guest.name)).toMatchObject({ state: 'running' });
    } finally {
      await cleanup(guest);
    }
  });
});
