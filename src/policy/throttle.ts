import { z } from 'zod';
import { STEERED_THROTTLE_PARAMETERS } from './throttle-plan.js';
import { CONTINUE, drainedPasses, type Action, type Policy } from './types.js';

export const ThrottleConfigSchema = z
  .object({
    targetShare: z.coerce
      .number()
      .gt(0)
      .max(1)
      .default(0.8)
      .describe('Keep the dirty rate under this share of the send rate (SDPS: dirty < transmit).'),
    stepPct: z.coerce
      .number()
      .int()
      .min(1)
      .max(50)
      .default(5)
      .describe('Change the throttle only when the new one differs by at least this many points.'),
    maxPct: z.coerce
      .number()
      .int()
      .min(1)
      .max(99)
      .default(99)
      .describe('Never take more than this share of the vCPUs, %.'),
  })
  .strict();
type ThrottleConfig = z.infer<typeof ThrottleConfigSchema>;

/**
 * SDPS-like throttling (VMware vSphere 5.0's Stun During Page Send; Nelson, Lim & Hutchins,
 * "Fast transparent migration for virtual machines", USENIX ATC 2005, and VMware's vMotion
 * architecture paper, 2011): guarantee convergence by slowing the guest's vCPUs whenever it
 * dirties memory faster than the link sends it. In QEMU the lever is auto-converge's CPU throttle,
 * steered here at every pass end: throttle t such that dirty rate × (1 − t) ≤ targetShare × send
 * rate, from the pass that just ended. QEMU applies it at its next throttle check. It never
 * switches over itself: QEMU converges once the dirty rate is under the link. Price: the guest
 * runs slower (measured as guest slowdown).
 */
export const throttle: Policy<ThrottleConfig> = {
  name: 'throttle',
  summary: 'SDPS-like: steer the vCPU throttle so the dirty rate stays under the send rate; QEMU converges',
  configSchema: ThrottleConfigSchema,
  setup: (_cfg, ctx) => ({
    downtimeLimitMs: ctx.downtimeBudgetMs,
    postcopy: false,
    autoConverge: true,
    parameters: { ...STEERED_THROTTLE_PARAMETERS },
  }),
  decide(state, cfg): Action {
    if (!state.atPassEnd) return CONTINUE;
    const last = drainedPasses(state.passes).at(-1);
    if (!last || last.pass < 2 || last.endMs <= last.startMs) return CONTINUE;
    const seconds = (last.endMs - last.startMs) / 1000;
    const dirtyRate = last.dirtyAtEndBytes / seconds;
    const sendRate = last.bandwidthBps || state.bandwidthBps;
    if (sendRate <= 0) return CONTINUE;
    // The throttle already in force slowed the writes we measured: undo it to get the guest's own rate.
    const applied = state.throttlePercent ?? 0;
    const ownRate = dirtyRate / Math.max(0.01, 1 - applied / 100);
    const wanted = Math.min(
      cfg.maxPct,
      Math.max(0, Math.ceil((1 - (cfg.targetShare * sendRate) / ownRate) * 100)),
    );
    if (Math.abs(wanted - applied) < cfg.stepPct) return CONTINUE;
    return {
      kind: 'throttle',
      percent: wanted,
      reason: `throttle: guest dirties ${mb(ownRate)}/s unthrottled, link sends ${mb(sendRate)}/s → vCPU throttle ${wanted}% (was ${applied}%)`,
    };
  },
};

const mb = (b: number) => `${(b / 2 ** 20).toFixed(0)} MiB`;
