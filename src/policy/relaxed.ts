import { z } from 'zod';
import { CONTINUE, MAX_DOWNTIME_LIMIT_MS, type Policy } from './types.js';

export const RelaxedConfigSchema = z
  .object({
    /** The downtime-limit QEMU runs with, ms. */
    downtimeLimitMs: z.coerce
      .number()
      .positive()
      .max(MAX_DOWNTIME_LIMIT_MS)
      .default(2000)
      .describe('The downtime-limit QEMU runs with, ms (instead of the budget).'),
  })
  .strict();

/**
 * Stock pre-copy with a looser downtime-limit L, never acting. The benchmark's baseline is
 * relaxed(L*), the smallest L on the ladder that completes every workload — the study's
 * "pre-copy with a relaxed downtime so it passes all tests".
 */
export const relaxed: Policy<z.infer<typeof RelaxedConfigSchema>> = {
  name: 'relaxed',
  summary: 'stock with a looser downtime-limit (downtimeLimitMs, default 2000); never acts',
  configSchema: RelaxedConfigSchema,
  setup: (cfg) => ({ downtimeLimitMs: cfg.downtimeLimitMs, postcopy: false, autoConverge: false }),
  decide: () => CONTINUE,
};
