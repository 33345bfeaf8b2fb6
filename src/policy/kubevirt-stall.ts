import { z } from 'zod';
import { flag } from './config.js';
import { CONTINUE, firstAction, hasActed, type Action, type ControllerState, type Policy } from './types.js';

export const KubevirtStallConfigSchema = z
  .object({
    maxDowntimeMs: z.coerce
      .number()
      .positive()
      .max(2_000_000)
      .default(900)
      .describe(
        'maxDowntimeMs: the longest pause that is not a workload disruption; the soft stop-and-copy sets downtime-limit to it, ms.',
      ),
    stallMargin: z.coerce
      .number()
      .int()
      .min(0)
      .max(100)
      .default(4)
      .describe(
        'stallMargin, %: stalled when remaining ≥ (1 − margin) × the outside-window minimum; at a local minimum when remaining ≤ (1 + margin) × the best.',
      ),
    stallProgressTimeoutS: z.coerce
      .number()
      .positive()
      .default(40)
      .describe(
        'stallProgressTimeout, s: records at least this old form the outside-window minimum; also the first relaxation patience.',
      ),
    switchoverTimeoutS: z.coerce
      .number()
      .positive()
      .default(60)
      .describe(
        'switchoverTimeout, s: abort when the migration has not completed this long after a stop-and-copy was triggered.',
      ),
    ewmaAlpha: z.coerce
      .number()
      .min(0)
      .max(1)
      .default(0.4)
      .describe(
        'ewmaAlpha: weight of each new bandwidth sample in the moving average (seeded with the first).',
      ),
    precopyPossibleFactor: z.coerce
      .number()
      .min(1)
      .default(1.5)
      .describe(
        'precopyPossibleFactor: pre-copy only, abort at a local minimum when the implied downtime > maxDowntimeMs × this.',
      ),
    patienceWindowDecayFactor: z.coerce
      .number()
      .min(0)
      .max(1)
      .default(0.5)
      .describe(
        'patienceWindowDecayFactor: the relaxation patience is multiplied by this after each relaxation.',
      ),
    searchLocalMinima: flag
      .default(true)
      .describe(
        'searchLocalMinima: wait for remaining to come back near its best; false switches as soon as stalled.',
      ),
    completionTimeoutFactor: z.coerce
      .number()
      .positive()
      .default(2)
      .describe(
        'completionTimeoutFactor: no switch-over whose implied downtime overruns completion time × this; the extended deadline.',
      ),
    completionTimeoutPerGiB: z.coerce
      .number()
      .positive()
      .default(150)
      .describe(
        'completionTimeoutPerGiB, s per GB (10^9 bytes, rounded up) of RAM: the acceptable completion time.',
      ),
    allowPostCopy: flag
      .default(false)
      .describe('allowPostCopy: with workload disruption allowed, switch to post-copy.'),
    allowWorkloadDisruption: z
      .union([flag, z.literal('auto')])
      .default('auto')
      .describe(
        'allowWorkloadDisruption: stall switch-over at QEMU\'s maximum downtime-limit; "auto" = allowPostCopy, as KubeVirt defaults it.',
      ),
    pollMs: z.coerce
      .number()
      .positive()
      .default(400)
      .describe(
        "virt-launcher's monitor poll period, ms: each poll feeds one bandwidth sample to the average.",
      ),
    scale: z.coerce
      .number()
      .positive()
      .default(1)
      .describe(
        'Multiplies stallProgressTimeout, switchoverTimeout and the completion time (not in KubeVirt: to run its schedule faster).',
      ),
  })
  .strict();
export type KubevirtStallConfig = z.infer<typeof KubevirtStallConfigSchema>;

/** QEMU's (and KubeVirt's `QEMUMaxMigrationDowntimeMS`) maximum downtime-limit. */
const QEMU_MAX_DOWNTIME_MS = 2_000_000;

/** An iteration boundary as virt-launcher records it: job time elapsed and remaining bytes. */
export interface IterationRecord {
  elapsedMs: number;
  remainingBytes: number;
  /** The pass that began at this boundary (libvirt's MemIteration after the sync). */
  iteration: number;
}

/** One `MIGRATION_PASS` boundary per completed pass: remaining right after the sync that ended it. */
export function iterationRecords(state: ControllerState): IterationRecord[] {
  return state.passes.map((p) => ({
    elapsedMs: p.endMs,
    remainingBytes: p.dirtyAtEndBytes,
    iteration: p.pass + 1,
  }));
}

/**
 * The bandwidth EWMA virt-launcher keeps, at each of `times` (ascending): one sample per poll
 * (every `pollMs` from the start), α × sample + (1 − α) × estimate, seeded with the first sample.
 * KubeVirt samples libvirt's `MemBps` (QEMU's `ram.mbps`); here each poll's sample is the average
 * bandwidth of the pass it falls in (the pass under way: the controller's estimate). 0 = no sample yet.
 */
export function ewmaBandwidth(state: ControllerState, cfg: KubevirtStallConfig, times: number[]): number[] {
  const segs = state.passes.map((p) => ({
    startMs: p.startMs,
    endMs: p.endMs,
    bps: p.bandwidthBps > 0 ? p.bandwidthBps : (p.qemuMbps * 1e6) / 8,
  }));
  const lastEnd = state.passes.at(-1)?.endMs ?? 0;
  segs.push({ startMs: lastEnd, endMs: Number.POSITIVE_INFINITY, bps: state.bandwidthBps });
  const out: number[] = [];
  let est = 0;
  let k = 0;
  let tick = cfg.pollMs;
  for (const t of times) {
    for (; tick <= t; tick += cfg.pollMs) {
      while (k + 1 < segs.length && segs[k + 1]!.startMs <= tick) k++;
      const s = segs[k]!;
      if (tick < s.startMs) continue; // still in setup: no sample
      est = est === 0 ? s.bps : cfg.ewmaAlpha * s.bps + (1 - cfg.ewmaAlpha) * est;
    }
    out.push(est);
  }
  return out;
}

/** `estimateDowntimeMs`: remaining ÷ EWMA bandwidth, truncated to whole ms (uint32). */
export function impliedDowntimeMs(remainingBytes: number, ewmaBps: number): number {
  if (ewmaBps <= 0) return 0;
  return Math.min(2 ** 32 - 1, Math.trunc(remainingBytes / (ewmaBps / 1000)));
}

/** The acceptable completion time (completionTimeoutPerGiB × GB of RAM, rounded up), ms. */
export function acceptableCompletionMs(state: ControllerState, cfg: KubevirtStallConfig): number {
  return cfg.completionTimeoutPerGiB * Math.ceil(state.ramBytes / 1e9) * 1000 * cfg.scale;
}

function disruptionAllowed(cfg: KubevirtStallConfig): boolean {
  return cfg.allowWorkloadDisruption === 'auto' ? cfg.allowPostCopy : cfg.allowWorkloadDisruption;
}

const mib = (b: number) => `${(b / 2 ** 20).toFixed(1)} MiB`;

/** `decideAction` at one stalled boundary: an action, or why it waits. */
export function decideStallAction(
  state: ControllerState,
  cfg: KubevirtStallConfig,
  rec: IterationRecord,
  best: number,
  ewmaBps: number,
): { action?: Action; why: string } {
  const margin = cfg.stallMargin / 100;
  const target = Math.trunc(best * (1 + margin));
  if (cfg.searchLocalMinima && rec.remainingBytes > target)
    return {
      why: `remaining ${mib(rec.remainingBytes)} > best ${mib(best)} × ${1 + margin}: not at a local minimum`,
    };
  const est = impliedDowntimeMs(rec.remainingBytes, ewmaBps);
  const budgetMs = acceptableCompletionMs(state, cfg) * cfg.completionTimeoutFactor - rec.elapsedMs;
  if (est > budgetMs)
    return {
      why: `implied downtime ${est} ms exceeds the ${Math.round(budgetMs)} ms left before the completion deadline`,
    };
  const at = cfg.searchLocalMinima
    ? `local minimum ${mib(rec.remainingBytes)} (best ${mib(best)})`
    : 'stalled';
  const tag = `kubevirt-stall: ${at}, implied downtime ${est} ms`;
  const disruption = disruptionAllowed(cfg);
  if (disruption && cfg.allowPostCopy && state.postcopyPermitted)
    return { action: { kind: 'postcopy', reason: `${tag} → post-copy` }, why: 'post-copy' };
  if (disruption)
    return {
      action: {
        kind: 'switchover',
        reason: `${tag} → hard stop-and-copy (downtime-limit ${QEMU_MAX_DOWNTIME_MS} ms)`,
      },
      why: 'hard stop-and-copy',
    };
  if (est <= cfg.maxDowntimeMs * cfg.precopyPossibleFactor) {
    const within =
      est <= cfg.maxDowntimeMs ? `≤ maxDowntimeMs` : `≤ ${cfg.precopyPossibleFactor} × maxDowntimeMs`;
    return {
      action: {
        kind: 'switchover',
        downtimeLimitMs: cfg.maxDowntimeMs,
        reason: `${tag} ${within} → soft stop-and-copy: downtime-limit ${cfg.maxDowntimeMs} ms`,
      },
      why: 'soft stop-and-copy',
    };
  }
  return {
    action: {
      kind: 'abort',
      reason: `${tag} > ${cfg.precopyPossibleFactor} × maxDowntimeMs ${cfg.maxDowntimeMs} ms → abort`,
    },
    why: 'abort',
  };
}

/** What the stall detector knows after replaying the boundaries so far. */
export interface StallReplay {
  /** The smallest remaining among records at least stallProgressTimeout old, if any. */
  outsideWindowMin?: IterationRecord;
  stalled: boolean;
  /** The record at which the stall was detected. */
  stalledAt?: IterationRecord;
  bestRemainingBytes?: number;
  patienceMs?: number;
  relaxationDeadlineMs?: number;
  relaxations: number;
  /** The first boundary at which `decideAction` acted, and its action. */
  decision?: { record: IterationRecord; action: Action };
  /** Why the last boundary did not act. */
  why?: string;
}

/**
 * Replays virt-launcher's stall detector (`processStallDetectionIteration` + `decideAction`) over
 * every iteration boundary so far, from the pass records alone. Boundaries before the first
 * bandwidth sample are skipped as KubeVirt skips them; it stops at the first boundary that acts.
 */
export function replayStallDetector(state: ControllerState, cfg: KubevirtStallConfig): StallReplay {
  const recs = iterationRecords(state);
  const ewma = ewmaBandwidth(
    state,
    cfg,
    recs.map((r) => r.elapsedMs),
  );
  const windowMs = cfg.stallProgressTimeoutS * 1000 * cfg.scale;
  const margin = cfg.stallMargin / 100;
  const r: StallReplay = { stalled: false, relaxations: 0 };
  const candidates: IterationRecord[] = [];
  const history: number[] = []; // post-stall remaining levels, a min-heap in KubeVirt (kept sorted here)
  for (let i = 0; i < recs.length; i++) {
    const rec = recs[i]!;
    const bw = ewma[i]!;
    if (bw === 0) continue;
    // updateCandidates: age out records at least `windowMs` old into the outside-window minimum.
    while (candidates.length > 0 && rec.elapsedMs - candidates[0]!.elapsedMs >= windowMs) {
      const old = candidates.shift()!;
      if (!r.outsideWindowMin || old.remainingBytes < r.outsideWindowMin.remainingBytes)
        r.outsideWindowMin = old;
    }
    const skip =
      (r.outsideWindowMin && rec.remainingBytes > r.outsideWindowMin.remainingBytes) ||
      (candidates.length > 0 && rec.remainingBytes >= candidates.at(-1)!.remainingBytes);
    if (!skip) candidates.push(rec);

    if (r.stalled) {
      // relaxBestRemainingBytes
      const at = history.findIndex((v) => v > rec.remainingBytes);
      history.splice(at < 0 ? history.length : at, 0, rec.remainingBytes);
      if (rec.elapsedMs >= r.relaxationDeadlineMs!) {
        r.bestRemainingBytes = history.shift()!;
        r.patienceMs = Math.trunc(r.patienceMs! * cfg.patienceWindowDecayFactor);
        r.relaxationDeadlineMs = rec.elapsedMs + r.patienceMs;
        r.relaxations++;
      }
    } else {
      const min = r.outsideWindowMin;
      if (!min) {
        r.why = 'no record outside the stall window yet';
        continue;
      }
      const threshold = Math.trunc(min.remainingBytes * (1 - margin));
      if (rec.remainingBytes < threshold) {
        r.why = `remaining ${mib(rec.remainingBytes)} < ${1 - margin} × ${mib(min.remainingBytes)} seen ${((rec.elapsedMs - min.elapsedMs) / 1000).toFixed(1)} s earlier: progressing`;
        continue;
      }
      r.stalled = true;
      r.stalledAt = rec;
      r.bestRemainingBytes = Math.min(min.remainingBytes, ...candidates.map((c) => c.remainingBytes));
      r.patienceMs = windowMs;
      r.relaxationDeadlineMs = rec.elapsedMs + windowMs;
    }
    const d = decideStallAction(state, cfg, rec, r.bestRemainingBytes!, bw);
    if (d.action) {
      r.decision = { record: rec, action: d.action };
      return r;
    }
    r.why = `stalled: ${d.why}`;
  }
  return r;
}

/** `processCompletionTimeouts`, on every poll and boundary; undefined when it does not act. */
export function completionTimeoutAction(
  state: ControllerState,
  cfg: KubevirtStallConfig,
): Action | undefined {
  const acceptableMs = acceptableCompletionMs(state, cfg);
  const forcing = firstAction(state, 'switchover', 'postcopy', 'pause');
  const deadlineMs = forcing ? forcing.atMs + cfg.switchoverTimeoutS * 1000 * cfg.scale : acceptableMs;
  if (state.elapsedMs <= deadlineMs) return undefined;
  const secs = (ms: number) => `${(ms / 1000).toFixed(1)} s`;
  const [bw] = ewmaBandwidth(state, cfg, [state.elapsedMs]);
  if (!bw)
    return { kind: 'abort', reason: 'kubevirt-stall: past the deadline with no bandwidth sample → abort' };
  if (!forcing) {
    const last = state.passes.at(-1);
    const est = last ? impliedDowntimeMs(last.dirtyAtEndBytes, bw) : 0;
    const completable = est <= acceptableMs * cfg.completionTimeoutFactor - state.elapsedMs;
    const why = `kubevirt-stall: past the acceptable completion time ${secs(acceptableMs)}`;
    if (completable && cfg.allowPostCopy && state.postcopyPermitted)
      return { kind: 'postcopy', reason: `${why} → post-copy` };
    if (completable && disruptionAllowed(cfg))
      return {
        kind: 'switchover',
        reason: `${why} → downtime-limit ${QEMU_MAX_DOWNTIME_MS} ms (switch-over deadline in ${cfg.switchoverTimeoutS * cfg.scale} s)`,
      };
    return {
      kind: 'abort',
      reason: `${why}${completable ? '' : ` and the implied downtime ${est} ms overruns ${cfg.completionTimeoutFactor} × it`} → abort`,
    };
  }
  return {
    kind: 'abort',
    reason: `kubevirt-stall: not completed ${secs(cfg.switchoverTimeoutS * 1000 * cfg.scale)} after the switch-over began → abort`,
  };
}

/**
 * KubeVirt 1.9's migration stall detector (alpha, feature gate `MigrationStallDetection`): VEP 248
 * (kubevirt/enhancements `veps/sig-compute/248-migration-convergence/vep.md` at 1cc33e56ec11, with
 * `migration-hyperparameters.md`), code PR kubevirt/kubevirt#17544 (merged as a01957ddeeff; cited
 * at d923fdb815cd, where the knobs became options): `pkg/virt-launcher/virtwrap/stall-detector.go`
 * and `live-migration-source.go` (`handleStallDetection` 705–760, `processCompletionTimeouts`
 * 580–632, `triggerConvergenceAction` 634–680); defaults `pkg/virt-config/virt-config.go` 46–56. At
 * each `MIGRATION_PASS` boundary (remaining right after the sync, job time elapsed): records at
 * least `stallProgressTimeout` (40 s) old age out into an outside-window minimum
 * (`updateCandidates` 96–135); stalled when remaining ≥ (1 − 4%) × that minimum
 * (`checkStallCondition` 137–148). On the stall, best = the lowest remaining seen so far
 * (`findBestRemainingBytes` 150–165), patience = 40 s; on each later boundary its remaining joins a
 * history and, once the patience ran out, best becomes the lowest value in that history (popped;
 * the current one included) and the patience is multiplied by 0.5 (`relaxBestRemainingBytes`
 * 174–193). At the stalling boundary and after it, `decideAction` (259–314): not at a local minimum
 * (remaining > best × 1.04, 221–227) → wait; implied downtime (remaining ÷ EWMA bandwidth, α 0.4
 * over 400 ms polls of libvirt's MemBps, 80–90 and 205–219) over what is left of 2 × the completion
 * time → wait; allowWorkloadDisruption and allowPostCopy → post-copy; allowWorkloadDisruption →
 * downtime-limit QEMU's maximum ("hard"); else implied ≤ 1.5 × maxDowntimeMs (900) → downtime-limit
 * maxDowntimeMs ("soft"), above → abort. After any switch-over the detector stops and the migration
 * must complete within `switchoverTimeout` (60 s) or is aborted; before one, past the completion
 * time (150 s per GB) → post-copy if allowPostCopy, hard switch-over if disruption is allowed (when
 * the implied downtime fits 2 × that time), else abort. The starting downtime-limit is
 * min(maxDowntimeMs, 300 ms = QEMU's default; here the budget, which defaults to it). Where
 * KubeVirt differs from the survey in policies.md: post-copy needs both allowPostCopy and
 * allowWorkloadDisruption (the latter defaults to the former); with disruption allowed the switch
 * raises downtime-limit to QEMU's maximum, not maxDowntimeMs; every action (the abort too) waits
 * for a local minimum and for the completion-budget check; the implied downtime is truncated to
 * whole ms and aborts only when strictly above 1.5 × (the hyper-parameter doc says ≥); the 60 s
 * deadline runs from a soft or hard switch (post-copy is never aborted) — before any switch the
 * completion time acts instead; the legacy progressTimeout is off on this path; the EWMA is fed by
 * the 400 ms polls only. Stateless: each pass end replays every boundary (`replayStallDetector`);
 * the EWMA is rebuilt with one sample per 400 ms poll, each the average bandwidth of the pass it
 * falls in (KubeVirt samples QEMU's instantaneous rate); times compare in ms (KubeVirt truncates
 * some to whole seconds). **Post-copy loses the guest if the destination or the link fails before
 * it ends**; it is used only with --allow-postcopy.
 */
export const kubevirtStall: Policy<KubevirtStallConfig> = {
  name: 'kubevirt-stall',
  summary:
    'KubeVirt 1.9 stall detector (VEP 248): switch at a local minimum of remaining once it stops falling for 40 s; 900 ms soft limit, abort above 1.5×',
  configSchema: KubevirtStallConfigSchema,
  setup: (cfg, ctx) => ({
    downtimeLimitMs: Math.min(cfg.maxDowntimeMs, ctx.downtimeBudgetMs),
    postcopy: cfg.allowPostCopy && ctx.postcopyPermitted,
    autoConverge: false,
  }),
  decide(state, cfg): Action {
    if (state.status.startsWith('postcopy') || hasActed(state, 'postcopy', 'abort')) return CONTINUE;
    let note: string | undefined;
    if (state.atPassEnd && !firstAction(state, 'switchover', 'pause')) {
      const r = replayStallDetector(state, cfg);
      if (r.decision) return r.decision.action;
      note = r.why;
    }
    const timeout = completionTimeoutAction(state, cfg);
    if (timeout) return timeout;
    return note ? { kind: 'continue', reason: `kubevirt-stall: ${note}` } : CONTINUE;
  },
};
