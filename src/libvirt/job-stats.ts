/**
 * libvirt's job statistics (virDomainGetJobStats typed parameters, the same names `virsh
 * domjobinfo --rawstats` prints) translated into the shape of QEMU's `query-migrate` reply
 * (MigrationInfo in src/core/sample.ts), so the controller core consumes either driver unchanged.
 *
 * How the fields map (libvirt reads them from QEMU's query-migrate itself, qemu_migration.c):
 *   status              ← job type + domain state: unbounded job → 'setup' until memory_total is
 *                         counted, then 'active', or 'postcopy-active'
 *                         while the domain is paused for post-copy (reason postcopy),
 *                         'postcopy-paused' after a post-copy failure; completed → 'completed',
 *                         failed → 'failed', cancelled → 'cancelled', no job → 'none'
 *   total-time          ← time_elapsed (ms since the job began on this host, so it includes
 *                         libvirt's own begin/prepare phases: ~50–200 ms more than QEMU's)
 *   downtime            ← downtime of a completed job; while running libvirt's `downtime` is
 *                         QEMU's expected-downtime, so it goes to expected-downtime
 *   setup-time          ← setup_time
 *   ram.transferred     ← memory_processed (bytes)
 *   ram.remaining       ← memory_remaining (bytes)
 *   ram.total           ← memory_total (bytes)
 *   ram.duplicate       ← memory_constant (pages)
 *   ram.normal          ← memory_normal (pages)
 *   ram.dirty-sync-count← memory_iteration
 *   ram.dirty-pages-rate← memory_dirty_rate (pages/s, as QEMU's)
 *   ram.mbps            ← memory_bps × 8 / 1e6 (libvirt gives bytes/s, QEMU megabits/s)
 *   ram.postcopy-requests ← memory_postcopy_requests
 *   error-desc          ← errmsg (completed/failed jobs, libvirt ≥ 6.x)
 * Lost on the way: QEMU's fine status words (device, pre-switchover, wait-unplug,
 * postcopy-recover, cancelling: they all read as 'active' or the final word), pages-per-second,
 * precopy/downtime/postcopy byte split, dirty-limit fields, and anything polled between
 * libvirt's own refreshes (libvirt asks QEMU on every call, so nothing is cached).
 */
import { z } from 'zod';
import { MigrationInfoSchema, type MigrationInfo } from '../core/sample.js';
import type { TypedParams } from './xdr.js';

/** virDomainJobType. */
export const JOB_TYPE = { none: 0, bounded: 1, unbounded: 2, completed: 3, failed: 4, cancelled: 5 } as const;

const count = z.union([z.number(), z.bigint().transform(Number)]).pipe(z.number().nonnegative());

/** The job statistics this driver reads; others pass through untouched. */
export const JobParamsSchema = z
  .object({
    operation: count.optional(),
    time_elapsed: count.optional(),
    downtime: count.optional(),
    setup_time: count.optional(),
    memory_total: count.optional(),
    memory_processed: count.optional(),
    memory_remaining: count.optional(),
    memory_constant: count.optional(),
    memory_normal: count.optional(),
    memory_iteration: count.optional(),
    memory_dirty_rate: count.optional(),
    memory_bps: count.optional(),
    memory_postcopy_requests: count.optional(),
    errmsg: z.string().max(4096).optional(),
  })
  .passthrough();
export type JobParams = z.infer<typeof JobParamsSchema>;

/** The domain's state at the time of the stats, which tells post-copy apart (libvirt's job type does not). */
export interface StateHint {
  state: string;
  reason: string;
}

export function jobStatus(type: number, hint: StateHint | undefined): string {
  switch (type) {
    case JOB_TYPE.none:
      return 'none';
    case JOB_TYPE.completed:
      return 'completed';
    case JOB_TYPE.failed:
      return 'failed';
    case JOB_TYPE.cancelled:
      return 'cancelled';
    default:
      if (hint?.state === 'paused' && hint.reason === 'postcopy') return 'postcopy-active';
      if (hint?.reason === 'postcopy-failed') return 'postcopy-paused';
      if (hint?.state === 'running' && hint.reason === 'postcopy') return 'postcopy-active';
      return 'active';
  }
}

/** Translates one GetJobStats reply; throws a zod error when libvirt's values are not what we expect. */
export function toMigrationInfo(type: number, raw: TypedParams, hint?: StateHint): MigrationInfo {
  const p = JobParamsSchema.parse(raw);
  // Before QEMU has counted RAM libvirt reports zeros; QEMU's reply then has no `ram` and says 'setup'.
  const counting = (p.memory_total ?? 0) > 0;
  const status = !counting && type === JOB_TYPE.unbounded ? 'setup' : jobStatus(type, hint);
  const finished = type === JOB_TYPE.completed || type === JOB_TYPE.failed || type === JOB_TYPE.cancelled;
  const info: Record<string, unknown> = { status };
  if (p.time_elapsed !== undefined) info['total-time'] = p.time_elapsed;
  if (p.downtime !== undefined) info[finished ? 'downtime' : 'expected-downtime'] = p.downtime;
  if (p.setup_time !== undefined) info['setup-time'] = p.setup_time;
  if (p.errmsg !== undefined) info['error-desc'] = p.errmsg;
  if (counting && p.memory_total !== undefined) {
    info.ram = {
      transferred: p.memory_processed ?? 0,
      remaining: p.memory_remaining ?? 0,
      total: p.memory_total,
      duplicate: p.memory_constant ?? 0,
      normal: p.memory_normal ?? 0,
      'dirty-sync-count': p.memory_iteration ?? 0,
      ...(p.memory_dirty_rate !== undefined ? { 'dirty-pages-rate': p.memory_dirty_rate } : {}),
      ...(p.memory_bps !== undefined ? { mbps: (p.memory_bps * 8) / 1e6 } : {}),
      ...(p.memory_postcopy_requests !== undefined
        ? { 'postcopy-requests': p.memory_postcopy_requests }
        : {}),
    };
  }
  return MigrationInfoSchema.parse(info);
}
