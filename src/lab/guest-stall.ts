/**
 * What the guest felt during a migration, from its heartbeat alone — one definition for every
 * policy, pre-copy and post-copy alike (docs: benchmark-protocol.md, "Metrics per run").
 *
 * The guest prints a heartbeat every `periodMs`. Host-side arrival times from both consoles
 * (source and destination) are merged into one timeline. A silence is the time between two
 * consecutive beats; one longer than two periods is a stall, and what it costs the guest is the
 * part beyond one period (the beat it should have printed). The total stall sums these over the
 * migration window, so repeated post-copy page-fault stalls count as much as one stop-and-copy.
 *
 * Pure: no clock, no I/O. All times are host milliseconds (performance.now()).
 */

export interface Beat {
  /** Host time the heartbeat line arrived, ms. */
  at: number;
  /** The workload's cumulative write count at that beat, when it reports one. */
  writes?: number;
  /** The guest's heartbeat counter, when known: a line that repeats an old one is not a beat. */
  seq?: number;
}

export interface Interval {
  from: number;
  to: number;
}

export interface GuestStallInput {
  /** Heartbeats from both consoles, in any order. */
  beats: readonly Beat[];
  /** The guest's heartbeat period, ms (the lab's guest: 50). */
  periodMs: number;
  /** The migration window: from `migrate` to completion plus a short settle. */
  window: Interval;
  /**
   * Host time the lab, not the migration, held the guest paused (the destination kept at -S while
   * its RAM is compared): cut out of the timeline, as if the destination had resumed at once.
   */
  exclude?: readonly Interval[];
  /** When pre-copy ended (the first forcing action or completion); slowdown is measured before it. Default: window end. */
  precopyEnd?: number;
  /** How far before `migrate` the baseline rate is measured, ms (default 2000). */
  baselineMs?: number;
}

export interface GuestStall {
  /** Sum over the window of every silence longer than two periods, less one period each, ms. */
  totalStallMs: number;
  /** The longest single silence (whole, not less a period) that overlaps the window, ms. */
  longestSilenceMs: number;
  /** How many silences counted as stalls. */
  stalls: number;
  /**
   * Progress per second during pre-copy ÷ before the migration (1 = unaffected, 0.5 = half
   * speed); null when either phase has fewer than two beats.
   */
  slowdown: number | null;
  /** What `slowdown` compares: the workload's writes, or (for a guest that writes nothing) heartbeats. */
  slowdownBasis: 'writes' | 'heartbeats' | null;
  /** A beat arrived at or after the window's end; if not, the window's end closed the last silence (a lower bound). */
  resumed: boolean;
}

/** Maps host time onto a timeline with the excluded intervals cut out. */
function timeline(exclude: readonly Interval[]): (t: number) => number {
  const cuts = exclude
    .filter((e) => e.to > e.from)
    .map((e) => ({ ...e }))
    .sort((a, b) => a.from - b.from);
  // Merge overlaps so no time is cut twice.
  const merged: Interval[] = [];
  for (const c of cuts) {
    const last = merged.at(-1);
    if (last && c.from <= last.to) last.to = Math.max(last.to, c.to);
    else merged.push(c);
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

/** Progress per ms between the first and last beat of `beats` (already sorted), or undefined. */
function rate(beats: readonly Beat[], basis: 'writes' | 'heartbeats'): number | undefined {
  if (beats.length < 2) return undefined;
  const first = beats[0]!;
  const last = beats.at(-1)!;
  const dt = last.at - first.at;
  if (!(dt > 0)) return undefined;
  if (basis === 'heartbeats') return (beats.length - 1) / dt;
  if (first.writes === undefined || last.writes === undefined) return undefined;
  return (last.writes - first.writes) / dt;
}

/**
 * Drops lines whose counter is not above every earlier one: a heartbeat replayed from a console
 * buffer after the switch shows nothing about the guest running now.
 */
function fresh(sorted: Beat[]): Beat[] {
  let top = -Infinity;
  return sorted.filter((b) => {
    if (b.seq === undefined) return true;
    if (b.seq <= top) return false;
    top = b.seq;
    return true;
  });
}

export function guestStall(input: GuestStallInput): GuestStall {
  const { periodMs } = input;
  if (!(periodMs > 0)) throw new RangeError(`heartbeat period must be positive, not ${periodMs}`);
  const map = timeline(input.exclude ?? []);
  const from = map(input.window.from);
  const to = map(input.window.to);
  const beats = fresh(
    input.beats
      .filter((b) => Number.isFinite(b.at))
      .map((b) => ({ ...b, at: map(b.at) }))
      .sort((a, b) => a.at - b.at),
  );

  // Silences between consecutive beats. With no beat before the window, its start stands in for
  // one (nothing is known earlier); with none after a silence, the window's end closes it.
  const times = beats.map((b) => b.at);
  if (!(times.length > 0 && times[0]! <= from)) times.unshift(from);
  const resumed = beats.length > 0 && beats.at(-1)!.at >= to;
  if (!resumed) times.push(to);

  let totalStallMs = 0;
  let longestSilenceMs = 0;
  let stalls = 0;
  for (let i = 1; i < times.length; i++) {
    const a = times[i - 1]!;
    const b = times[i]!;
    // A silence belongs to the window if it begins before the window ends and ends after it starts.
    if (a >= to || b <= from) continue;
    const silence = b - a;
    longestSilenceMs = Math.max(longestSilenceMs, silence);
    if (silence <= 2 * periodMs) continue;
    // The stall is [a + period, b]: counted whole once it begins in the window (a silence still
    // open at the window's end is what the guest felt of this migration), clipped at the start.
    const stall = b - Math.max(a + periodMs, from);
    if (stall > 0) {
      totalStallMs += stall;
      stalls++;
    }
  }

  // Slowdown: progress per second during pre-copy ÷ in the baseline before `migrate`.
  const baselineMs = input.baselineMs ?? 2000;
  const precopyEnd = Math.min(map(input.precopyEnd ?? input.window.to), to);
  const before = beats.filter((b) => b.at >= from - baselineMs && b.at <= from);
  const during = beats.filter((b) => b.at >= from && b.at <= precopyEnd);
  let slowdown: number | null = null;
  let slowdownBasis: GuestStall['slowdownBasis'] = null;
  const writesBefore = rate(before, 'writes');
  const basis = writesBefore !== undefined && writesBefore > 0 ? 'writes' : 'heartbeats';
  const r0 = basis === 'writes' ? writesBefore : rate(before, 'heartbeats');
  const r1 = rate(during, basis);
  if (r0 !== undefined && r0 > 0 && r1 !== undefined) {
    slowdown = r1 / r0;
    slowdownBasis = basis;
  }
  return { totalStallMs, longestSilenceMs, stalls, slowdown, slowdownBasis, resumed };
}
