import { z } from 'zod';
import { frsRule, qemuAboutToConverge, qemuWillConverge } from './frs.js';
import { workingSetOf } from './working-set.js';
import {
  CONTINUE,
  drainedPasses,
  endedOnResync,
  hasActed,
  type Action,
  type ControllerState,
  type Policy,
} from './types.js';

export const MpConfigSchema = z
  .object({
    /** Passes the hot set looks back over. */
    window: z.coerce.number().int().min(2).default(3).describe('Passes the hot set looks back over.'),
    /** A region is hot when dirtied in at least this many of the last `window` passes. */
    hotMin: z.coerce
      .number()
      .int()
      .min(1)
      .default(2)
      .describe('A region is hot when dirtied in at least this many of the last window passes.'),
    convergingRatio: z.coerce
      .number()
      .positive()
      .default(0.7)
      .describe("converging: the dirty set fell to at most this share of the previous pass's."),
    stableJaccard: z.coerce
      .number()
      .min(0)
      .max(1)
      .default(0.8)
      .describe(
        "hot/cold: the hot set is stable when its Jaccard similarity with the last pass's is at least this.",
      ),
    movingJaccard: z.coerce
      .number()
      .min(0)
      .max(1)
      .default(0.5)
      .describe(
        'phase change: the hot set is moving when its Jaccard similarity falls below this (and the dirty set shrinks).',
      ),
    /** hot/cold: d_i within this fraction of the hot set's size. */
    hotSetTolerance: z.coerce
      .number()
      .min(0)
      .default(0.15)
      .describe("hot/cold: the dirty set is within this fraction of the hot set's size."),
    /** uniform-heavy: dirtied regions cover at least this share of all regions ever dirtied … */
    uniformCoverage: z.coerce
      .number()
      .min(0)
      .max(1)
      .default(0.8)
      .describe('uniform-heavy: dirtied regions cover at least this share of all regions ever dirtied …'),
    /** … and the guest dirties at least this share of the bandwidth. */
    heavyRatio: z.coerce
      .number()
      .min(0)
      .default(0.8)
      .describe('… and the guest dirties at least this share of the bandwidth.'),
    /** uniform-heavy with post-copy permitted: post-copy when projected downtime exceeds budget × this. */
    maxOverrun: z.coerce
      .number()
      .positive()
      .default(4)
      .describe(
        'uniform-heavy with post-copy permitted: post-copy when the projected downtime exceeds budget × this.',
      ),
    /** FRS parameters for the fallback when no region source is available. */
    epsilon: z.coerce
      .number()
      .min(0)
      .max(1)
      .default(0.1)
      .describe('FRS epsilon for the fallback when no region source is available (no --tap or sampling).'),
    maxPasses: z.coerce
      .number()
      .int()
      .min(2)
      .default(30)
      .describe('FRS maxPasses for the fallback when no region source is available.'),
  })
  .strict();
export type MpConfig = z.infer<typeof MpConfigSchema>;

export type MpPattern = 'converging' | 'hot/cold' | 'uniform-heavy' | 'phase change' | 'undecided';

export function jaccard(a: Set<number>, b: Set<number>): number {
  if (a.size === 0 && b.size === 0) return 1;
  let both = 0;
  for (const x of a) if (b.has(x)) both++;
  return both / (a.size + b.size - both);
}

/** Regions dirtied in ≥ hotMin of the `window` passes ending at pass index `end` (exclusive). */
export function hotSet(perPass: number[][], end: number, cfg: MpConfig): Set<number> {
  const counts = new Map<number, number>();
  for (const set of perPass.slice(Math.max(0, end - cfg.window), end)) {
    for (const r of set) counts.set(r, (counts.get(r) ?? 0) + 1);
  }
  return new Set([...counts].filter(([, n]) => n >= cfg.hotMin).map(([r]) => r));
}

/** Classifies the workload at the end of the last completed pass. Pure; exported for tests and the simulator. */
export function classify(state: ControllerState, cfg: MpConfig): { pattern: MpPattern; why: string } {
  const p = state.passes;
  const regions = state.regions!;
  const i = p.length;
  const last = p[i - 1]!;
  const d = last.dirtyAtEndBytes;
  const prev = p[i - 2]?.dirtyAtEndBytes;
  if (prev !== undefined && d <= cfg.convergingRatio * prev) {
    return { pattern: 'converging', why: `dirty ${mb(d)} ≤ ${cfg.convergingRatio} × ${mb(prev)}` };
  }
  const touched = new Set(regions.perPass.flat());
  const dirtied = new Set(regions.perPass[i - 1] ?? []);
  const coverage = touched.size ? dirtied.size / touched.size : 0;
  // Dirty rate against bandwidth over the window that matters, the next pass (d/B seconds): read
  // off the working-set curve (passes + calc-dirty-rate). A pass's own d/t understates it once the
  // set saturates; a short sampling window overstates it (fewer rewrites of the same page).
  const window = d / Math.max(1, state.bandwidthBps);
  const dirtyRate = window > 0 ? workingSetOf(state)(window) / window : 0;
  const heavy = dirtyRate / Math.max(1, state.bandwidthBps);
  if (coverage >= cfg.uniformCoverage && heavy >= cfg.heavyRatio) {
    return {
      pattern: 'uniform-heavy',
      why: `${(coverage * 100).toFixed(0)}% of touched regions dirtied, dirty rate ${(heavy * 100).toFixed(0)}% of bandwidth`,
    };
  }
  if (i >= 2) {
    const h = hotSet(regions.perPass, i, cfg);
    const hPrev = hotSet(regions.perPass, i - 1, cfg);
    const j = jaccard(h, hPrev);
    const hotBytes = h.size * regions.regionBytes;
    if (j >= cfg.stableJaccard && hotBytes > 0 && Math.abs(d - hotBytes) <= cfg.hotSetTolerance * hotBytes) {
      return {
        pattern: 'hot/cold',
        why: `hot set of ${h.size} regions stable (Jaccard ${j.toFixed(2)}), dirty ${mb(d)} ≈ hot ${mb(hotBytes)}`,
      };
    }
    if (j < cfg.movingJaccard && prev !== undefined && d < prev) {
      return { pattern: 'phase change', why: `hot set moving (Jaccard ${j.toFixed(2)}) and dirty shrinking` };
    }
  }
  return { pattern: 'undecided', why: `dirty ${mb(d)}` };
}

const mb = (b: number) => `${(b / 2 ** 20).toFixed(1)} MiB`;

/**
 * MP (Memory Pattern), from the study this project reproduces: watch which memory regions each pass
 * dirties, classify the workload, and switch over as early as the pattern allows — converging →
 * continue; hot/cold (stable hot set the size of the dirty set: the cold part is already sent) →
 * switch over; uniform-heavy (the guest re-dirties what each pass sends, everywhere) → switch over
 * right after the bulk pass, or post-copy if permitted and the projected downtime is far over
 * budget; phase change → one more pass. Region sets come from the migration tap or host-side
 * sampling; without either it falls back to FRS and says so. Never acts while QEMU can converge.
 * **Post-copy loses the guest if the destination or the link fails before it ends**; it is used
 * only with --allow-postcopy.
 */
export const mp: Policy<MpConfig> = {
  name: 'mp',
  summary:
    'classify the dirty pattern per memory region (converging, hot/cold, uniform-heavy, phase) and switch over as early as it allows',
  configSchema: MpConfigSchema,
  setup: (_cfg, ctx) => ({
    downtimeLimitMs: ctx.downtimeBudgetMs,
    postcopy: ctx.postcopyPermitted,
    autoConverge: false,
    wantsRegions: true,
    workingSetWindowsMs: [250],
  }),
  decide(state: ControllerState, cfg: MpConfig): Action {
    if (!state.atPassEnd || state.passes.length === 0 || hasActed(state, 'switchover', 'postcopy', 'pause'))
      return CONTINUE;
    if (!state.regions || state.regions.perPass.length < state.passes.length) {
      return frsRule(state, cfg, 'mp (no region source: FRS fallback)') ?? CONTINUE;
    }
    const last = state.passes.at(-1)!;
    if (qemuWillConverge(state, last.dirtyAtEndBytes))
      return { kind: 'continue', reason: 'mp: QEMU can converge by itself' };
    if (endedOnResync(state)) return { kind: 'continue', reason: 'mp: a quick re-sync, not a pass' };
    const prev = drainedPasses(state.passes).at(-2);
    if (prev && qemuAboutToConverge(state, last.dirtyAtEndBytes, prev.dirtyAtEndBytes)) {
      return {
        kind: 'continue',
        reason: 'mp: QEMU is about to converge (dirty still shrinking, near its threshold)',
      };
    }
    const { pattern, why } = classify(state, cfg);
    const tag = `mp[${state.regions.source}]: ${pattern} (${why})`;
    switch (pattern) {
      case 'hot/cold':
        return { kind: 'switchover', reason: `${tag} → switchover` };
      case 'uniform-heavy': {
        const projectedMs = (last.dirtyAtEndBytes / Math.max(1, state.bandwidthBps)) * 1000;
        if (state.postcopyPermitted && projectedMs > state.downtimeBudgetMs * cfg.maxOverrun) {
          return {
            kind: 'postcopy',
            reason: `${tag}; projected downtime ${projectedMs.toFixed(0)} ms → post-copy`,
          };
        }
        return { kind: 'switchover', reason: `${tag} → switchover` };
      }
      case 'converging':
      case 'phase change':
        return { kind: 'continue', reason: `${tag} → continue` };
      case 'undecided':
        return frsRule(state, cfg, `${tag}; frs`) ?? { kind: 'continue', reason: `${tag} → continue` };
    }
  },
};
