import { z } from 'zod';
import { CONTINUE, hasActed, type Policy } from './types.js';

export const SwitchAtPassConfigSchema = z
  .object({
    /** The pass that becomes the stop-and-copy: the switchover is forced as soon as pass `pass` begins. */
    pass: z.coerce
      .number()
      .int()
      .min(2)
      .describe(
        'The pass that becomes the stop-and-copy: the switchover is forced as soon as it begins (pass 1 is the bulk copy).',
      ),
    /** downtime-limit to raise to; unset = QEMU's maximum (stop at its next check). */
    downtimeLimitMs: z.coerce
      .number()
      .positive()
      .optional()
      .describe("The downtime-limit to raise to, ms; unset = QEMU's maximum (stop at its next check)."),
  })
  .strict();

/**
 * A fixed rule, as QEMU's guestperf `--pause-iters` and Xen's pass cap: force stop-and-copy when a
 * given pass begins, whatever the guest does. The benchmark's `oracle` is the best of these in
 * hindsight; `--switch-at-pass K` on the command line is this policy.
 */
export const switchAtPass: Policy<z.infer<typeof SwitchAtPassConfigSchema>> = {
  name: 'switch-at-pass',
  summary: 'force switchover when pass K begins (K ≥ 2)',
  configSchema: SwitchAtPassConfigSchema,
  setup: (_cfg, ctx) => ({ downtimeLimitMs: ctx.downtimeBudgetMs, postcopy: false, autoConverge: false }),
  decide(state, cfg) {
    if (state.currentPass < cfg.pass || hasActed(state, 'switchover')) return CONTINUE;
    return {
      kind: 'switchover',
      downtimeLimitMs: cfg.downtimeLimitMs,
      reason: `switch-at-pass: pass ${state.currentPass} began (≥ ${cfg.pass}) → switchover`,
    };
  },
};
