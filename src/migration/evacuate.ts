import { resultExitCode } from '../core/result.js';
import { QmpClient } from '../qmp/index.js';
import type { ResolvedPolicy } from '../policy/registry.js';
import { EXIT, KvmigrateError, MigrationSetupError, type ExitCode } from '../util/errors.js';
import { runMigrations, type EvacuationHooks, type QueueRun, type QueueSlot } from '../util/queue.js';
import { MigrationSession, type MigrationResult } from './session.js';

/** One VM's exit code in an evacuation: from its result, else from how it failed to run. */
export function slotExitCode(slot: QueueSlot<{ migration: MigrationResult; verified?: boolean }>): ExitCode {
  const r = slot.result;
  if (r)
    return r.migration.outcome === 'completed' && r.verified === false
      ? EXIT.operatorNeeded
      : resultExitCode(r.migration);
  // Not started, or refused before `migrate` (nothing changed: the source runs on). Anything
  // else thrown is unexpected: where the guest is has not been established.
  if (!slot.error || slot.error instanceof KvmigrateError) return EXIT.migrationFailed;
  return EXIT.operatorNeeded;
}

/** A VM to migrate between two QEMU monitors, with the session options it gets. */
export interface QmpEvacuee {
  name: string;
  /** QMP socket path or HOST:PORT of each side. */
  source: string;
  destination: string;
  migrateUri: string;
  incomingUri?: string;
  policy: ResolvedPolicy;
  downtimeBudgetMs: number;
  deadlineMs: number;
  /** QEMU's max-bandwidth for this migration (bytes/s); unset: left as the source has it. */
  maxBandwidthBps?: number;
  /** Its planned start, ms after the evacuation's first (a calendar plan); unset: when a slot frees. */
  notBeforeMs?: number;
}

export type QmpEvacuationHooks = EvacuationHooks<QmpEvacuee, MigrationResult>;

/**
 * A plan's bandwidth share never raises the cap the operator set on the source: the share is
 * lowered to the source's own `max-bandwidth` when that is smaller (nobody asked for more).
 */
async function withinOperatorCap(vm: QmpEvacuee, source: QmpClient): Promise<QmpEvacuee> {
  if (vm.maxBandwidthBps === undefined) return vm;
  const params = await source
    .execute<{ 'max-bandwidth'?: number }>('query-migrate-parameters')
    .catch(() => undefined);
  const current = params?.['max-bandwidth'];
  // 0 is not "unlimited" for max-bandwidth (QEMU refuses it as a value); treat it as unknown.
  return current && current < vm.maxBandwidthBps ? { ...vm, maxBandwidthBps: current } : vm;
}

/**
 * Evacuates VMs between QEMU monitors we are handed, through the QMP driver (one
 * MigrationSession each), `concurrency` at a time in the order given. Every monitor is connected
 * first: one that cannot be reached is bad input, refused before anything is changed.
 */
export async function evacuateQmp(
  vms: readonly QmpEvacuee[],
  concurrency: number,
  hooks: QmpEvacuationHooks = {},
): Promise<QueueRun<{ migration: MigrationResult }>> {
  const clients: QmpClient[] = [];
  const connect = async (vm: string, side: string, spec: string) => {
    try {
      const c = await QmpClient.connect(spec);
      clients.push(c);
      return c;
    } catch (err) {
      throw new MigrationSetupError(
        `${vm}: cannot reach the ${side}'s QMP at ${spec}: ${(err as Error).message}`,
      );
    }
  };
  try {
    const ends: { vm: QmpEvacuee; source: QmpClient; destination: QmpClient }[] = [];
    for (const vm of vms) {
      const source = await connect(vm.name, 'source', vm.source);
      const destination = await connect(vm.name, 'destination', vm.destination);
      ends.push({ vm: await withinOperatorCap(vm, source), source, destination });
    }
    return await runMigrations(ends, concurrency, hooks, ({ vm, source, destination }) =>
      new MigrationSession({
        source,
        destination,
        migrateUri: vm.migrateUri,
        incomingUri: vm.incomingUri,
        policy: vm.policy,
        downtimeBudgetMs: vm.downtimeBudgetMs,
        deadlineMs: vm.deadlineMs,
        maxBandwidthBps: vm.maxBandwidthBps,
        // The destination was started with -S (as for `migrate`): in post-copy it must run.
        startDestinationOnPostcopy: true,
        signal: hooks.signal,
      }).run(),
    );
  } finally {
    for (const c of clients) c.close();
  }
}
