import { z } from 'zod';
import { CONTINUE, type Policy } from './types.js';

export const AutoConvergeConfigSchema = z
  .object({
    initialThrottlePct: z.coerce
      .number()
      .int()
      .min(1)
      .max(99)
      .default(20)
      .describe('cpu-throttle-initial: the first vCPU throttle when a pass leaves too much dirty, %.'),
    incrementPct: z.coerce
      .number()
      .int()
      .min(1)
      .max(99)
      .default(10)
      .describe('cpu-throttle-increment: added at each further step, %.'),
    maxThrottlePct: z.coerce
      .number()
      .int()
      .min(1)
      .max(99)
      .default(99)
      .describe('max-cpu-throttle: the throttle never goes above this, %.'),
  })
  .strict();

/**
 * QEMU's own `auto-converge` capability: when a pass leaves too much dirty, QEMU throttles the
 * guest's vCPUs (20%, then +10% per step, up to 99%) until the dirty rate falls below the link.
 * The controller never acts; QEMU's defaults are the defaults here.
 */
export const autoConverge: Policy<z.infer<typeof AutoConvergeConfigSchema>> = {
  name: 'auto-converge',
  summary: "QEMU's auto-converge CPU throttling (20% → +10% steps → 99%); never acts itself",
  configSchema: AutoConvergeConfigSchema,
  setup: (cfg, ctx) => ({
    downtimeLimitMs: ctx.downtimeBudgetMs,
    postcopy: false,
    autoConverge: true,
    parameters: {
      'cpu-throttle-initial': cfg.initialThrottlePct,
      'cpu-throttle-increment': cfg.incrementPct,
      'max-cpu-throttle': cfg.maxThrottlePct,
    },
  }),
  decide: () => CONTINUE,
};
