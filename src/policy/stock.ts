import { z } from 'zod';
import { CONTINUE, type Policy } from './types.js';

export const StockConfigSchema = z.object({}).strict();

/**
 * QEMU alone: downtime-limit = the user's downtime budget, and the controller never acts. This is
 * what a plain `virsh migrate --live` gives; on memory-intensive guests it iterates until the
 * deadline, where the safety layer cancels it (a failure).
 */
export const stock: Policy<z.infer<typeof StockConfigSchema>> = {
  name: 'stock',
  summary: 'QEMU alone with downtime-limit = budget; never acts (cancelled at the deadline)',
  configSchema: StockConfigSchema,
  setup: (_cfg, ctx) => ({ downtimeLimitMs: ctx.downtimeBudgetMs, postcopy: false, autoConverge: false }),
  decide: () => CONTINUE,
};
