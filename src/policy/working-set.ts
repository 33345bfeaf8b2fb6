import { drainedPasses, type ControllerState, type PassRecord } from './types.js';

/**
 * The guest's working-set curve W(τ): bytes dirtied within a window of τ seconds, fitted through
 * (0, 0) and each pass's (duration, dirty at its end) — made monotone, linear between points and
 * flat beyond the longest window (the concave, saturating shape working sets have).
 */
export function workingSetCurve(points: { seconds: number; bytes: number }[]): (seconds: number) => number {
  const sorted = points.filter((p) => p.seconds > 0).sort((a, b) => a.seconds - b.seconds);
  const xs = [0];
  const ys = [0];
  for (const p of sorted) {
    xs.push(p.seconds);
    ys.push(Math.max(ys.at(-1)!, p.bytes));
  }
  return (t: number) => {
    if (t <= 0) return 0;
    for (let k = 1; k < xs.length; k++) {
      if (t <= xs[k]!) return ys[k - 1]! + ((ys[k]! - ys[k - 1]!) * (t - xs[k - 1]!)) / (xs[k]! - xs[k - 1]!);
    }
    return ys.at(-1)!;
  };
}

/**
 * One point of the working-set curve from a pass: what the guest freshly dirtied during it. A pass
 * that ended under QEMU's threshold left part of its bitmap unsent, and that leftover is in the
 * dirty count at its end too; it is taken out (in pages: zero pages cost no bytes on the wire).
 */
export function workingSetPoint(p: PassRecord): { seconds: number; bytes: number } {
  const unsent = Math.max(0, p.remainingAtStartBytes - (p.normalPages + p.zeroPages) * 4096);
  return { seconds: (p.endMs - p.startMs) / 1000, bytes: Math.max(0, p.dirtyAtEndBytes - unsent) };
}

/**
 * The working-set curve of the migration so far: passes give points at their own durations, and
 * calc-dirty-rate's short windows anchor the small ones, where a line through the origin would badly
 * underestimate a guest that saturates its working set fast.
 */
export function workingSetOf(state: ControllerState): (seconds: number) => number {
  return workingSetCurve([...drainedPasses(state.passes).map(workingSetPoint), ...latestSamples(state)]);
}

/** The newest calc-dirty-rate sample of each window length. */
export function latestSamples(state: ControllerState): { seconds: number; bytes: number }[] {
  const byWindow = new Map<number, { seconds: number; bytes: number }>();
  for (const s of state.workingSetSamples ?? []) byWindow.set(s.seconds, s);
  return [...byWindow.values()];
}

/**
 * Whether the guest alternates between busy and quiet phases: within the samples of one window
 * length taken in the last `spanMs`, the slowest dirty rate is under `quietShare` of the fastest.
 * Windows are compared only with their own length: a guest that saturates its working set shows a
 * lower rate over a longer window without ever being quiet (measured: a uniform writer over
 * 200 MiB read 1.7 GiB/s over 125 ms and ~340 MiB/s over 500 ms, and was taken for a bursty guest).
 * Returns the busiest rate and when the first quiet sample of the whole migration was taken.
 */
export function quietPhases(
  state: ControllerState,
  quietShare: number,
  spanMs = 10_000,
): { busyBps: number; firstQuietAtMs: number } | undefined {
  const all = state.workingSetSamples ?? [];
  if (all.filter((s) => s.atMs >= state.elapsedMs - spanMs).length < 3) return undefined;
  const rate = (s: { seconds: number; bytes: number }) => s.bytes / s.seconds;
  let found: { busyBps: number; firstQuietAtMs: number } | undefined;
  for (const seconds of new Set(all.map((s) => s.seconds))) {
    const same = all.filter((s) => s.seconds === seconds);
    const recent = same.filter((s) => s.atMs >= state.elapsedMs - spanMs);
    if (recent.length < 2) continue;
    const busyBps = Math.max(...recent.map(rate));
    const isQuiet = (s: { seconds: number; bytes: number }) => rate(s) <= quietShare * busyBps;
    if (busyBps <= 0 || !recent.some(isQuiet) || recent.every(isQuiet)) continue;
    const firstQuietAtMs = same.find(isQuiet)!.atMs;
    if (!found || firstQuietAtMs < found.firstQuietAtMs) found = { busyBps, firstQuietAtMs };
  }
  return found;
}
