import { z } from 'zod';
import { flag } from './config.js';
import { qemuWillConverge } from './frs.js';
import { PROXMOX_XBZRLE } from './proxmox.js';
import { STEERED_THROTTLE_PARAMETERS, predictThrottled, type ThrottleOption } from './throttle-plan.js';
import { quietPhases, workingSetOf } from './working-set.js';
import {
  CONTINUE,
  MAX_DOWNTIME_LIMIT_MS,
  drainedPasses,
  endedOnResync,
  hasActed,
  type Action,
  type ControllerState,
  type PassRecord,
  type Policy,
} from './types.js';

export const AdaptiveConfigSchema = z
  .object({
    objective: z
      .enum(['downtime', 'total', 'data', 'balanced'])
      .default('downtime')
      .describe(
        'What to minimise: downtime, total time, data sent, or a balance of the three (also --objective).',
      ),
    /** How many more passes it considers. */
    horizon: z.coerce.number().int().min(1).max(30).default(6).describe('How many more passes it considers.'),
    /** Downtime saving each extra pass must buy, ms: smaller predicted gains are noise. */
    minGainMs: z.coerce
      .number()
      .min(0)
      .default(30)
      .describe('Downtime saving each extra pass must buy, ms: smaller predicted gains are noise.'),
    /** Finite downtime-limit = predicted downtime × this, so QEMU picks the moment within the pass. */
    limitMargin: z.coerce
      .number()
      .min(1)
      .default(1.3)
      .describe(
        'Finite downtime-limit = predicted downtime × this, so QEMU picks the moment within the pass.',
      ),
    /** A pass that shrank the dirty set by less than this share refutes any predicted gain. */
    refuteEpsilon: z.coerce
      .number()
      .min(0)
      .max(1)
      .default(0.05)
      .describe('A pass that shrank the dirty set by less than this share refutes any predicted gain.'),
    /** Fixed cost of a switchover (device state, sync), ms. */
    switchCostMs: z.coerce
      .number()
      .min(0)
      .default(40)
      .describe('Fixed cost of a switchover (device state, sync), ms.'),
    /**
     * Post-copy (only with --allow-postcopy): the guest stalls until the pages it touches within
     * this window have crossed the link; its felt downtime is predicted from W(window).
     */
    postcopyTouchMs: z.coerce
      .number()
      .min(0)
      .default(125)
      .describe(
        'Post-copy (only with --allow-postcopy): the guest stalls until the pages it touches within this window, ms, have crossed.',
      ),
    /** Dirty-rate history a decision during the bulk pass needs, ms: a bursty guest must show itself. */
    observeMs: z.coerce
      .number()
      .min(0)
      .default(1500)
      .describe(
        'Dirty-rate history a decision during the bulk pass needs, ms: a bursty guest must show itself.',
      ),
    /** A calc-dirty-rate sample under this share of the busiest marks a quiet phase. */
    quietShare: z.coerce
      .number()
      .min(0)
      .max(1)
      .default(0.2)
      .describe('A calc-dirty-rate sample under this share of the busiest marks a quiet phase.'),
    /** Longest it waits for a quiet phase before judging the guest as if it had none, s. */
    quietWaitS: z.coerce
      .number()
      .min(0)
      .default(30)
      .describe('Longest it waits for a quiet phase before judging the guest as if it had none, s.'),
    /**
     * xbzrle delta compression of re-sent pages, cache 10% of RAM as Proxmox sets it (issue 17:
     * Proxmox's xbzrle + auto-converge beat every other rule's stall on the hot/cold guest). Off by
     * default until measured on guests that rewrite whole pages; the predictions ignore it.
     */
    xbzrle: flag
      .default(false)
      .describe(
        "Turn QEMU's xbzrle on (cache 10% of RAM, rounded up to a power of two), as Proxmox does; predictions ignore its compression.",
      ),
    /**
     * On a guest QEMU converges by itself, the downtime-limit it converges under is the stall: a
     * limit below the budget costs a pass or two and stalls less (measured on memcached and
     * pgbench at 256 Mbit: Proxmox's 100 ms start stalled 0.12–0.16 s, the 300 ms budget 0.36–0.41 s).
     * When the dirty set stops shrinking above it, adaptive switches within the budget as before.
     */
    startLimitShare: z.coerce
      .number()
      .gt(0)
      .max(1)
      .default(1)
      .describe(
        "Start QEMU's downtime-limit at this share of the budget (1: the budget); a guest that converges by itself then stalls less, for a pass or two.",
      ),
    /**
     * Issue 17: throttling as a third way out when neither a switchover nor post-copy meets the
     * budget. Off by default until benchmarked beside the production rules.
     */
    throttle: flag
      .default(false)
      .describe(
        'May throttle the vCPUs (auto-converge) when no switchover or post-copy meets the budget and the stall it saves outweighs the vCPU time it takes (objective downtime).',
      ),
    /** QEMU sleeps a throttled vCPU p/(1−p) × 10 ms per 10 ms slice: 40 ms at 80%, 90 ms at 90%. */
    maxThrottlePct: z.coerce
      .number()
      .int()
      .min(10)
      .max(99)
      .default(80)
      .describe(
        'Highest vCPU throttle it sets, %. QEMU sleeps a vCPU p/(1−p) × 10 ms per 10 ms slice (40 ms at 80%, 90 ms at 90%, ~1 s at 99%): past this each sleep is a pause applications see.',
      ),
    /**
     * The throttle prediction extrapolates the working-set curve to the short windows a throttled
     * guest runs in (calc-dirty-rate's noisiest); a smaller predicted saving is within its error.
     */
    throttleMinSaving: z.coerce
      .number()
      .min(0)
      .max(1)
      .default(0.2)
      .describe(
        'Throttle only for a predicted saving of at least this share of the stall: the throttled prediction extrapolates the working-set curve to short windows, where it errs most.',
      ),
    /** A ms of vCPU time the throttle takes, in ms of stall: 0.1 = 10 s taken weighs as 1 s stalled. */
    slowdownWeight: z.coerce
      .number()
      .min(0)
      .default(0.1)
      .describe(
        'What a ms of vCPU time the throttle takes costs, in ms of stall (0.1: 10 s taken — 20 s at half speed — weighs as a 1 s stall).',
      ),
  })
  .strict();
export type AdaptiveConfig = z.infer<typeof AdaptiveConfigSchema>;

export interface Option {
  /** 0 = switch over now, k = after k more passes. */
  morePasses: number;
  /** Post-copy now rather than stop-and-copy. */
  postcopy?: boolean;
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

/**
 * Post-copy now: the rest of RAM crosses the link once (no more passes), and the guest, running on
 * the destination, stalls until what it touches within `postcopyTouchMs` has arrived. A coarse
 * model — fault latency and the background stream's order are ignored — reported with its error.
 */
export function predictPostcopy(state: ControllerState, cfg: AdaptiveConfig): Option {
  const B = Math.max(1, state.bandwidthBps);
  const stalled = Math.min(state.remainingBytes, workingSetOf(state)(cfg.postcopyTouchMs / 1000));
  return {
    morePasses: 0,
    postcopy: true,
    downtimeMs: cfg.switchCostMs + (stalled / B) * 1000,
    totalMs: state.elapsedMs + cfg.switchCostMs + (state.remainingBytes / B) * 1000,
    bytes: state.transferredBytes + state.remainingBytes,
  };
}

/** Pre-copy cannot meet the budget: a pass lasts ≥ L before the last one, so it leaves ≥ W(L) dirty. */
function precopyCannotMeetBudget(state: ControllerState): boolean {
  const L = state.downtimeBudgetMs / 1000;
  return workingSetOf(state)(L) > state.bandwidthBps * L;
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
 *
 * A guest whose dirty rate drops at times (calc-dirty-rate samples under `quietShare` of the
 * busiest) is left to converge by itself in a quiet phase, up to `quietWaitS`. With
 * `--allow-postcopy`, when no pre-copy option meets the budget it compares "post-copy now" too —
 * during the bulk pass already, once `observeMs` of samples show a steady guest whose working set
 * cannot fit the budget: every page then crosses once. **If the destination or the link is lost
 * during post-copy, the guest is lost**; without the flag it never post-copies.
 */
export const adaptive: Policy<AdaptiveConfig> = {
  name: 'adaptive',
  summary:
    'predict downtime/total/bytes of switching now, k more passes, waiting for a quiet phase or (if permitted) post-copy; take the best',
  configSchema: AdaptiveConfigSchema,
  setup: (cfg, ctx) => ({
    downtimeLimitMs: Math.max(1, Math.round(ctx.downtimeBudgetMs * cfg.startLimitShare)),
    postcopy: ctx.postcopyPermitted,
    autoConverge: false,
    wantsRegions: true,
    workingSetWindowsMs: [125, 500],
    ...(cfg.xbzrle ? { xbzrle: PROXMOX_XBZRLE } : {}),
    ...(cfg.throttle ? { autoConverge: true, parameters: { ...STEERED_THROTTLE_PARAMETERS } } : {}),
  }),
  decide(state, cfg): Action {
    if (hasActed(state, 'postcopy')) return CONTINUE;
    const quiet = quietPhases(state, cfg.quietShare);
    // During the bulk pass: once the guest has been watched long enough to show it has no quiet
    // phases, and its working set cannot fit the budget, post-copy at once sends every page once.
    if (
      state.postcopyPermitted &&
      state.passes.length === 0 &&
      !quiet &&
      (state.workingSetSamples?.length ?? 0) >= 2 &&
      state.workingSetSamples![0]!.atMs <= state.elapsedMs - cfg.observeMs &&
      precopyCannotMeetBudget(state)
    ) {
      return toPostcopy(predictPostcopy(state, cfg), 'the working set cannot fit the budget');
    }
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
    const throttledAt = state.actions.findLast((a) => a.kind === 'throttle');
    if (throttledAt) return whileThrottled(state, cfg, throttledAt.pass);
    // A guest with quiet phases: keep the budget and let QEMU converge by itself in one.
    // It leaves the last fifth of the deadline for the switchover.
    if (
      quiet &&
      state.elapsedMs < quiet.firstQuietAtMs + cfg.quietWaitS * 1000 &&
      state.elapsedMs < 0.8 * state.deadlineMs
    ) {
      return {
        kind: 'continue',
        reason: `adaptive: the dirty rate drops under ${Math.round(cfg.quietShare * 100)}% of ${(quiet.busyBps / 2 ** 20).toFixed(0)} MiB/s at times → wait for a quiet phase`,
      };
    }
    // The model is only worth following while the guest bears it out: once a pass no longer shrinks
    // the dirty set, more passes cannot pay, whatever the curve says (measured: a sequential writer
    // kept it predicting gains until the deadline).
    const [before, last] = drained.slice(-2);
    if (before && last && last.dirtyAtEndBytes >= (1 - cfg.refuteEpsilon) * before.dirtyAtEndBytes) {
      const pcNow =
        state.postcopyPermitted && precopyCannotMeetBudget(state) ? predictPostcopy(state, cfg) : undefined;
      const throttled = throttleRather(state, cfg, pcNow ?? predictOptions(state, cfg)[0]!);
      if (throttled) return throttled;
      if (pcNow) return toPostcopy(pcNow, 'the last pass did not shrink the dirty set');
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
    // Post-copy competes only when no pre-copy option meets the budget: it risks the guest if the
    // destination or the link fails before it ends.
    const pc =
      state.postcopyPermitted && best.downtimeMs > state.downtimeBudgetMs
        ? predictPostcopy(state, cfg)
        : undefined;
    const postcopyWins = pc !== undefined && score(pc, now, cfg) < score(best, now, cfg);
    if (postcopyWins || best.morePasses === 0) {
      const throttled = throttleRather(state, cfg, postcopyWins ? pc : best);
      if (throttled) return throttled;
    }
    if (postcopyWins) return toPostcopy(pc, `no pre-copy option meets the budget (best ${fmt(best)})`);
    if (best.morePasses > 0)
      return { kind: 'continue', reason: `adaptive: best is ${fmt(best)} (now: ${fmt(now)})` };
    return switchNow(state, cfg, now, `switch now (${fmt(now)})`);
  },
};

const fmt = (o: Option) =>
  `${o.postcopy ? 'post-copy' : `+${o.morePasses} passes`}: downtime ${o.downtimeMs.toFixed(0)} ms, total ${(o.totalMs / 1000).toFixed(1)} s, ${(o.bytes / 2 ** 20).toFixed(0)} MiB`;

function toPostcopy(o: Option, why: string): Action {
  return {
    kind: 'postcopy',
    reason: `adaptive: ${why} → post-copy now (${fmt(o)})`,
    prediction: { downtimeMs: o.downtimeMs, totalMs: o.totalMs, bytes: o.bytes },
  };
}

/**
 * Switch over with a finite downtime-limit from the prediction (× limitMargin), so QEMU itself
 * picks the moment within the pass when its exact dirty count fits.
 */
function switchNow(state: ControllerState, cfg: AdaptiveConfig, now: Option, why: string): Action {
  const limit = Math.max(state.downtimeLimitMs + 1, Math.round(now.downtimeMs * cfg.limitMargin));
  return {
    kind: 'switchover',
    downtimeLimitMs: limit,
    reason: `adaptive: ${why}, downtime-limit ${limit} ms`,
    prediction: { downtimeMs: now.downtimeMs, totalMs: now.totalMs, bytes: now.bytes },
  };
}

/**
 * Throttling instead of `chosen` (the best switchover or post-copy), when that misses the budget:
 * every throttle level up to `maxThrottlePct` is predicted, and the one with the least stall plus
 * `slowdownWeight` × the vCPU time it takes is taken if that beats `chosen`'s stall by `minGainMs`
 * and saves at least `throttleMinSaving` of it. Otherwise one probe at `maxThrottlePct` measures
 * what the model cannot see, when its vCPU time weighs less than the most it could save.
 */
function throttleRather(state: ControllerState, cfg: AdaptiveConfig, chosen: Option): Action | undefined {
  if (!cfg.throttle || cfg.objective !== 'downtime' || chosen.downtimeMs <= state.downtimeBudgetMs)
    return undefined;
  const W = workingSetOf(state);
  const cost = (o: ThrottleOption) => o.downtimeMs + cfg.slowdownWeight * o.takenMs;
  let best: ThrottleOption | undefined;
  for (const percent of throttleLevels(cfg.maxThrottlePct)) {
    const o = predictThrottled(state, W, percent, {
      switchCostMs: cfg.switchCostMs,
      epsilon: cfg.refuteEpsilon,
      maxPasses: THROTTLED_PASSES,
    });
    if (o && (!best || cost(o) < cost(best))) best = o;
  }
  const now = `adaptive: ${chosen.postcopy ? 'post-copy' : 'switching'} now would stall ${chosen.downtimeMs.toFixed(0)} ms`;
  if (
    best &&
    cost(best) <= chosen.downtimeMs - cfg.minGainMs &&
    best.downtimeMs <= (1 - cfg.throttleMinSaving) * chosen.downtimeMs
  )
    return {
      kind: 'throttle',
      percent: best.percent,
      reason: `${now} → throttle ${best.percent}%: predicted ${best.downtimeMs.toFixed(0)} ms stall after ${best.passes} passes, total ${(best.totalMs / 1000).toFixed(1)} s, ${(best.takenMs / 1000).toFixed(1)} s of vCPU time taken`,
    };
  // No clear gain predicted — but the prediction errs most here: it reads the short windows a
  // throttled guest runs in off calc-dirty-rate's noisiest samples, and a guest's writes need not
  // scale with its CPU share (measured on hot/cold guests at 80%: 0.5–1.4 s against 1.2–1.5 s
  // predicted). One probe at the highest level measures it, for the vCPU time of about three passes
  // (QEMU applies a throttle within two syncs, and the pass that shows it runs throttled too); it pays
  // only if that costs less than the most a throttle could save, the stall down to the budget.
  const B = Math.max(1, state.bandwidthBps);
  const probeTakenMs = (cfg.maxThrottlePct / 100) * 3 * (state.passes.at(-1)!.dirtyAtEndBytes / B) * 1000;
  if (cfg.slowdownWeight * probeTakenMs >= chosen.downtimeMs - state.downtimeBudgetMs) return undefined;
  const predicted = best ? `predicted ${best.downtimeMs.toFixed(0)} ms at ${best.percent}%` : 'no prediction';
  return {
    kind: 'throttle',
    percent: cfg.maxThrottlePct,
    reason: `${now}, a throttle is not predicted to pay (${predicted}) → probe: throttle ${cfg.maxThrottlePct}% and judge the throttled pass`,
  };
}

/** 10, 20, … below the highest, then the highest: QEMU's own throttle steps are 10 points. */
function throttleLevels(maxPct: number): number[] {
  const levels: number[] = [];
  for (let p = 10; p < maxPct; p += 10) levels.push(p);
  return [...levels, maxPct];
}

/** Passes a throttle prediction looks ahead: QEMU converges by itself once the throttle bites. */
const THROTTLED_PASSES = 30;

/**
 * After throttling, the passes no longer show the guest's own working set, so the model is not
 * fitted again: QEMU converges by itself under the budget while the dirty set shrinks. When a pass
 * that ran throttled (QEMU applies the throttle within two syncs) does not shrink it, the throttle
 * is raised once to `maxThrottlePct`; at that level it switches over, as it does with the last
 * fifth of the deadline left.
 */
function whileThrottled(state: ControllerState, cfg: AdaptiveConfig, throttledInPass: number): Action {
  const drained = drainedPasses(state.passes);
  const [before, last] = drained.slice(-2) as [PassRecord | undefined, PassRecord];
  const mib = (b: number) => `${(b / 2 ** 20).toFixed(1)} MiB`;
  const nearDeadline = state.elapsedMs >= 0.8 * state.deadlineMs;
  if (last.pass < throttledInPass + 2 && !nearDeadline)
    return { kind: 'continue', reason: 'adaptive: throttled; waiting for a pass that ran throttled' };
  const shrinking =
    before !== undefined && last.dirtyAtEndBytes < (1 - cfg.refuteEpsilon) * before.dirtyAtEndBytes;
  if (shrinking && !nearDeadline)
    return {
      kind: 'continue',
      reason: `adaptive: throttled ${state.throttlePercent ?? 0}%, the dirty set shrinks (${mib(before.dirtyAtEndBytes)} → ${mib(last.dirtyAtEndBytes)})`,
    };
  // The model assumed a guest that writes in proportion to the CPU it gets; one that catches up
  // (a paced writer, a request queue) or saturates faster than its samples showed is not slowed as
  // predicted. The throttle then gets one raise, to the highest, before giving up.
  const percent = state.throttlePercent ?? 0;
  if (!nearDeadline && percent < cfg.maxThrottlePct)
    return {
      kind: 'throttle',
      percent: cfg.maxThrottlePct,
      reason: `adaptive: throttled ${percent}%, the dirty set did not shrink (${mib(last.dirtyAtEndBytes)}) → throttle ${cfg.maxThrottlePct}%`,
    };
  const why = `throttled, ${nearDeadline ? 'the deadline nears' : `the dirty set stopped shrinking at ${mib(last.dirtyAtEndBytes)}`}`;
  // The throttle was taken over post-copy too: when it did not meet the budget, post-copy is
  // weighed again against what the throttled dirty set now costs to stop and copy.
  const now = predictOptions(state, cfg)[0]!;
  if (state.postcopyPermitted && now.downtimeMs > state.downtimeBudgetMs) {
    const pc = predictPostcopy(state, cfg);
    if (pc.downtimeMs < now.downtimeMs) return toPostcopy(pc, `${why} (stopping: ${fmt(now)})`);
  }
  return switchNow(state, cfg, now, `${why} → switch now`);
}
