import { resultExitCode } from '../core/result.js';
import { QmpClient } from '../qmp/index.js';
import type { ResolvedPolicy } from '../policy/registry.js';
import { EXIT, KvmigrateError, MigrationSetupError, type ExitCode } from '../util/errors.js';
import { MigrationSession, type MigrationResult } from './session.js';

/** One slot of an evacuation: when it started and ended (performance.now(), ms), and how. */
export interface QueueSlot<R> {
  name: string;
  /** Undefined: never started (the evacuation was interrupted first). */
  startedAt?: number;
  /** When the migration itself was over (before any verification the caller does after it). */
  endedAt?: number;
  result?: R;
  error?: Error;
}

export interface QueueRun<R> {
  /** performance.now() when the first migration was started. */
  startedAt: number;
  slots: QueueSlot<R>[];
}

/**
 * Runs one migration per task, in order, at most `concurrency` at a time: the next starts as soon
 * as a running one is over, and not before its `notBeforeMs` (from the first start) if it has one. `migrate(task, release)` runs one; it may call `release()` when the
 * migration itself is over and it goes on with slower work (the lab verifies RAM), else the slot
 * is freed when it settles. A task that throws is recorded and the others go on. Once `signal`
 * aborts, nothing more is started (the running ones see the same signal and end by the core's
 * rules).
 */
export async function runQueue<T extends { name: string; notBeforeMs?: number }, R>(
  tasks: readonly T[],
  concurrency: number,
  migrate: (task: T, release: () => void) => Promise<R>,
  opts: {
    signal?: AbortSignal;
    /** Every migration is over (released) and none will start: verification may begin. */
    onAllOver?: () => void;
  } = {},
): Promise<QueueRun<R>> {
  const { signal } = opts;
  if (!Number.isInteger(concurrency) || concurrency < 1)
    throw new RangeError(`concurrency must be a whole number ≥ 1, not ${concurrency}`);
  const slots: QueueSlot<R>[] = tasks.map((t) => ({ name: t.name }));
  const startedAt = performance.now();
  let next = 0;
  let wake: (() => void) | undefined;
  let running = 0;
  const settled: Promise<void>[] = [];
  const onAbort = () => wake?.();
  signal?.addEventListener('abort', onAbort);
  try {
    while (next < tasks.length && !signal?.aborted) {
      if (running >= concurrency) {
        await new Promise<void>((r) => (wake = r));
        continue;
      }
      // A planned start time: not before it (a slot may free up meanwhile: that changes nothing).
      const early = (tasks[next]!.notBeforeMs ?? 0) - (performance.now() - startedAt);
      if (early > 0) {
        let timer: NodeJS.Timeout | undefined;
        await new Promise<void>((r) => {
          wake = r;
          timer = setTimeout(r, early);
        });
        clearTimeout(timer);
        continue;
      }
      const i = next++;
      const slot = slots[i]!;
      running++;
      slot.startedAt = performance.now();
      let released = false;
      const release = () => {
        if (released) return;
        released = true;
        slot.endedAt = performance.now();
        running--;
        if (running === 0 && (next >= tasks.length || signal?.aborted)) opts.onAllOver?.();
        wake?.();
      };
      settled.push(
        migrate(tasks[i]!, release).then(
          (r) => {
            slot.result = r;
            release();
          },
          (err: unknown) => {
            slot.error = err instanceof Error ? err : new Error(String(err));
            release();
          },
        ),
      );
    }
    // Interrupted with nothing running: nobody else will say it.
    if (running === 0) opts.onAllOver?.();
    await Promise.all(settled);
  } finally {
    signal?.removeEventListener('abort', onAbort);
  }
  return { startedAt, slots };
}

/** From the first start to the last migration's end, ms (0 when none ran). */
export function makespanMs(run: QueueRun<unknown>): number {
  const ends = run.slots.flatMap((s) => (s.endedAt === undefined ? [] : [s.endedAt]));
  return ends.length ? Math.max(...ends) - run.startedAt : 0;
}

/** Exit codes from best to worst: a guest nobody runs outranks a migration that failed. */
const SEVERITY: ExitCode[] = [EXIT.ok, EXIT.migrationFailed, EXIT.usage, EXIT.internal, EXIT.operatorNeeded];

/** The evacuation's exit code: its worst VM's (a VM never started counts as failed: its source runs). */
export function worstExitCode(codes: readonly ExitCode[]): ExitCode {
  return codes.reduce<ExitCode>((w, c) => (SEVERITY.indexOf(c) > SEVERITY.indexOf(w) ? c : w), EXIT.ok);
}

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

export interface QmpEvacuationHooks {
  signal?: AbortSignal;
  /** A migration was started / is over (its result). */
  onStart?: (vm: QmpEvacuee) => void;
  onEnd?: (vm: QmpEvacuee, result: MigrationResult | undefined, error?: Error) => void;
}

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
    return await runQueue(
      ends.map((e) => ({ ...e, name: e.vm.name, notBeforeMs: e.vm.notBeforeMs })),
      concurrency,
      async ({ vm, source, destination }) => {
        hooks.onStart?.(vm);
        try {
          const migration = await new MigrationSession({
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
          }).run();
          hooks.onEnd?.(vm, migration);
          return { migration };
        } catch (err) {
          hooks.onEnd?.(vm, undefined, err as Error);
          throw err;
        }
      },
      { signal: hooks.signal },
    );
  } finally {
    for (const c of clients) c.close();
  }
}
