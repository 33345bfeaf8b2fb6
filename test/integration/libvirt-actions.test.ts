import { describe, expect, it } from 'vitest';
import { LibvirtPair, type LibvirtLabGuest } from '../../src/lab/libvirt-pair.js';
import { parseWorkload } from '../../src/lab/workload.js';
import {
  LibvirtClient,
  LibvirtError,
  NotMigratingError,
  type LibvirtEvent,
} from '../../src/libvirt/index.js';
import { pairPerFile } from './libvirt-helpers.js';

// The controller's other actions through libvirt's own calls, on real libvirt + QEMU TCG:
// pause (virDomainSuspend) and post-copy (virDomainMigrateStartPostCopy), which libvirt will not abort.
// (attach to a plain `virsh migrate --live --p2p` is libvirt-controller.test.ts's, end to end.)

let pair: LibvirtPair;
let src: LibvirtClient;
let dst: LibvirtClient;
const srcEvents: LibvirtEvent[] = [];
const dstEvents: LibvirtEvent[] = [];

pairPerFile((f) => {
  ({ pair, src, dst } = f);
  src.on('event', (e: LibvirtEvent) => srcEvents.push(e));
  dst.on('event', (e: LibvirtEvent) => dstEvents.push(e));
});

async function untilIteration(guest: LibvirtLabGuest, n: number): Promise<void> {
  const deadline = performance.now() + 60_000;
  while (((await src.jobStats(guest.name)).ram?.['dirty-sync-count'] ?? 0) < n) {
    expect(performance.now()).toBeLessThan(deadline);
    await new Promise((r) => setTimeout(r, 50));
  }
}

async function until(cond: () => boolean, ms: number): Promise<boolean> {
  const deadline = performance.now() + ms;
  while (!cond()) {
    if (performance.now() > deadline) return false;
    await new Promise((r) => setTimeout(r, 20));
  }
  return true;
}

describe('libvirt driver actions on real libvirt + QEMU', () => {
  it('pause: suspend during pre-copy makes QEMU finish; downtime limit and speed read back; 0 pages differ', async () => {
    const guest = await pair.startGuest({ workload: parseWorkload('random:200'), ramMiB: 512 });
    const handle = await src.startMigration(guest.name, pair.destination.uri, {
      migrateUri: pair.migrateUri,
      listenAddress: pair.listenAddress,
      paused: true,
    });
    await untilIteration(guest, 2);
    await src.setMaxDowntime(guest.name, 450);
    expect(await src.maxDowntime(guest.name)).toBe(450);
    await src.setMaxSpeed(guest.name, 100_000); // far above the 1 Gbit link: changes nothing
    expect(await src.maxSpeed(guest.name)).toBe(100_000);
    await src.suspend(guest.name);
    const outcome = await handle.done;
    expect(outcome.outcome).toBe('completed');
    const check = await guest.verifyOnDestination(await dst.qemuPid(guest.name), () =>
      dst.resume(guest.name),
    );
    expect(check.ram.differingPages).toBe(0);
    expect(check.heartbeatResumed).toBe(true);
    expect(check.guestCheck.ok).toBe(true);
    await dst.destroyDomain(guest.name);
    await guest.close();
  });

  it('post-copy: started through libvirt, reported as postcopy-active, not abortable, completes; the guest runs on', async () => {
    const guest = await pair.startGuest({ workload: parseWorkload('random:200'), ramMiB: 512 });
    const seenSrc = srcEvents.length;
    const seenDst = dstEvents.length;
    const handle = await src.startMigration(guest.name, pair.destination.uri, {
      migrateUri: pair.migrateUri,
      listenAddress: pair.listenAddress,
      postcopy: true,
    });
    await untilIteration(guest, 2);
    await src.startPostCopy(guest.name);
    const postcopyOnSource = () =>
      srcEvents
        .slice(seenSrc)
        .some((e) => e.kind === 'lifecycle' && e.event === 'suspended' && e.detail === 'postcopy');
    expect(await until(postcopyOnSource, 10_000)).toBe(true);
    const during = await src.jobStats(guest.name).catch(() => undefined);
    if (during) expect(during.status).toMatch(/postcopy-active|completed/);
    if (during?.status === 'postcopy-active') {
      // libvirt refuses to abort a post-copy (the guest already runs on the destination); so do we.
      const err = await src.abortJob(guest.name).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(LibvirtError);
      // (NotMigratingError only if the post-copy finished in between.)
      if (!(err instanceof NotMigratingError)) expect((err as Error).message).toMatch(/post-copy/i);
      console.log(`abort during post-copy: ${(err as Error).message}`);
    }
    const outcome = await handle.done;
    expect(outcome.outcome).toBe('completed');
    const resumedPostcopy = dstEvents
      .slice(seenDst)
      .some((e) => e.kind === 'lifecycle' && e.event === 'resumed' && e.detail === 'postcopy');
    expect(resumedPostcopy).toBe(true);
    expect(await dst.domainState(guest.name)).toMatchObject({ state: 'running' });
    const serial = await guest.connectDestinationConsole();
    const after = performance.now();
    expect(await guest.waitForBeats(2, 10_000, serial, after)).toBe(true);
    expect((await serial.integrityCheck()).ok).toBe(true);
    await dst.destroyDomain(guest.name);
    await guest.close();
  });
});
