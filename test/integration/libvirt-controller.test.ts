import { spawn } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { LibvirtPair, type LibvirtLabGuest } from '../../src/lab/libvirt-pair.js';
import { parseWorkload } from '../../src/lab/workload.js';
import { LibvirtClient, NotMigratingError, UnknownDomainError } from '../../src/libvirt/index.js';
import { LibvirtSession, type LibvirtSessionOptions } from '../../src/libvirt/libvirt-session.js';
import { resolvePolicy } from '../../src/policy/index.js';
import { pairPerFile } from './libvirt-helpers.js';

// The controller core steering real libvirt 11 migrations of real QEMU TCG guests (libvirt owns
// the monitor; the driver acts only through libvirt's calls). Every completed pre-copy run is
// checked byte for byte: destination left paused, RAM compared, then resumed and its guest checked.

let pair: LibvirtPair;
let src: LibvirtClient;
let dst: LibvirtClient;

pairPerFile((f) => ({ pair, src, dst } = f), { log: true });

// A guest stock pre-copy never finishes at 300 ms on 1 Gbit (its ~100 MiB dirty set takes ~0.8 s to
// send); half the benchmark guest's size keeps each test's boot, bulk pass and byte compare short.
const memoryIntensive = () => pair.startGuest({ workload: parseWorkload('random:100'), ramMiB: 256 });

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
    '%s completes random:100 (which stock cannot), 0 pages differ',
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

/** libvirt tears down the incoming domain of an aborted job shortly after the abort. */
async function expectGoneFromDestination(name: string) {
  for (let i = 0; i < 100; i++) {
    if (
      !(await dst.domainState(name).then(
        () => true,
        () => false,
      ))
    )
      return;
    await new Promise((r) => setTimeout(r, 100));
  }
  await expect(dst.domainState(name)).rejects.toThrow(UnknownDomainError);
}

/** `kvmigrate …` as a child process; `kill` sends a signal once its stderr shows pass 2. */
function cli(args: string[], kill?: NodeJS.Signals) {
  const child = spawn(process.execPath, ['bin/kvmigrate.js', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr.on('data', (d: Buffer) => {
    stderr += d.toString();
    if (kill && /pass [2-9]/.test(stderr) && child.exitCode === null && !child.killed) child.kill(kill);
  });
  return new Promise<{ code: number | null; signal: NodeJS.Signals | null; stdout: string; stderr: string }>(
    (r) => child.once('exit', (code, signal) => r({ code, signal, stdout, stderr })),
  );
}

describe('kvmigrate migrate --libvirt / recover --libvirt: interrupted controllers leave exactly one domain running', () => {
  const migrateArgs = (name: string) => [
    'migrate', '--libvirt', pair.source.uri, '--domain', name, '--to', pair.destination.uri,
    '--migrate-uri', pair.migrateUri, '--listen-address', pair.listenAddress, '--policy', 'stock', '--deadline', '60',
  ]; // prettier-ignore

  it('SIGINT: the job is aborted, the domain runs on the source (exit 1)', async () => {
    const guest = await memoryIntensive();
    try {
      const r = await cli(migrateArgs(guest.name), 'SIGINT');
      expect(r.code).toBe(1);
      expect(JSON.parse(r.stdout).guestRunsOn).toBe('source');
      expect(await src.domainState(guest.name)).toMatchObject({ state: 'running' });
      await expectGoneFromDestination(guest.name);
    } finally {
      await cleanup(guest);
    }
  });

  it('SIGKILL, then recover --libvirt: the job is aborted, the domain runs on the source only', async () => {
    const guest = await memoryIntensive();
    try {
      const killed = await cli(migrateArgs(guest.name), 'SIGKILL');
      expect(killed.signal).toBe('SIGKILL');
      const r = await cli([
        'recover',
        '--libvirt',
        pair.source.uri,
        '--domain',
        guest.name,
        '--to',
        pair.destination.uri,
        '--json',
      ]);
      expect(r.code).toBe(0);
      expect(JSON.parse(r.stdout).running).toBe('source');
      expect(await src.domainState(guest.name)).toMatchObject({ state: 'running' });
      await expectGoneFromDestination(guest.name);
      const since = performance.now();
      expect(await guest.waitForBeats(3, 5000, guest.sourceConsole, since)).toBe(true);
    } finally {
      await cleanup(guest);
    }
  });
});
