import type { WorkloadSpec } from '../util/specs.js';

const PAGE = 4096;

/**
 * A class of guest pages written uniformly at random (or swept) at a rate: the simulator's view of
 * a workload. Random writes over N pages at r pages/s dirty N(1 − e^(−rτ/N)) distinct pages in τ s.
 */
export interface PageClass {
  name: string;
  pages: number;
  /** Writes per second (before any auto-converge throttling). */
  rate: number;
  /** Pages of the class that hold data when the migration starts (default: all of them). */
  initialPages?: number;
  /**
   * A paced writer (rate, sweep) runs at `rate` while the CPU it gets allows: under a vCPU throttle
   * it catches up, writing min(rate, this × (1 − throttle)). Unset: it writes as fast as it runs,
   * so a throttle slows it in proportion. Measured: sweep:256:150 under an 80% throttle kept
   * dirtying its whole 256 MiB every 2 s pass.
   */
  cpuBoundRate?: number;
  /** Sequential (sweep) rather than random. */
  sequential?: boolean;
  /** phase: the window moves every periodS; pages = the window, `of` = the region it moves through. */
  periodS?: number;
  regionPages?: number;
  /** burst: writes only during the first onS of every onS + offS. */
  duty?: { onS: number; offS: number };
  /** A recorded trace: the write rate's share over time (step function, replayed in a loop). */
  schedule?: { atS: number; share: number }[];
  /**
   * The class's own clock when the migration starts, seconds (default 0): a burst or phase
   * workload is this far into its cycle. The lab starts migrating BASELINE_MS after the guest's
   * first heartbeat, so its bursty guest (1 s on, 2.5 s off) is then just into its first quiet phase.
   */
  startS?: number;
}

/** The class's clock at migration time `t` (seconds): where a burst or phase is in its cycle. */
export function classClock(c: PageClass, t: number): number {
  return t + (c.startS ?? 0);
}

/** The same classes, `startS` seconds into their cycles when the migration starts. */
export function startedAt(classes: PageClass[], startS: number): PageClass[] {
  return classes.map((c) => (c.duty || c.periodS ? { ...c, startS } : c));
}

/** The host and guest facts a simulated workload needs; defaults measured on this project's TCG lab. */
export interface GuestFacts {
  /** Page writes per second of an unpaced single-vCPU writer (TCG here: ~6.8 M/s; KVM is faster). */
  maxWriteRate: number;
  /** Non-zero pages the guest kernel and initramfs hold without rewriting them. */
  staticPages: number;
  /** Pages the idle kernel keeps dirtying, and how fast. */
  kernelPages: number;
  kernelRate: number;
}

/** Measured on the lab: an idle 256 MiB guest sends ~80 MiB of full pages; ~7 MiB is re-dirtied per pass. */
export const TCG_GUEST: GuestFacts = {
  maxWriteRate: 6.8e6,
  staticPages: 16000,
  kernelPages: 2000,
  kernelRate: 1500,
};

/** The same workload names and parameters as the guest program (guest/workload.c). */
export function workloadClasses(w: WorkloadSpec, facts: GuestFacts = TCG_GUEST): PageClass[] {
  const mib = (m: number) => (m * 2 ** 20) / PAGE;
  const kernel: PageClass = { name: 'kernel', pages: facts.kernelPages, rate: facts.kernelRate };
  const statics: PageClass = { name: 'static', pages: facts.staticPages, rate: 0 };
  switch (w.kind) {
    case 'idle':
      return [statics, kernel, { name: 'idle', pages: mib(16), rate: 0 }];
    case 'random':
      return [statics, kernel, { name: 'random', pages: mib(w.mib), rate: facts.maxWriteRate }];
    case 'rate':
      return [
        statics,
        kernel,
        { name: 'rate', pages: mib(w.mib), rate: w.pagesPerSec, cpuBoundRate: facts.maxWriteRate },
      ];
    case 'sweep':
      return [
        statics,
        kernel,
        {
          name: 'sweep',
          pages: mib(w.mib),
          rate: (w.mbps * 1e6) / PAGE,
          sequential: true,
          cpuBoundRate: facts.maxWriteRate,
        },
      ];
    case 'hotcold': {
      const total = w.pagesPerSec ?? facts.maxWriteRate;
      // A paced hot/cold writer catches up under a throttle (cpuBoundRate), each share of it.
      const split = (share: number) => ({
        rate: total * share,
        ...(w.pagesPerSec === undefined ? {} : { cpuBoundRate: facts.maxWriteRate * share }),
      });
      return [
        statics,
        kernel,
        { name: 'hot', pages: mib(w.hotMib), ...split(w.hotPct / 100) },
        { name: 'cold', pages: mib(w.coldMib), ...split(1 - w.hotPct / 100) },
      ];
    }
    case 'phase':
      return [
        statics,
        kernel,
        {
          name: 'phase',
          pages: mib(w.hotMib),
          rate: facts.maxWriteRate,
          periodS: w.periodS,
          regionPages: mib(w.mib),
        },
      ];
    case 'burst':
      return [
        statics,
        kernel,
        {
          name: 'burst',
          pages: mib(w.mib),
          rate: facts.maxWriteRate,
          duty: { onS: w.onMs / 1000, offS: w.offMs / 1000 },
        },
      ];
  }
}

/** Writes per second under a vCPU throttle (0–1): see `cpuBoundRate`. */
export function throttledRate(c: PageClass, throttle: number): number {
  return c.cpuBoundRate === undefined
    ? c.rate * (1 - throttle)
    : Math.min(c.rate, c.cpuBoundRate * (1 - throttle));
}

/** Share of [t, t + dt] (seconds) during which the class writes: 1 unless it bursts. */
export function activeShare(c: PageClass, at: number, dt: number): number {
  if (c.schedule?.length) return scheduledShare(c.schedule, at + dt / 2);
  if (!c.duty || dt <= 0) return 1;
  const t = classClock(c, at);
  const cycle = c.duty.onS + c.duty.offS;
  const onBefore = (x: number) => Math.floor(x / cycle) * c.duty!.onS + Math.min(x % cycle, c.duty!.onS);
  return (onBefore(t + dt) - onBefore(t)) / dt;
}

function scheduledShare(schedule: { atS: number; share: number }[], t: number): number {
  const span =
    schedule.at(-1)!.atS + (schedule.length > 1 ? schedule.at(-1)!.atS / (schedule.length - 1) : 1);
  const x = span > 0 ? t % span : t;
  let share = schedule[0]!.share;
  for (const e of schedule) if (e.atS <= x) share = e.share;
  return share;
}

/**
 * Distinct pages of a class newly dirtied in dt seconds, given `dirty` of them already in the log.
 * Mean-field: every page of the class is equally likely to be written.
 */
export function newlyDirtied(c: PageClass, dirty: number, dt: number, throttle: number, t = 0): number {
  const writes = throttledRate(c, throttle) * dt * activeShare(c, t, dt);
  if (writes <= 0 || c.pages <= 0) return 0;
  const clean = Math.max(0, c.pages - dirty);
  const p = c.sequential ? Math.min(1, writes / c.pages) : 1 - Math.exp(-writes / c.pages);
  return clean * p;
}
