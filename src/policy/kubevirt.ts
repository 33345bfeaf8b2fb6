import { z } from 'zod';
import { flag } from './config.js';
import { CONTINUE, firstAction, type Action, type Policy } from './types.js';

export const KubevirtConfigSchema = z
  .object({
    /** completionTimeoutPerGiB, s. */
    completionTimeoutPerGiB: z.coerce
      .number()
      .positive()
      .default(150)
      .describe('completionTimeoutPerGiB: seconds per GB of data before the migration is ended.'),
    /** progressTimeout, s: abort when `remaining` has not dropped below its lowest for this long. */
    progressTimeoutS: z.coerce
      .number()
      .positive()
      .default(150)
      .describe('progressTimeout, s: abort when remaining has not dropped below its lowest for this long.'),
    allowPostCopy: flag
      .default(false)
      .describe(
        'allowPostCopy: at the completion timeout, switch to post-copy (needs --allow-postcopy too).',
      ),
    /** allowWorkloadDisruption; defaults to allowPostCopy as in KubeVirt. */
    allowWorkloadDisruption: flag
      .optional()
      .describe(
        'allowWorkloadDisruption: at the completion timeout, post-copy or pause instead of abort (defaults to allowPostCopy).',
      ),
    /** Multiplies both timeouts, to run KubeVirt's schedule faster in tests and benchmarks. */
    scale: z.coerce
      .number()
      .positive()
      .default(1)
      .describe("Multiplies both timeouts, to run KubeVirt's schedule faster in tests and benchmarks."),
  })
  .strict();
type KubevirtConfig = z.infer<typeof KubevirtConfigSchema>;

/**
 * KubeVirt's virt-launcher migration monitor (`pkg/virt-launcher/virtwrap/live-migration-source.go`,
 * defaults from `pkg/virt-config/virt-config.go`). Acceptable completion time =
 * completionTimeoutPerGiB × data size in GB (10^9 bytes, rounded up). In order: in post-copy →
 * nothing; past the completion time with allowWorkloadDisruption → post-copy if allowed, else pause
 * and double the completion time; no progress for progressTimeout → abort; past the completion
 * time → abort. It never touches downtime-limit. **Post-copy loses the guest if the destination or
 * the link fails before it ends**; it is used only with --allow-postcopy.
 */
export const kubevirt: Policy<KubevirtConfig> = {
  name: 'kubevirt',
  summary: "KubeVirt's monitor: progress timeout and completion timeout per GiB → post-copy, pause or abort",
  configSchema: KubevirtConfigSchema,
  setup: (cfg, ctx) => ({
    downtimeLimitMs: ctx.downtimeBudgetMs,
    postcopy: cfg.allowPostCopy && ctx.postcopyPermitted,
    autoConverge: false,
  }),
  decide(state, cfg): Action {
    // In post-copy, or switching to it: nothing more to do (an abort now would cut the switch).
    if (state.status === 'postcopy-active' || firstAction(state, 'postcopy')) return CONTINUE;
    const disruption = cfg.allowWorkloadDisruption ?? cfg.allowPostCopy;
    const completionMs = cfg.completionTimeoutPerGiB * Math.ceil(state.ramBytes / 1e9) * 1000 * cfg.scale;
    const paused = firstAction(state, 'pause');
    const acceptableMs = paused ? completionMs * 2 : completionMs;
    const late = state.elapsedMs > acceptableMs;
    if (late && disruption && !paused && !firstAction(state, 'postcopy')) {
      const why = `kubevirt: past the acceptable completion time ${(acceptableMs / 1000).toFixed(1)} s`;
      return cfg.allowPostCopy && state.postcopyPermitted
        ? { kind: 'postcopy', reason: `${why} → post-copy` }
        : { kind: 'pause', reason: `${why} → pause the guest (completion time doubled)` };
    }
    const stalledMs = state.elapsedMs - state.progressWatermark.atMs;
    if (stalledMs > cfg.progressTimeoutS * 1000 * cfg.scale) {
      return {
        kind: 'abort',
        reason: `kubevirt: no progress for ${(stalledMs / 1000).toFixed(1)} s → abort`,
      };
    }
    if (late)
      return {
        kind: 'abort',
        reason: `kubevirt: past the acceptable completion time ${(acceptableMs / 1000).toFixed(1)} s → abort`,
      };
    return CONTINUE;
  },
};
