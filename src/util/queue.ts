import { EXIT, type ExitCode } from './errors.js';

/*
 * The evacuation queue both drivers share (QMP: src/migration/evacuate.ts, libvirt:
 * src/libvirt/evacuate.ts) and the lab's evacuation: it knows nothing of migrations, only tasks
 * with a name and maybe a planned start.
 */

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

/** What an evacuation's caller hears, whichever driver: a migration was started / is over (its result). */
export interface EvacuationHooks<V, R> {
  signal?: AbortSignal;
  onStart?: (vm: V) => void;
  onEnd?: (vm: V, result: R | undefined, error?: Error) => void;
}

/**
 * A driver's evacuation once its endpoints are connected: `runQueue` over them, in the order
 * given, each VM at its planned start if it has one; `migrate` runs one VM's migration, and the
 * hooks hear of its start and end (a thrown error too, then recorded in its slot).
 */
export function runMigrations<V extends { name: string; notBeforeMs?: number }, T extends { vm: V }, R>(
  ready: readonly T[],
  concurrency: number,
  hooks: EvacuationHooks<V, R>,
  migrate: (endpoints: T) => Promise<R>,
): Promise<QueueRun<{ migration: R }>> {
  return runQueue(
    ready.map((e) => ({ endpoints: e, name: e.vm.name, notBeforeMs: e.vm.notBeforeMs })),
    concurrency,
    async ({ endpoints }) => {
      hooks.onStart?.(endpoints.vm);
      try {
        const migration = await migrate(endpoints);
        hooks.onEnd?.(endpoints.vm, migration);
        return { migration };
      } catch (err) {
        hooks.onEnd?.(endpoints.vm, undefined, err as Error);
        throw err;
      }
    },
    { signal: hooks.signal },
  );
}
