import { z } from 'zod';
import { CONTINUE, hasActed, type Policy } from './types.js';

export const PostcopyAfterConfigSchema = z
  .object({
    /** Switch to post-copy when pass `pass` ends (1 = right after the bulk copy; 0 = at once). */
    pass: z.coerce
      .number()
      .int()
      .min(0)
      .default(1)
      .describe('Switch to post-copy when this pass ends (1 = right after the bulk copy; 0 = at once).'),
  })
  .strict();

/**
 * Post-copy after a fixed number of pre-copy passes (QEMU guestperf's `--post-copy-iters`). The
 * guest then runs on the destination and fetches missing pages on demand: QEMU's downtime is
 * tiny, but the guest stalls on each remote fault, and **if the destination or the link is lost
 * during post-copy the guest is lost** — neither side holds all of its memory. Choosing this
 * policy enables post-copy.
 */
export const postcopyAfter: Policy<z.infer<typeof PostcopyAfterConfigSchema>> = {
  name: 'postcopy-after',
  summary:
    'switch to post-copy when pass K ends (K=1: right after the bulk copy); loses the guest if the destination dies during post-copy',
  configSchema: PostcopyAfterConfigSchema,
  setup: (_cfg, ctx) => ({ downtimeLimitMs: ctx.downtimeBudgetMs, postcopy: true, autoConverge: false }),
  decide(state, cfg) {
    if (state.currentPass <= cfg.pass || hasActed(state, 'postcopy')) return CONTINUE;
    return { kind: 'postcopy', reason: `postcopy-after: pass ${cfg.pass} ended → post-copy` };
  },
};
