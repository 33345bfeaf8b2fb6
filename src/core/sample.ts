import { z } from 'zod';

/** The parts of `query-migrate` we depend on, parsed at the edge. */
export const MigrationInfoSchema = z
  .object({
    status: z.string().optional(),
    'total-time': z.number().optional(),
    downtime: z.number().optional(),
    'expected-downtime': z.number().optional(),
    'setup-time': z.number().optional(),
    'error-desc': z.string().optional(),
    ram: z
      .object({
        transferred: z.number(),
        remaining: z.number(),
        total: z.number(),
        duplicate: z.number(),
        normal: z.number(),
        'dirty-sync-count': z.number(),
        'dirty-pages-rate': z.number().optional(),
        mbps: z.number().optional(),
        'postcopy-requests': z.number().optional(),
      })
      .passthrough()
      .optional(),
  })
  .passthrough();
export type MigrationInfo = z.infer<typeof MigrationInfoSchema>;

export const TERMINAL_STATUSES = new Set(['completed', 'failed', 'cancelled']);
