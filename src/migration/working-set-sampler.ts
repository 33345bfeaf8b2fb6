import { setTimeout as sleep } from 'node:timers/promises';
import { z } from 'zod';
import type { WorkingSetSample } from '../core/controller.js';
import type { QmpClient } from '../qmp/index.js';

const DirtyRateSchema = z
  .object({ status: z.string().max(32), 'dirty-rate': z.number().optional() })
  .passthrough();

/**
 * Measures points of the working-set curve in the background with QEMU's `calc-dirty-rate`
 * (page-sampling: hashes sampled pages at the start and end of a window; the changed share × RAM
 * is what the guest dirtied within it). Cycles through the windows until `stopped()`.
 */
export async function sampleWorkingSet(opts: {
  qmp: () => QmpClient;
  windowsMs: number[];
  ramBytes: number;
  nowMs: () => number;
  stopped: () => boolean;
  onSample: (s: WorkingSetSample) => void;
}): Promise<void> {
  try {
    while (!opts.stopped()) {
      for (const ms of opts.windowsMs) {
        if (opts.stopped()) return;
        await opts.qmp().execute('calc-dirty-rate', {
          'calc-time': ms,
          'calc-time-unit': 'millisecond',
          mode: 'page-sampling',
        });
        let r: z.infer<typeof DirtyRateSchema>;
        do {
          await sleep(Math.min(50, ms / 2));
          r = DirtyRateSchema.parse(
            await opts.qmp().execute('query-dirty-rate', { 'calc-time-unit': 'millisecond' }),
          );
        } while (r.status !== 'measured' && !opts.stopped());
        if (r['dirty-rate'] !== undefined) {
          const seconds = ms / 1000;
          const bytes = Math.min(opts.ramBytes, r['dirty-rate'] * 2 ** 20 * seconds);
          opts.onSample({ seconds, bytes, atMs: opts.nowMs() });
        }
      }
      // Dense enough to see a bursty guest's quiet phases; each sample costs QEMU microseconds.
      await sleep(250);
    }
  } catch {
    // An older QEMU without millisecond windows, or the migration ended: no samples, no harm.
  }
}
