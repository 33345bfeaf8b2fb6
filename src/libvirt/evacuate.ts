import type { MigrationResult } from '../core/result.js';
import { checkMigrationUri } from '../core/uri.js';
import type { ResolvedPolicy } from '../policy/registry.js';
import { MigrationSetupError, UsageError } from '../util/errors.js';
import { runMigrations, type EvacuationHooks, type QueueRun } from '../util/queue.js';
import { UNLIMITED_SPEED_MIBPS } from './checks.js';
import { LibvirtClient } from './client.js';
import { LibvirtError, UnknownDomainError } from './errors.js';
import { LibvirtSession } from './libvirt-session.js';
import { parseLocalUri, sameDaemon } from './uri.js';

/** A libvirt domain to migrate between two daemons, with the session options it gets. */
export interface LibvirtEvacuee {
  name: string;
  /** The source daemon's URI (on this host: qemu:///system or qemu+unix:///system?socket=PATH). */
  libvirt: string;
  domain: string;
  /** The destination daemon's URI; the source daemon connects to it (peer-to-peer). */
  to: string;
  /** Where QEMU sends the RAM: tcp:HOST:PORT (or tcp://, unix:, rdma:); unset: libvirt chooses. */
  migrateUri?: string;
  /** The address the destination QEMU listens on. */
  listenAddress?: string;
  policy: ResolvedPolicy;
  downtimeBudgetMs: number;
  deadlineMs: number;
  /** The job's max speed for this migration (bytes/s, rounded down to MiB/s); unset: left as the domain has it. */
  maxBandwidthBps?: number;
  /** Its planned start, ms after the evacuation's first (a calendar plan); unset: when a slot frees. */
  notBeforeMs?: number;
}

export type LibvirtEvacuationHooks = EvacuationHooks<LibvirtEvacuee, MigrationResult>;

/**
 * A migration URI as libvirt takes it (`migrate --libvirt --migrate-uri`'s forms): tcp:HOST:PORT
 * becomes tcp://HOST:PORT; unix: and rdma: pass; fd: (QEMU's, not libvirt's) and anything that
 * runs a command are refused in one line.
 */
export function checkLibvirtMigrateUri(uri: string): string {
  checkMigrationUri(uri, 'migrate URI');
  if (uri.startsWith('fd:'))
    throw new UsageError(`the migrate URI '${uri.slice(0, 80)}' is fd:: libvirt takes tcp:, unix: or rdma:`);
  return uri.replace(/^tcp:(?!\/\/)/, 'tcp://');
}

/** One VM's two connections, each its own (a running migration holds a call on its daemon's connection). */
interface Ends {
  vm: LibvirtEvacuee;
  source: LibvirtClient;
  destination?: LibvirtClient;
}

/**
 * Refuses, before anything changes, what would fail in the middle of an evacuation: no such
 * domain, one not running, one already migrating, the destination being the source's daemon,
 * or the domain already running on the destination.
 */
async function preflight({ vm, source, destination }: Ends): Promise<void> {
  const at = `domain '${vm.domain}' on ${vm.libvirt}`;
  if (sameDaemon(parseLocalUri(vm.libvirt), vm.to))
    throw new MigrationSetupError(`${vm.name}: the destination ${vm.to} is the source's own libvirt daemon`);
  let state;
  try {
    state = await source.domainState(vm.domain);
  } catch (err) {
    if (err instanceof UnknownDomainError) throw new MigrationSetupError(`${vm.name}: no ${at}`);
    throw err;
  }
  if (state.state !== 'running' && state.state !== 'paused')
    throw new MigrationSetupError(`${vm.name}: ${at} is ${state.state}: nothing to migrate live`);
  const job = await source.jobStats(vm.domain);
  if (job.status !== 'none' && job.status !== undefined)
    throw new MigrationSetupError(
      `${vm.name}: ${at} is already migrating (${job.status}): kvmigrate attach takes over a migration someone started`,
    );
  const there = await destination?.domainState(vm.domain).catch(() => undefined);
  if (there && (there.state === 'running' || there.state === 'paused'))
    throw new MigrationSetupError(`${vm.name}: domain '${vm.domain}' already runs on ${vm.to}`);
}

/**
 * A plan's share never raises the operator's cap: the share is lowered to the domain's own max
 * speed when that is smaller (as the QMP driver does with max-bandwidth).
 */
async function withinOperatorCap(vm: LibvirtEvacuee, source: LibvirtClient): Promise<LibvirtEvacuee> {
  if (vm.maxBandwidthBps === undefined) return vm;
  const mib = await source.maxSpeed(vm.domain).catch(() => undefined);
  if (mib === undefined || mib < 1 || mib >= UNLIMITED_SPEED_MIBPS) return vm;
  return mib * 2 ** 20 < vm.maxBandwidthBps ? { ...vm, maxBandwidthBps: mib * 2 ** 20 } : vm;
}

/**
 * Evacuates libvirt domains through the libvirt driver (one LibvirtSession each, each started as
 * `migrate --libvirt` starts one: live, peer-to-peer), `concurrency` at a time in the order given,
 * through the same queue as the QMP driver. Every daemon is connected and every domain checked
 * first: an unreachable daemon or a missing domain is bad input, refused before anything is
 * changed. A destination URI this driver cannot open itself (another host's: only the source
 * daemon connects to it) is left to libvirt, and the verdict at the end is libvirt's call's.
 */
export async function evacuateLibvirt(
  vms: readonly LibvirtEvacuee[],
  concurrency: number,
  hooks: LibvirtEvacuationHooks = {},
): Promise<QueueRun<{ migration: MigrationResult }>> {
  const clients: LibvirtClient[] = [];
  const open = async (vm: string, side: string, uri: string) => {
    try {
      const c = await LibvirtClient.open(uri);
      clients.push(c);
      return c;
    } catch (err) {
      if (!(err instanceof LibvirtError)) throw err;
      throw new MigrationSetupError(
        `${vm}: cannot reach the ${side}'s libvirt daemon at ${uri}: ${err.message}`,
      );
    }
  };
  // A URI of this host's daemons (the only ones this driver opens) must answer like the source's.
  const local = (uri: string) => {
    try {
      parseLocalUri(uri);
      return true;
    } catch {
      return false;
    }
  };
  try {
    const ready: Ends[] = [];
    for (const vm of vms) {
      const migrateUri = vm.migrateUri && checkLibvirtMigrateUri(vm.migrateUri);
      const source = await open(vm.name, 'source', vm.libvirt);
      const destination = local(vm.to) ? await open(vm.name, 'destination', vm.to) : undefined;
      const ends = { vm: { ...vm, migrateUri }, source, destination };
      await preflight(ends);
      ready.push({ ...ends, vm: await withinOperatorCap(ends.vm, source) });
    }
    return await runMigrations(ready, concurrency, hooks, ({ vm, source, destination }) =>
      new LibvirtSession({
        source,
        destination,
        domain: vm.domain,
        start: { destUri: vm.to, migrateUri: vm.migrateUri, listenAddress: vm.listenAddress },
        policy: vm.policy,
        downtimeBudgetMs: vm.downtimeBudgetMs,
        deadlineMs: vm.deadlineMs,
        maxBandwidthBps: vm.maxBandwidthBps,
        signal: hooks.signal,
      }).run(),
    );
  } finally {
    await Promise.all(clients.map((c) => c.close()));
  }
}
