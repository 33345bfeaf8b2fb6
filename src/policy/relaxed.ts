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

/** The study's ladder for relaxed(L*), ms. */
export const RELAXED_LADDER: readonly number[] = [
  300, 500, 750, 1000, 1500, 2000, 3000, 5000, 8000, 13000, 21000,
];

/**
 * The relaxed(L*) ladder search, one for the bench and the simulator: the smallest rung, in
 * ascending order, on which `completes` holds (stock pre-copy finishes with that downtime-limit),
 * or undefined when none does. `completes` may run a migration (the simulator) or read runs
 * already made (the bench, which runs every rung on every rep).
 */
export function ladderSearch(
  rungs: readonly number[],
  completes: (limitMs: number) => boolean,
): number | undefined {
  return [...rungs].sort((a, b) => a - b).find((l) => completes(l));
}
