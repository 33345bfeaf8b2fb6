import { z } from 'zod';
import {
  CONTINUE,
  drainedPasses,
  endedOnResync,
  hasActed,
  type Action,
  type ControllerState,
  type Policy,
} from './types.js';

export const FrsConfigSchema = z
  .object({
    /** The dirty set "stopped shrinking" when d_i ≥ (1 − epsilon) × d_{i−1}. */
    epsilon: z.coerce
      .number()
      .min(0)
      .max(1)
      .default(0.1)
      .describe('The dirty set stopped shrinking when d_i ≥ (1 − epsilon) × d_{i−1}: then switch over.'),
    /** Switch over at this pass at the latest (Xen's classic cap). */
    maxPasses: z.coerce
      .number()
      .int()
      .min(2)
      .default(30)
      .describe("Switch over at this pass at the latest (Xen's classic cap)."),
  })
  .strict();
export type FrsConfig = z.infer<typeof FrsConfigSchema>;

/** True when QEMU will finish by itself: what is dirty fits in downtime-limit × bandwidth. */
export function qemuWillConverge(state: ControllerState, dirtyBytes: number): boolean {
  return dirtyBytes <= state.bandwidthBps * (state.downtimeLimitMs / 1000);
}

/**
 * QEMU is about to converge: the dirty set still shrinks and is within `margin` of what QEMU may
 * stop with. Forcing a switchover here would only trade a few passes for a downtime over budget.
 */
export function qemuAboutToConverge(
  state: ControllerState,
  dirtyBytes: number,
  previousBytes: number,
  margin = 1.25,
): boolean {
  return (
    dirtyBytes < previousBytes && dirtyBytes <= margin * state.bandwidthBps * (state.downtimeLimitMs / 1000)
  );
}

/** The FRS rule on completed passes; undefined when it does not fire. Shared with `mp`'s fallback. */
export function frsRule(state: ControllerState, cfg: FrsConfig, tag = 'frs'): Action | undefined {
  const p = drainedPasses(state.passes);
  const i = p.length;
  if (i < 2 || !state.atPassEnd || hasActed(state, 'switchover', 'postcopy', 'pause')) return undefined;
  if (endedOnResync(state)) return undefined;
  const d = p[i - 1]!.dirtyAtEndBytes;
  const prev = p[i - 2]!.dirtyAtEndBytes;
  if (qemuWillConverge(state, d) || qemuAboutToConverge(state, d, prev)) return undefined;
  const mib = (b: number) => `${(b / 2 ** 20).toFixed(1)} MiB`;
  if (d >= (1 - cfg.epsilon) * prev) {
    return {
      kind: 'switchover',
      reason: `${tag}: dirty ${mib(d)} ≥ ${(1 - cfg.epsilon).toFixed(2)} × previous ${mib(prev)}: the frequently referenced set → switchover`,
    };
  }
  if (i >= cfg.maxPasses)
    return { kind: 'switchover', reason: `${tag}: pass ${i} ≥ maxPasses ${cfg.maxPasses} → switchover` };
  return undefined;
}

/**
 * FRS (Frequently-Referenced Set), from the study this project reproduces: count dirty pages every
 * pass; once the count stops shrinking (d_i ≥ (1 − ε)·d_{i−1}), what is left is the set the guest
 * keeps re-dirtying, and more passes only resend it → switch over now. Also at maxPasses (Xen).
 * It never acts while QEMU can converge on its own (dirty ≤ bandwidth × downtime-limit).
 */
export const frs: Policy<FrsConfig> = {
  name: 'frs',
  summary: 'switch over once the dirty set stops shrinking (d_i ≥ (1−ε)·d_{i−1}) or at maxPasses',
  configSchema: FrsConfigSchema,
  setup: (_cfg, ctx) => ({ downtimeLimitMs: ctx.downtimeBudgetMs, postcopy: false, autoConverge: false }),
  decide: (state, cfg) => frsRule(state, cfg) ?? CONTINUE,
};
