import { setTimeout as sleep } from 'node:timers/promises';
import type { DestinationVerdict } from '../core/ending.js';
import { MigrationInfoSchema } from '../core/sample.js';
import { QmpClient, QmpConnectionError } from '../qmp/index.js';

/**
 * Asks the destination whether it holds the guest, after the source finished or post-copy began.
 * `gone` only when it is verifiably gone (its monitor refuses connections, or `alive()` says its
 * process died); a destination that merely does not answer is `unknown`, never `failed`.
 */
export async function destinationVerdict(opts: {
  qmp: QmpClient;
  /** Set when a `MIGRATION completed` event already arrived from the destination. */
  completedByEvent: () => boolean;
  /** The caller knows the destination's process (the lab does): false once it has exited. */
  alive?: () => boolean;
  timeoutMs?: number;
}): Promise<{ verdict: DestinationVerdict; detail: string }> {
  const deadline = performance.now() + (opts.timeoutMs ?? 60_000);
  let qmp = opts.qmp;
  let last = 'no answer';
  try {
    for (;;) {
      if (opts.completedByEvent()) return { verdict: 'completed', detail: 'it reported completed' };
      if (opts.alive && !opts.alive()) return { verdict: 'gone', detail: 'its QEMU process exited' };
      try {
        const status = MigrationInfoSchema.parse(
          await qmp.execute('query-migrate', undefined, {
            timeoutMs: Math.max(100, Math.min(5000, deadline - performance.now())),
          }),
        ).status;
        if (status === 'completed') return { verdict: 'completed', detail: 'it reported completed' };
        if (status === 'failed' || status === 'cancelled')
          return { verdict: 'failed', detail: `its incoming migration is ${status}` };
        last = `still '${status}'`;
      } catch (err) {
        last = (err as Error).message;
        if (err instanceof QmpConnectionError && qmp.isClosed) {
          // Our connection is gone: reconnecting tells a dead QEMU from a busy one.
          try {
            const fresh = await QmpClient.connect(qmp.target, { timeoutMs: 3000 });
            if (qmp !== opts.qmp) qmp.close();
            qmp = fresh;
          } catch (e) {
            if (e instanceof QmpConnectionError && e.nobodyListens)
              return { verdict: 'gone', detail: `its monitor refuses connections (${e.message})` };
            last = (e as Error).message;
          }
        }
      }
      if (performance.now() > deadline) return { verdict: 'unknown', detail: last };
      await sleep(20);
    }
  } finally {
    if (qmp !== opts.qmp) qmp.close();
  }
}
