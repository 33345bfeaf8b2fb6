import { z } from 'zod';
import { CONTINUE, hasActed, type Action, type ControllerState, type Policy } from './types.js';

/** x86 page, the unit of Xen's counters (and of QEMU's `ram.normal`/`ram.duplicate`). */
const PAGE_BYTES = 4096;

export const XenConfigSchema = z
  .object({
    maxIters: z.coerce
      .number()
      .int()
      .min(1)
      .default(29)
      .describe(
        'DEF_MAX_ITERS: stop-and-copy once this many live passes have ended, so the stop-and-copy is pass 30 ("limit us to 30 times round loop").',
      ),
    maxFactor: z.coerce
      .number()
      .positive()
      .default(3)
      .describe(
        'DEF_MAX_FACTOR: stop-and-copy once the pages sent so far exceed this many times the guest RAM.',
      ),
    minPages: z.coerce
      .number()
      .int()
      .min(0)
      .default(50)
      .describe('Stop-and-copy when the pass that just ended had fewer than this many pages to send.'),
  })
  .strict();
export type XenConfig = z.infer<typeof XenConfigSchema>;

/** Pages a pass sent: QEMU's full and zero pages (Xen sends every page whole and counts pages). */
function pagesSent(p: ControllerState['passes'][number]): number {
  const pages = p.normalPages + p.zeroPages;
  return pages > 0 ? pages : p.bytesSent / PAGE_BYTES;
}

/**
 * Xen's classic pre-copy stop rule, as the legacy libxc saver had it (xen-project/xen
 * `tools/libxc/xc_domain_save.c` at 15d248048e1b, the last version before the file was removed in
 * b15bc4345e77, 2015): `DEF_MAX_ITERS 29` and `DEF_MAX_FACTOR 3` (lines 45–46, defaults applied at
 * 917–918); after each live iteration (lines 1545–1552; `iter` counts from 1, line 1140) it
 * suspends the domain and runs the last iteration when `iter >= max_iters`, or `sent_this_iter +
 * skip_this_iter < 50`, or `total_sent > p2m_size * max_factor`. The same heuristic is described in
 * Clark et al., "Live Migration of Virtual Machines", NSDI 2005. Mapped to QEMU: an iteration is a
 * pass (one dirty bitmap sync each, QEMU's millisecond re-syncs included, as each is a bitmap clean
 * like Xen's `SHADOW_OP_CLEAN`); `sent + skip` is what the ended pass had to send (its remaining at
 * start, in pages) — Xen tests the pass that just ended, not the dirty set found at the sync that
 * ends it; `total_sent` counts pages sent (QEMU's full + zero pages), not bytes; stop-and-copy is a
 * `switchover` to QEMU's maximum downtime-limit. Xen never aborts or post-copies: the controller's
 * deadline is the only limit.
 */
export const xen: Policy<XenConfig> = {
  name: 'xen',
  summary: "Xen's classic stop rule: stop-and-copy at pass 30, or < 50 pages to send, or > 3 × RAM sent",
  configSchema: XenConfigSchema,
  setup: (_cfg, ctx) => ({ downtimeLimitMs: ctx.downtimeBudgetMs, postcopy: false, autoConverge: false }),
  decide(state, cfg): Action {
    if (!state.atPassEnd || hasActed(state, 'switchover', 'postcopy', 'pause')) return CONTINUE;
    const ended = state.passes.at(-1);
    if (!ended) return CONTINUE;
    const iter = state.passes.length;
    const toSend = Math.ceil(ended.remainingAtStartBytes / PAGE_BYTES);
    const totalSent = state.passes.reduce((s, p) => s + pagesSent(p), 0);
    const ramPages = state.ramBytes / PAGE_BYTES;
    const why =
      iter >= cfg.maxIters
        ? `${iter} passes ≥ max_iters ${cfg.maxIters}`
        : toSend < cfg.minPages
          ? `pass ${ended.pass} had ${toSend} pages to send < ${cfg.minPages}`
          : totalSent > ramPages * cfg.maxFactor
            ? `${Math.round(totalSent)} pages sent > ${cfg.maxFactor} × ${ramPages} RAM pages`
            : undefined;
    if (!why) return CONTINUE;
    return { kind: 'switchover', reason: `xen: ${why} → stop-and-copy` };
  },
};
