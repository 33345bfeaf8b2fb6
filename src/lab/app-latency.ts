/**
 * A real application's latency during a migration, from the requests it streams over the serial
 * console (guest/appload.c: `AL <endUs> <latUs>` per request, `AT <nowUs>` every 25 ms).
 *
 * The guest measures each request with its own clock, and the guest's clock stops while the VM is
 * paused (QEMU's virtual clock does not run while the VM is stopped, and after the switch the
 * destination resumes from the migrated value): a request that spans the stop-and-copy took that
 * much longer than the guest says. So every request is placed on the host's clock: each line
 * gives an offset (host arrival − guest time) that is at least the true offset when the guest
 * printed it (lines only arrive later than printed), and the true offset only grows (by each
 * pause), so the least offset of any line printed at or after a guest instant bounds it from
 * above, and is exact wherever a line arrived promptly. A request's host latency is its guest
 * latency plus how much the offset grew between its start and its end: the pause it spanned.
 *
 * Pure but for measureAppLatency(), which waits for the lines to arrive. Times are host ms
 * (performance.now()) unless named Us (guest µs).
 */
import { setTimeout as sleep } from 'node:timers/promises';
import type { AppSample, AppStream } from './serial.js';

export interface Interval {
  from: number;
  to: number;
}

export interface LatencyStats {
  /** Requests counted. */
  requests: number;
  /** Completed requests per second. */
  perSec: number | null;
  p50Ms: number | null;
  p99Ms: number | null;
  maxMs: number | null;
}

export interface AppLatency extends LatencyStats {
  /** The same requests by the guest's own clock (which stops while the VM is paused). */
  guestClock: { p99Ms: number | null; maxMs: number | null };
  /** The longest pause one request spanned (host latency − guest latency), ms. */
  longestPauseInRequestMs: number;
  /** Before `migrate` (baselineMs), for comparison. */
  baseline: LatencyStats;
  /** Completed requests per second during pre-copy ÷ in the baseline (1 = unaffected). */
  throughputRatio: number | null;
  /** Requests still running at the window's end could not be counted: true if the stream went on past it. */
  complete: boolean;
}

export interface AppLatencyInput {
  /** Both consoles' streams (source and destination), in any order. */
  streams: readonly AppStream[];
  /** The migration window: from `migrate` to completion plus a settle. */
  window: Interval;
  /** Host time the lab held the guest paused (destination at -S while verified): cut out. */
  exclude?: readonly Interval[];
  /** When pre-copy ended: throughput is compared up to it. Default: the window's end. */
  precopyEnd?: number;
  /** How far before `migrate` the baseline runs, ms (default 5000). */
  baselineMs?: number;
}

/** Maps host time onto a timeline with the excluded intervals cut out (as guestStall does). */
function timeline(exclude: readonly Interval[]): (t: number) => number {
  const merged: Interval[] = [];
  for (const c of exclude.filter((e) => e.to > e.from).sort((a, b) => a.from - b.from)) {
    const last = merged.at(-1);
    if (last && c.from <= last.to) last.to = Math.max(last.to, c.to);
    else merged.push({ ...c });
  }
  return (t) => {
    let shift = 0;
    for (const c of merged) {
      if (t <= c.from) break;
      shift += Math.min(t, c.to) - c.from;
    }
    return t - shift;
  };
}

/** Nearest-rank quantile of an ascending array. */
function quantile(sorted: readonly number[], q: number): number | null {
  if (sorted.length === 0) return null;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))]!;
}

function stats(latMs: number[], spanMs: number): LatencyStats {
  const sorted = [...latMs].sort((a, b) => a - b);
  return {
    requests: sorted.length,
    perSec: spanMs > 0 ? (sorted.length * 1000) / spanMs : null,
    p50Ms: quantile(sorted, 0.5),
    p99Ms: quantile(sorted, 0.99),
    maxMs: sorted.at(-1) ?? null,
  };
}

/** A request placed on the host's clock. */
export interface HostRequest {
  startAt: number;
  endAt: number;
  latMs: number;
  guestLatMs: number;
}

/**
 * Every request of the streams on the host's (excluded-cut) timeline. A line repeated on both
 * consoles (printed before the switch, sent after) counts once.
 */
export function hostRequests(
  streams: readonly AppStream[],
  exclude: readonly Interval[] = [],
): HostRequest[] {
  const map = timeline(exclude);
  const seen = new Set<string>();
  const samples: AppSample[] = [];
  for (const s of streams)
    for (const x of s.samples) {
      const key = `${x.endUs}/${x.latUs}`;
      if (!seen.has(key)) {
        seen.add(key);
        samples.push(x);
      }
    }
  // Offsets (host ms − guest ms) at guest instants, then their suffix minimum.
  const points = [
    ...streams.flatMap((s) => s.clock.map((c) => ({ g: c.guestUs / 1000, o: map(c.at) - c.guestUs / 1000 }))),
    ...samples.map((x) => ({ g: x.endUs / 1000, o: map(x.at) - x.endUs / 1000 })),
  ].sort((a, b) => a.g - b.g);
  const suffixMin = new Float64Array(points.length);
  for (let i = points.length - 1, m = Infinity; i >= 0; i--) suffixMin[i] = m = Math.min(m, points[i]!.o);
  const offset = (g: number): number => {
    let lo = 0;
    let hi = points.length; // first index with points[i].g >= g
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (points[mid]!.g < g) lo = mid + 1;
      else hi = mid;
    }
    return lo < points.length ? suffixMin[lo]! : suffixMin[points.length - 1]!;
  };
  return samples
    .map((x) => {
      const end = x.endUs / 1000;
      const start = end - x.latUs / 1000;
      const endAt = end + offset(end);
      const startAt = start + offset(start);
      return { startAt, endAt, latMs: endAt - startAt, guestLatMs: x.latUs / 1000 };
    })
    .sort((a, b) => a.endAt - b.endAt);
}

/**
 * The application's latency over the migration window: every request that overlapped it (ended
 * after it began, began before it ended), by the host's clock.
 */
export function appLatency(input: AppLatencyInput): AppLatency | undefined {
  if (!input.streams.some((s) => s.samples.length > 0)) return undefined;
  const exclude = input.exclude ?? [];
  const map = timeline(exclude);
  const from = map(input.window.from);
  const to = map(input.window.to);
  const reqs = hostRequests(input.streams, exclude);
  const inWindow = reqs.filter((r) => r.endAt >= from && r.startAt <= to);
  const baselineMs = input.baselineMs ?? 5000;
  const before = reqs.filter((r) => r.endAt >= from - baselineMs && r.endAt < from);
  const firstBefore = before[0]?.endAt;
  const baseline = stats(
    before.map((r) => r.latMs),
    firstBefore === undefined ? 0 : from - Math.max(from - baselineMs, firstBefore),
  );
  const precopyEnd = Math.min(map(input.precopyEnd ?? input.window.to), to);
  const duringPrecopy = reqs.filter((r) => r.endAt >= from && r.endAt <= precopyEnd).length;
  const precopyPerSec = precopyEnd > from ? (duringPrecopy * 1000) / (precopyEnd - from) : null;
  const guestSorted = inWindow.map((r) => r.guestLatMs).sort((a, b) => a - b);
  return {
    ...stats(
      inWindow.map((r) => r.latMs),
      to - from,
    ),
    guestClock: { p99Ms: quantile(guestSorted, 0.99), maxMs: guestSorted.at(-1) ?? null },
    longestPauseInRequestMs: inWindow.reduce((m, r) => Math.max(m, r.latMs - r.guestLatMs), 0),
    baseline,
    throughputRatio:
      precopyPerSec !== null && baseline.perSec !== null && baseline.perSec > 0
        ? precopyPerSec / baseline.perSec
        : null,
    complete: reqs.some((r) => r.endAt > to),
  };
}

/**
 * Waits (up to `waitMs`) until a request that ended after the window's end has arrived — a
 * logging application (pgbench) writes its log in blocks, so its lines come late — then measures.
 */
export async function measureAppLatency(
  input: AppLatencyInput & { waitMs?: number },
): Promise<AppLatency | undefined> {
  const deadline = performance.now() + (input.waitMs ?? 5000);
  const map = timeline(input.exclude ?? []);
  const to = map(input.window.to);
  while (performance.now() < deadline) {
    const last = hostRequests(input.streams, input.exclude).at(-1);
    if (last && last.endAt > to) break;
    await sleep(100);
  }
  return appLatency(input);
}
