import type { ControllerState } from './types.js';

/**
 * Auto-converge parameters for a throttle the controller steers itself: QEMU throttles by 1% (its
 * smallest) until the controller asks for more, and may act at every rate period (≥ 1 s of syncs).
 */
export const STEERED_THROTTLE_PARAMETERS: Readonly<Record<string, number>> = {
  'cpu-throttle-initial': 1,
  'cpu-throttle-increment': 1,
  'max-cpu-throttle': 1,
  'throttle-trigger-threshold': 1,
};

/**
 * Asking QEMU for a throttle of p%: it has no "set the throttle now", so initial = increment =
 * max = p makes auto-converge's next step land on p, from any throttle (mig_throttle_guest_down).
 */
export function steeredThrottleParameters(percent: number): Record<string, number> {
  const p = Math.max(1, Math.round(percent));
  return { 'cpu-throttle-initial': p, 'cpu-throttle-increment': p, 'max-cpu-throttle': p };
}

/**
 * How long QEMU's throttle holds a vCPU off per slice, ms: it runs a 10 ms timeslice, then sleeps
 * p/(1−p) of it (system/cpu-throttle.c, CPU_THROTTLE_TIMESLICE_NS): 40 ms at 80%, 90 ms at 90%,
 * ~1 s at 99%. Past a few slices each sleep is itself a pause the guest's applications see.
 */
export function throttleSleepMs(percent: number): number {
  const p = Math.min(99, Math.max(0, percent)) / 100;
  return (p / (1 - p)) * 10;
}

export interface ThrottleOption {
  percent: number;
  /** Passes (from now) until QEMU converges by itself or the throttled dirty set stops shrinking. */
  passes: number;
  downtimeMs: number;
  totalMs: number;
  bytes: number;
  /** vCPU time the throttle takes from the guest, ms (share taken × wall time throttled). */
  takenMs: number;
}

/**
 * Predicts "throttle the vCPUs to `percent` now, then let QEMU converge": a throttled guest runs
 * (1 − p) of the time, so within a pass of τ seconds it dirties W((1 − p)·τ) — the unthrottled
 * working-set curve `W` at its own running time. QEMU applies a new throttle at a later dirty sync
 * (every second rate period that finds the guest dirtying faster than the threshold:
 * migration_trigger_throttle), so the pass under way runs unthrottled; QEMU may take one more,
 * which this optimistic prediction leaves out (the controller judges only passes that ran throttled). It iterates until the dirty set fits the budget (QEMU
 * switches by itself, mid-pass at the dip) or stops shrinking by `epsilon` (the throttled
 * working set: stop-and-copy it), within `maxPasses` and the deadline.
 */
export function predictThrottled(
  state: ControllerState,
  W: (seconds: number) => number,
  percent: number,
  opts: { switchCostMs: number; epsilon: number; maxPasses: number },
): ThrottleOption | undefined {
  const B = Math.max(1, state.bandwidthBps);
  const fits = B * (state.downtimeBudgetMs / 1000);
  const run = 1 - percent / 100;
  let dirty = state.passes.at(-1)!.dirtyAtEndBytes;
  let elapsedMs = state.elapsedMs;
  let bytes = state.transferredBytes;
  let takenMs = 0;
  let share = 1; // the pass under way: not throttled yet
  let passes = 0;
  while (dirty > fits && passes < opts.maxPasses) {
    const passS = dirty / B;
    const next = W(share * passS);
    elapsedMs += passS * 1000;
    bytes += dirty;
    takenMs += (1 - share) * passS * 1000;
    passes++;
    share = run;
    // Once throttled, a pass that no longer shrinks the dirty set marks the fixed point.
    const stalled = passes > 1 && next >= (1 - opts.epsilon) * dirty;
    dirty = next;
    if (stalled) break;
  }
  const downtimeMs = (dirty / B) * 1000 + opts.switchCostMs;
  if (elapsedMs + downtimeMs > state.deadlineMs) return undefined;
  return { percent, passes, downtimeMs, totalMs: elapsedMs + downtimeMs, bytes: bytes + dirty, takenMs };
}
