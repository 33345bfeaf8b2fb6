import { z } from 'zod';

/**
 * One observation of the migration in the shape of QEMU's `query-migrate` reply: the lingua franca
 * of the drivers. The QMP driver parses QEMU's reply with it, the libvirt driver translates job
 * statistics into it, the simulator's model produces it.
 */
export const MigrationInfoSchema = z
  .object({
    status: z.string().max(64).optional(),
    'total-time': z.number().optional(),
    downtime: z.number().optional(),
    'expected-downtime': z.number().optional(),
    'setup-time': z.number().optional(),
    'error-desc': z.string().max(4096).optional(),
    ram: z
      .object({
        transferred: z.number().nonnegative(),
        remaining: z.number().nonnegative(),
        total: z.number().nonnegative(),
        duplicate: z.number().nonnegative(),
        normal: z.number().nonnegative(),
        'dirty-sync-count': z.number().int().nonnegative(),
        'dirty-pages-rate': z.number().optional(),
        mbps: z.number().optional(),
        'postcopy-requests': z.number().optional(),
      })
      .passthrough()
      .optional(),
  })
  .passthrough();
export type MigrationInfo = z.infer<typeof MigrationInfoSchema>;

/** QEMU's migration statuses after which nothing more happens. */
export const TERMINAL_STATUSES = new Set(['completed', 'failed', 'cancelled']);

/** Pre-copy statuses: a `migrate_cancel` here leaves the source running with all its memory. */
export const PRECOPY_STATUSES = new Set(['setup', 'active', 'device', 'pre-switchover', 'wait-unplug']);

/** Any `postcopy-*` status: the guest runs on the destination; the source's memory is stale. */
export function isPostcopyStatus(status: string | undefined): boolean {
  return status !== undefined && status.startsWith('postcopy');
}
