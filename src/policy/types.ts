import { z } from 'zod';

/** One pass: the interval during which QEMU's dirty-sync-count has one value. Pass 1 is the bulk copy. */
export const PassRecordSchema = z.object({
  pass: z.number().int().positive(),
  /** ms since `migrate` was issued. */
  startMs: z.number(),
  endMs: z.number(),
  /** Bytes QEMU sent during the pass (`ram.transferred` delta). */
  bytesSent: z.number().nonnegative(),
  /** Full pages and zero pages sent (`ram.normal`, `ram.duplicate` deltas). */
  normalPages: z.number().nonnegative(),
  zeroPages: z.number().nonnegative(),
  /** `ram.remaining` right after the sync that began the pass: what the pass had to send. */
  remainingAtStartBytes: z.number().nonnegative(),
  /** `ram.remaining` right after the sync that ended it: what the guest re-dirtied meanwhile. */
  dirtyAtEndBytes: z.number().nonnegative(),
  /** bytesSent ÷ pass wall time. */
  bandwidthBps: z.number().nonnegative(),
  /** QEMU's own `ram.mbps` at the end of the pass. */
  qemuMbps: z.number().nonnegative(),
  /** QEMU's `ram.dirty-pages-rate` (pages/s; recomputed only at syncs ≥1 s apart). */
  dirtyPagesRate: z.number().nonnegative(),
  downtimeLimitMs: z.number().nonnegative(),
});
export type PassRecord = z.infer<typeof PassRecordSchema>;

/** What a policy expects of its action (adaptive): compared with what happened, after the run. */
const PredictionSchema = z.object({ downtimeMs: z.number(), totalMs: z.number(), bytes: z.number() });

export const ActionSchema = z.discriminatedUnion('kind', [
  z.object({ kind: z.literal('continue'), reason: z.string() }),
  z.object({
    kind: z.literal('setDowntimeLimit'),
    downtimeLimitMs: z.number().positive(),
    reason: z.string(),
  }),
  /** Force stop-and-copy: raise downtime-limit (to `downtimeLimitMs`, else to QEMU's maximum). */
  z.object({
    kind: z.literal('switchover'),
    downtimeLimitMs: z.number().positive().optional(),
    reason: z.string(),
    prediction: PredictionSchema.optional(),
  }),
  z.object({ kind: z.literal('postcopy'), reason: z.string(), prediction: PredictionSchema.optional() }),
  z.object({ kind: z.literal('pause'), reason: z.string() }),
  z.object({ kind: z.literal('abort'), reason: z.string() }),
  /**
   * Set the vCPU throttle (% of each vCPU's time taken away) through QEMU's auto-converge
   * parameters; it applies at QEMU's next throttle check (a dirty-bitmap sync). Needs the policy's
   * setup to turn `autoConverge` on.
   */
  z.object({ kind: z.literal('throttle'), percent: z.number().min(0).max(99), reason: z.string() }),
]);
export type Action = z.infer<typeof ActionSchema>;
export type ActionKind = Action['kind'];

/** What a policy sees: the migration so far. Plain data, so the simulator can build it too. */
export interface ControllerState {
  /** ms since `migrate`. */
  elapsedMs: number;
  /** QEMU's migration status. */
  status: string;
  /** Completed passes, oldest first. */
  passes: PassRecord[];
  /** The pass under way (dirty-sync-count). */
  currentPass: number;
  /** True on the call right after a pass ended; false on ordinary polls. */
  atPassEnd: boolean;
  ramBytes: number;
  remainingBytes: number;
  transferredBytes: number;
  /** Best current bandwidth estimate, bytes/s. */
  bandwidthBps: number;
  downtimeBudgetMs: number;
  deadlineMs: number;
  downtimeLimitMs: number;
  postcopyPermitted: boolean;
  /** Lowest `remaining` seen so far and when it was first reached (KubeVirt's progress watermark). */
  progressWatermark: { remainingBytes: number; atMs: number };
  /**
   * Which memory regions each completed pass saw dirtied, when a region source is on: `tap` (exact,
   * what each pass sent), `sampling` (host-side hashes of sampled pages) or `model` (simulator). Region i covers guest
   * RAM [i × regionBytes, (i+1) × regionBytes).
   */
  regions?: RegionHistory;
  /**
   * Points of the guest's working-set curve W(τ) measured by QEMU's `calc-dirty-rate`
   * (page-sampling over τ seconds → bytes dirtied within τ), oldest first: over time they also
   * show whether the guest's dirty rate changes (bursts and quiet phases).
   */
  workingSetSamples?: { seconds: number; bytes: number; atMs: number }[];
  /** The vCPU throttle the controller last set, % (0 when it never did). */
  throttlePercent?: number;
  /** Actions already applied, oldest first. */
  actions: { kind: ActionKind; atMs: number; pass: number }[];
}

export interface RegionHistory {
  /** `model`: the simulator's page classes laid out in RAM. */
  source: 'tap' | 'sampling' | 'model';
  regionBytes: number;
  regionCount: number;
  /** One entry per completed pass, same order as `passes`: indices of the regions dirtied. */
  perPass: number[][];
}

/** What a policy asks for before `migrate`: the starting downtime-limit and capabilities. */
export interface PolicySetup {
  /** The policy wants region-level dirty sets (tap or sampling) when they can be had. */
  wantsRegions?: boolean;
  /** The policy wants working-set samples from `calc-dirty-rate` (windows in ms). */
  workingSetWindowsMs?: number[];
  downtimeLimitMs: number;
  /** Set `postcopy-ram` on both sides before `migrate` so the policy may switch to post-copy. */
  postcopy: boolean;
  autoConverge: boolean;
  /** Extra `migrate-set-parameters` values (e.g. the auto-converge throttle steps). */
  parameters?: Record<string, number>;
  /**
   * Turn QEMU's `xbzrle` capability on before `migrate`, with `xbzrle-cache-size` = `cacheRamShare`
   * × the guest's RAM in bytes, rounded up to a power of two when `roundUpToPowerOf2` (Proxmox: 10%
   * of RAM, rounded up). The driver sizes the cache (the setup does not know the RAM size):
   * `xbzrleCacheBytes` in `proxmox.ts` computes it.
   */
  xbzrle?: { cacheRamShare: number; roundUpToPowerOf2: boolean };
}

export interface Policy<C = unknown> {
  name: string;
  /** One paragraph: what it does and where it comes from. */
  summary: string;
  configSchema: z.ZodType<C>;
  setup(cfg: C, ctx: { downtimeBudgetMs: number; postcopyPermitted: boolean }): PolicySetup;
  /** Pure and synchronous: no I/O, no clock. Called at every pass end and every poll. */
  decide(state: ControllerState, cfg: C): Action;
}

export const CONTINUE: Action = { kind: 'continue', reason: 'keep iterating' };

/** QEMU's upper bound for downtime-limit, in ms. */
export const MAX_DOWNTIME_LIMIT_MS = 2_000_000;

/**
 * Passes that measure the guest's working set. QEMU ends a pass when its estimate of what is left
 * drops under bandwidth × downtime-limit, then syncs again at once to check; when the exact count
 * is still too high, that check shows up as a "pass" of a few milliseconds whose dirty count is
 * just what was not sent yet. Those are left out; pass 1 (the bulk copy) always counts.
 */
export function drainedPasses(passes: PassRecord[]): PassRecord[] {
  return passes.filter((p, i) => i === 0 || p.endMs - p.startMs >= 50);
}

/** The pass that just ended was one of QEMU's millisecond re-syncs, not a pass worth judging. */
export function endedOnResync(state: ControllerState): boolean {
  return drainedPasses(state.passes).at(-1) !== state.passes.at(-1);
}

/** The time of the first action of one of these kinds, if any. */
export function firstAction(state: ControllerState, ...kinds: ActionKind[]) {
  return state.actions.find((a) => kinds.includes(a.kind));
}

export function hasActed(state: ControllerState, ...kinds: ActionKind[]): boolean {
  return state.actions.some((a) => kinds.includes(a.kind));
}
