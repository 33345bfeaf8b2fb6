import { z } from 'zod';
import { flag } from './config.js';
import { kubevirt } from './kubevirt.js';
import { CONTINUE, hasActed, type Action, type ControllerState, type Policy } from './types.js';

export const KubevirtRampConfigSchema = z
  .object({
    maxDowntimeMs: z.coerce
      .number()
      .positive()
      .max(2_000_000)
      .default(900)
      .describe('maxDowntimeMs (KubeVirt default 900): the ceiling of the ramp, ms.'),
    initialMs: z.coerce
      .number()
      .positive()
      .default(150)
      .describe(
        'downtimeTuning.initialMs: the downtime-limit set at the start (capped at maxDowntimeMs), ms.',
      ),
    steps: z.coerce
      .number()
      .int()
      .min(1)
      .default(7)
      .describe(
        'downtimeTuning.steps: each increase adds (maxDowntimeMs − initialMs) ÷ steps, whole ms (at least 1).',
      ),
    startAfterIteration: z.coerce
      .number()
      .int()
      .min(0)
      .default(3)
      .describe(
        'downtimeTuning.startAfterIteration: no increase while the pass under way (MemIteration) is below this.',
      ),
    cooldownS: z.coerce
      .number()
      .positive()
      .default(10)
      .describe('downtimeTuning.cooldownSeconds: at least this long between two settings of the limit, s.'),
    pollMs: z.coerce
      .number()
      .positive()
      .default(400)
      .describe("virt-launcher's monitor poll period, ms: the ramp moves only on polls."),
    completionTimeoutPerGiB: z.coerce
      .number()
      .positive()
      .default(150)
      .describe(
        'completionTimeoutPerGiB, s per GB (10^9 bytes, rounded up) of RAM (the legacy monitor, unchanged).',
      ),
    progressTimeoutS: z.coerce
      .number()
      .positive()
      .default(150)
      .describe(
        'progressTimeout, s: abort when remaining has not dropped below its lowest for this long (legacy monitor).',
      ),
    allowPostCopy: flag
      .default(false)
      .describe('allowPostCopy: past the completion time, switch to post-copy.'),
    allowWorkloadDisruption: z
      .union([flag, z.literal('auto')])
      .default('auto')
      .describe(
        'allowWorkloadDisruption: past the completion time, post-copy or pause; "auto" = allowPostCopy.',
      ),
    scale: z.coerce
      .number()
      .positive()
      .default(1)
      .describe('Multiplies the completion and progress timeouts (not the ramp), to run them faster.'),
  })
  .strict();
export type KubevirtRampConfig = z.infer<typeof KubevirtRampConfigSchema>;

/** One step of the ramp: when virt-launcher sets it and to what. */
export interface RampStep {
  atMs: number;
  downtimeMs: number;
}

/**
 * The downtime-limits virt-launcher's `tuneDowntime` has set by `state.elapsedMs`, replayed from
 * the pass records: the first poll (at `pollMs`) sets `initialMs`; a later poll adds one step when
 * the pass under way is ≥ `startAfterIteration` and `cooldownS` have passed since the last setting,
 * up to `maxDowntimeMs`.
 */
export function rampSchedule(state: ControllerState, cfg: KubevirtRampConfig): RampStep[] {
  const initial = Math.min(cfg.initialMs, cfg.maxDowntimeMs);
  const step = Math.max(Math.trunc((cfg.maxDowntimeMs - initial) / cfg.steps), 1);
  const steps: RampStep[] = [];
  if (state.elapsedMs < cfg.pollMs) return steps;
  steps.push({ atMs: cfg.pollMs, downtimeMs: initial });
  // The pass under way at time t is 1 + the number of passes ended by t: iteration N begins when
  // pass N − 1 ends.
  const startMs =
    cfg.startAfterIteration <= 1
      ? 0
      : (state.passes[cfg.startAfterIteration - 2]?.endMs ?? Number.POSITIVE_INFINITY);
  let current = initial;
  let last = cfg.pollMs;
  const cooldownMs = cfg.cooldownS * 1000;
  for (;;) {
    const next = Math.max(startMs, last + cooldownMs);
    const atMs = Math.ceil(next / cfg.pollMs) * cfg.pollMs;
    if (atMs > state.elapsedMs) break;
    const downtimeMs = Math.min(current + step, cfg.maxDowntimeMs);
    if (downtimeMs <= current) break;
    steps.push({ atMs, downtimeMs });
    current = downtimeMs;
    last = atMs;
  }
  return steps;
}

/**
 * KubeVirt's dynamic downtime tuning (alpha, feature gate `MigrationDowntimeTuning`): VEP 291
 * (kubevirt/enhancements `veps/sig-compute/291-dynamic-downtime-tuning/vep.md` at 286caf345862),
 * code PR kubevirt/kubevirt#17480 (merged as 3e83f1130ac7): `tuneDowntime` in
 * `pkg/virt-launcher/virtwrap/live-migration-source.go` (lines 549–582 there; defaults 68–73:
 * initial 150 ms, 7 steps, start after iteration 3, cooldown 10 s; ceiling = `maxDowntimeMs`,
 * default 900, `pkg/virt-config/virt-config.go` line 51). On every 400 ms monitor poll: the first
 * sets the limit to `initialMs`; then, once libvirt's MemIteration (QEMU's dirty-sync-count) is ≥ 3
 * and at least 10 s passed since the last setting, it adds (max − initial) ÷ steps (integer ms) up
 * to max: 150, 257, 364, 471, 578, 685, 792, 899, 900 ms. Beside it the legacy monitor runs
 * unchanged (`handleLegacyConvergence`, as the `kubevirt` policy: progress timeout, completion
 * timeout, post-copy/pause/abort), which takes precedence here when it acts. Where the code differs
 * from the VEP and from policies.md: the ramp is time-based (a step per 10 s cooldown), gated by
 * the iteration, not a step per iteration; it ends at `maxDowntimeMs` (900 by default — the VEP's
 * examples and the commit message use 1050, where a step is 128 ms); the cooldown runs from the
 * initial setting, so the first increase comes at once when iteration 3 begins after 10 s (the VEP
 * says the cooldown starts then). Stateless: the schedule is replayed from the pass records
 * (`rampSchedule`); the initial limit is set before `migrate` rather than at the first poll.
 * **Post-copy loses the guest if the destination or the link fails before it ends**; it is used
 * only with --allow-postcopy.
 */
export const kubevirtRamp: Policy<KubevirtRampConfig> = {
  name: 'kubevirt-ramp',
  summary:
    "KubeVirt's downtime tuning (VEP 291): 150 → 900 ms in 7 steps, one per 10 s from iteration 3; KubeVirt's timeouts",
  configSchema: KubevirtRampConfigSchema,
  setup: (cfg, ctx) => ({
    downtimeLimitMs: Math.min(cfg.initialMs, cfg.maxDowntimeMs),
    postcopy: cfg.allowPostCopy && ctx.postcopyPermitted,
    autoConverge: false,
  }),
  decide(state, cfg): Action {
    const legacy = kubevirt.decide(state, {
      completionTimeoutPerGiB: cfg.completionTimeoutPerGiB,
      progressTimeoutS: cfg.progressTimeoutS,
      allowPostCopy: cfg.allowPostCopy,
      allowWorkloadDisruption:
        cfg.allowWorkloadDisruption === 'auto' ? undefined : cfg.allowWorkloadDisruption,
      scale: cfg.scale,
    });
    if (legacy.kind !== 'continue') return legacy;
    if (state.status !== 'active' || hasActed(state, 'postcopy', 'pause', 'abort', 'switchover'))
      return CONTINUE;
    const step = rampSchedule(state, cfg).at(-1);
    if (!step || step.downtimeMs <= state.downtimeLimitMs) return CONTINUE;
    return {
      kind: 'setDowntimeLimit',
      downtimeLimitMs: step.downtimeMs,
      reason: `kubevirt-ramp: iteration ${state.currentPass} ≥ ${cfg.startAfterIteration}, ${cfg.cooldownS} s since the last step → downtime-limit ${step.downtimeMs} ms (ceiling ${cfg.maxDowntimeMs})`,
    };
  },
};
