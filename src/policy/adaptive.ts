import { z } from 'zod';
import { qemuWillConverge } from './frs.js';
import { workingSetOf } from './working-set.js';
import {
  CONTINUE,
  MAX_DOWNTIME_LIMIT_MS,
  drainedPasses,
  endedOnResync,
  type Action,
  type ControllerState,
  type Policy,
} from './types.js';

export const AdaptiveConfigSchema = z
  .object({
    objective: z.enum(['downtime', 'total', 'data', 'balanced']).default('downtime'),
    /** How many more passes it considers. */
    horizon: z.coerce.number().int().min(1).max(30).default(6),
    /** Downtime saving each extra pass must buy, ms: smaller predicted gains are noise. */
    minGainMs: z.coerce.number().min(0).default(30),
    /** Finite downtime-limit = predicted downtime × this, so QEMU picks the moment within the pass. */
    limitMargin: z.coerce.number().min(1).default(1.3),
    /** A pass that shrank the dirty set by less than this share refutes any predicted gain. */
    refuteEpsilon: z.coerce.number().min(0).max(1).default(0.05),
    /** Fixed cost of a switchover (device state, sync), ms. */
    switchCostMs: z.coerce.number().min(0).default(40),
  })
  .strict();
export type AdaptiveConfig = z.infer<typeof AdaptiveConfigSchema>;

export interface Option {
  /** 0 = switch over now, k = after k more passes. */
  morePasses: number;
  downtimeMs: number;
  totalMs: number;
  bytes: number;
}

/** Predicts each option from the end of the last completed pass. */
export function predictOptions(state: ControllerState, cfg: AdaptiveConfig): Option[] {
  const B = Math.max(1, state.bandwidthBps);
  const W = workingSetOf(state);
  const options: Option[] = [];
  let dirty = state.passes.at(-1)!.dirtyAtEndBytes;
  let elapsedMs = state.elapsedMs;
  let bytes = state.transferredBytes;
  for (let k = 0; k <= cfg.horizon; k++) {
    const downtimeMs = (dirty / B) * 1000 + cfg.switchCostMs;
    options.push({ morePasses: k, downtimeMs, totalMs: elapsedMs + downtimeMs, bytes: bytes + dirty });
    const passSeconds = dirty / B;
    elapsedMs += passSeconds * 1000;
    bytes += dirty;
    dirty = W(passSeconds);
  }
  return options;
}

function score(o: Option, now: Option, cfg: AdaptiveConfig): number {
  switch (cfg.objective) {
    case 'downtime':
      return o.downtimeMs + o.totalMs * 1e-6; // ties → shorter
    case 'total':
      return o.totalMs;
    case 'data':
      return o.bytes;
    case 'balanced':
      return o.downtimeMs / now.downtimeMs + o.totalMs / now.totalMs + o.bytes / now.bytes;
  }
}

/**
 * Ours, model-predictive: at each pass end, fit the working-set curve from the passes so far,
 * predict downtime, total time and bytes for "switch over now" and "continue k more passes", and
 * take the best by the objective within the deadline. When switching, it raises downtime-limit
 * to a finite value from its prediction (× limitMargin), so QEMU itself picks the moment within the
 * pass when its exact dirty count fits; if QEMU still iterates at the next pass end, it raises the
 * limit to QEMU's maximum. Never acts while QEMU can converge by itself.
 */
export const adaptive: Policy<AdaptiveConfig> = {
  name: 'adaptive',
  summary:
    'predict downtime/total/bytes of switching now vs k more passes from the working-set curve; take the best',
  configSchema: AdaptiveConfigSchema,
  setup: (_cfg, ctx) => ({
    downtimeLimitMs: ctx.downtimeBudgetMs,
    postcopy: false,
    autoConverge: false,
    wantsRegions: true,
    workingSetWindowsMs: [125, 500],
  }),
  decide(state, cfg): Action {
    if (!state.atPassEnd || state.passes.length === 0) return CONTINUE;
    const switched = state.actions.find((a) => a.kind === 'switchover');
    if (switched) {
      // Our finite limit was not enough for QEMU to stop the guest within a pass: force it.
      if (state.currentPass > switched.pass + 1 && state.downtimeLimitMs < MAX_DOWNTIME_LIMIT_MS) {
        return {
          kind: 'switchover',
          reason: `adaptive: still iterating after a finite limit of ${state.downtimeLimitMs} ms → force`,
        };
      }
      return CONTINUE;
    }
    if (qemuWillConverge(state, state.passes.at(-1)!.dirtyAtEndBytes))
      return { kind: 'continue', reason: 'adaptive: QEMU can converge by itself' };
    // One point is not a curve: a line through it and the origin badly underestimates how fast a
    // heavy writer saturates its working set. With calc-dirty-rate's short windows it is anchored;
    // without them, learn from one more pass first.
    const drained = drainedPasses(state.passes);
    if (drained.length < 2 && !state.workingSetSamples?.length) {
      return { kind: 'continue', reason: 'adaptive: one pass is not a working-set curve yet' };
    }
    if (endedOnResync(state)) return { kind: 'continue', reason: 'adaptive: a quick re-sync, not a pass' };
    // The model is only worth following while the guest bears it out: once a pass no longer shrinks
    // the dirty set, more passes cannot pay, whatever the curve says (measured: a sequential writer
    // kept it predicting gains until the deadline).
    const [before, last] = drained.slice(-2);
    if (before && last && last.dirtyAtEndBytes >= (1 - cfg.refuteEpsilon) * before.dirtyAtEndBytes) {
      return {
        kind: 'switchover',
        reason: `adaptive: the last pass did not shrink the dirty set (${(last.dirtyAtEndBytes / 2 ** 20).toFixed(1)} ≥ ${(1 - cfg.refuteEpsilon).toFixed(2)} × ${(before.dirtyAtEndBytes / 2 ** 20).toFixed(1)} MiB) → switch now`,
      };
    }
    const options = predictOptions(state, cfg);
    const now = options[0]!;
    const feasible = options.filter((o) => o.totalMs <= state.deadlineMs);
    let best = feasible.length
      ? feasible.reduce((a, b) => (score(b, now, cfg) < score(a, now, cfg) ? b : a))
      : now;
    // Waiting must pay for every pass it costs: small per-pass gains are within the model's noise.
    if (cfg.objective === 'downtime' && now.downtimeMs - best.downtimeMs < cfg.minGainMs * best.morePasses)
      best = now;
    const fmt = (o: Option) =>
      `+${o.morePasses} passes: downtime ${o.downtimeMs.toFixed(0)} ms, total ${(o.totalMs / 1000).toFixed(1)} s, ${(o.bytes / 2 ** 20).toFixed(0)} MiB`;
    if (best.morePasses > 0)
      return { kind: 'continue', reason: `adaptive: best is ${fmt(best)} (now: ${fmt(now)})` };
    const limit = Math.max(state.downtimeLimitMs + 1, Math.round(now.downtimeMs * cfg.limitMargin));
    return {
      kind: 'switchover',
      downtimeLimitMs: limit,
      reason: `adaptive: switch now (${fmt(now)}), downtime-limit ${limit} ms`,
      prediction: { downtimeMs: now.downtimeMs, totalMs: now.totalMs, bytes: now.bytes },
    };
  },
};
