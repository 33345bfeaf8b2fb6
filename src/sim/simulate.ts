import type { ResolvedPolicy } from '../policy/registry.js';
import {
  MAX_DOWNTIME_LIMIT_MS,
  type Action,
  type ControllerState,
  type PassRecord,
  type RegionHistory,
} from '../policy/types.js';
import { activeShare, newlyDirtied, type PageClass } from './model.js';

const PAGE = 4096;
/** Bytes on the wire: a full page record, and a zero page record (header + fill byte). */
const FULL_PAGE_BYTES = PAGE + 8;
const ZERO_PAGE_BYTES = 9;
/** After a post-copy switch the guest faults on what it touches; the pages of this window must cross first. */
const POSTCOPY_TOUCH_MS = 125;

export interface SimOptions {
  ramBytes: number;
  /** Link rate, bytes/s. */
  linkBps: number;
  rttMs?: number;
  classes: PageClass[];
  policy: ResolvedPolicy;
  downtimeBudgetMs: number;
  deadlineMs: number;
  postcopyPermitted?: boolean;
  /** Simulation step, ms (default 10). */
  stepMs?: number;
  /** QEMU checks its stop rule once per iteration of the migration thread (≤ 50 ms of sending). */
  checkMs?: number;
  /** Controller poll interval, ms (default 50, as the live controller). */
  pollMs?: number;
  /**
   * Guest RAM QEMU's migration thread can examine per second (every page is checked for zeros
   * before it is sent): what bounds the bulk pass of a large, mostly empty VM. Default 20 GB/s, an
   * assumption (memory bandwidth of one core), not measured here: under TCG the link bounds it.
   */
  scanBytesPerS?: number;
  /** Fixed cost of the stop-and-copy besides sending pages: device state, last sync (ms). */
  switchCostMs?: number;
}

export interface SimDecision {
  atMs: number;
  pass: number;
  action: Action;
}

export interface SimResult {
  outcome: 'completed' | 'cancelled';
  reason: string;
  totalTimeMs: number;
  downtimeMs: number;
  transferredBytes: number;
  passes: PassRecord[];
  decisions: SimDecision[];
  postcopy: boolean;
}

interface ClassState {
  c: PageClass;
  /** Dirty pages of the class in the migration bitmap ahead of QEMU's scan cursor (this round). */
  toSend: number;
  /** Dirty pages in the bitmap behind the cursor: the next scan round sends them. */
  next: number;
  /** Pages of the class in the dirty log since the last sync. */
  log: number;
  /** Where the class lies in RAM, in 2 MiB regions, and (sequential writers) its cursor, in pages. */
  firstRegion: number;
  regionCount: number;
  cursor: number;
  cursorAtSync: number;
}

const REGION_PAGES = 512; // 2 MiB, as the live region sources

/**
 * A deterministic model of QEMU's pre-copy loop and the link, driven by page classes, calling the
 * very same `decide` as the live controller. Mean-field: counts, not page identities. Per step: the
 * link sends from the migration bitmap (full pages cost 4 KiB, zero pages 9 bytes); the guest
 * dirties pages into the dirty log; every `checkMs` QEMU compares what is left with bandwidth ×
 * downtime-limit and, when under it, syncs (bitmap |= log) and either stops the guest (still under)
 * or starts a new pass.
 */
export function simulate(o: SimOptions): SimResult {
  const stepMs = o.stepMs ?? 10;
  const checkMs = o.checkMs ?? 50;
  const pollMs = o.pollMs ?? 50;
  const switchCostMs = o.switchCostMs ?? 40;
  const B = o.linkBps;
  const scanPagesPerStep = ((o.scanBytesPerS ?? 20e9) * stepMs) / 1000 / PAGE;
  const ramPages = o.ramBytes / PAGE;
  let nextRegion = 0;
  const classes: ClassState[] = o.classes.map((c) => {
    const regionCount = Math.max(1, Math.ceil((c.regionPages ?? c.pages) / REGION_PAGES));
    const firstRegion = nextRegion;
    nextRegion += regionCount;
    return {
      c,
      toSend: c.initialPages ?? c.pages,
      next: 0,
      log: 0,
      firstRegion,
      regionCount,
      cursor: 0,
      cursorAtSync: 0,
    };
  });
  let zeroToSend = Math.max(0, ramPages - classes.reduce((s, k) => s + (k.c.regionPages ?? k.toSend), 0));
  const setup = o.policy.policy.setup(o.policy.config, {
    downtimeBudgetMs: o.downtimeBudgetMs,
    postcopyPermitted: o.postcopyPermitted ?? false,
  });
  let limitMs = setup.downtimeLimitMs;
  let throttle = 0;
  let throttleArmed = 0;
  const passes: PassRecord[] = [];
  const decisions: SimDecision[] = [];
  const actions: ControllerState['actions'] = [];
  let t = 0;
  let transferred = 0;
  let pass = 1;
  let passStart = { t: 0, transferred: 0, normal: 0, zero: 0, remaining: ramPages * PAGE, limit: limitMs };
  let normalSent = 0;
  let zeroSent = 0;
  let watermark = { remainingBytes: Number.POSITIVE_INFINITY, atMs: 0 };
  let paused = false;
  let pausedAt = 0;
  let atPassEnd = false;
  const regions: RegionHistory | undefined = setup.wantsRegions
    ? {
        source: 'model',
        regionBytes: REGION_PAGES * PAGE,
        regionCount: Math.ceil(ramPages / REGION_PAGES),
        perPass: [],
      }
    : undefined;
  /** The regions each class dirtied since the last sync (mean-field: all of a random class's, or none). */
  const dirtiedRegions = (): number[] => {
    const out: number[] = [];
    for (const k of classes) {
      if (k.log <= 0) continue;
      if (k.c.sequential) {
        const from = Math.floor(k.cursorAtSync / REGION_PAGES);
        const to = Math.floor(k.cursor / REGION_PAGES);
        for (let r = from; r <= Math.min(to, from + k.regionCount - 1); r++)
          out.push(k.firstRegion + (r % k.regionCount));
      } else if (k.c.periodS) {
        // phase: the hot window's regions, at its current place in the region it moves through.
        const windowRegions = Math.max(1, Math.ceil(k.c.pages / REGION_PAGES));
        const places = Math.max(1, Math.floor(k.regionCount / windowRegions));
        const at = (Math.floor(t / 1000 / k.c.periodS) % places) * windowRegions;
        for (let r = 0; r < windowRegions; r++) out.push(k.firstRegion + at + r);
      } else if (k.log / k.regionCount >= Math.LN2) {
        // At least one write per region with even odds or better.
        for (let r = 0; r < k.regionCount; r++) out.push(k.firstRegion + r);
      }
    }
    return out;
  };
  // calc-dirty-rate as the live session runs it: the windows in turn, then a 250 ms pause.
  const windowsMs = setup.workingSetWindowsMs ?? [];
  const samples: NonNullable<ControllerState['workingSetSamples']> = [];
  let nextSample = { at: windowsMs[0] ?? Infinity, i: 0 };
  /** Distinct bytes the guest dirties within a window of `ms` ending at `end`. */
  const dirtiedWithin = (end: number, ms: number) =>
    classes.reduce((sum, k) => sum + newlyDirtied(k.c, 0, ms / 1000, throttle, (end - ms) / 1000), 0) * PAGE;

  const pending = () => classes.reduce((s, k) => s + k.toSend + k.next, 0) + zeroToSend;
  // The scan round: QEMU walks the bitmap by address and wraps; a sync in mid-round puts the newly
  // dirtied pages ahead of the cursor into this round and those behind it into the next.
  let roundFull = classes.reduce((s, k) => s + k.toSend, 0);
  let roundFullSent = 0;
  const finish = (
    outcome: SimResult['outcome'],
    reason: string,
    downtimeMs: number,
    postcopy = false,
  ): SimResult => ({
    outcome,
    reason,
    totalTimeMs: t,
    downtimeMs,
    transferredBytes: transferred,
    passes,
    decisions,
    postcopy,
  });
  const sync = () => {
    passes.push({
      pass,
      startMs: passStart.t,
      endMs: t,
      bytesSent: transferred - passStart.transferred,
      normalPages: normalSent - passStart.normal,
      zeroPages: zeroSent - passStart.zero,
      remainingAtStartBytes: passStart.remaining,
      dirtyAtEndBytes: 0,
      bandwidthBps: t > passStart.t ? (transferred - passStart.transferred) / ((t - passStart.t) / 1000) : B,
      qemuMbps: (B * 8) / 1e6,
      dirtyPagesRate: 0,
      downtimeLimitMs: passStart.limit,
    });
    // The share of this round's full pages still ahead of the cursor (none once in the zeros).
    const inFullSection = classes.some((x) => x.toSend > 0);
    const ahead = inFullSection && roundFull > 0 ? Math.max(0, 1 - roundFullSent / roundFull) : 0;
    regions?.perPass.push(dirtiedRegions());
    for (const k of classes) k.cursorAtSync = k.cursor;
    let loggedBytes = 0;
    for (const k of classes) {
      // Bitmap |= log, assuming which pages are in each is independent.
      // Newly dirty = logged pages not already in the bitmap (independence), split by the cursor.
      const fresh = k.log * Math.max(0, 1 - (k.toSend + k.next) / Math.max(1, k.c.pages));
      loggedBytes += k.log * PAGE;
      k.toSend += fresh * ahead;
      k.next += fresh * (1 - ahead);
      k.log = 0;
    }
    const last = passes.at(-1)!;
    last.dirtyAtEndBytes = pending() * PAGE;
    last.dirtyPagesRate = loggedBytes / PAGE / Math.max(0.001, (t - passStart.t) / 1000);
    // auto-converge: throttle when the guest dirtied more than half of what was sent, twice in a row.
    if (setup.autoConverge) {
      throttleArmed = loggedBytes > 0.5 * last.bytesSent ? throttleArmed + 1 : 0;
      if (throttleArmed >= 2) throttle = Math.min(0.99, throttle === 0 ? 0.2 : throttle + 0.1);
    }
    pass++;
    passStart = {
      t,
      transferred,
      normal: normalSent,
      zero: zeroSent,
      remaining: pending() * PAGE,
      limit: limitMs,
    };
    atPassEnd = true;
  };
  const stopAndCopy = (why: string): SimResult => {
    const bytes =
      classes.reduce((s, k) => s + k.toSend + k.next, 0) * FULL_PAGE_BYTES + zeroToSend * ZERO_PAGE_BYTES;
    const copyMs = (bytes / B) * 1000 + switchCostMs + (o.rttMs ?? 0);
    transferred += bytes;
    t += copyMs;
    // After a pause the guest has been stopped since the pause, not just for the copy.
    const downtime = paused ? t - pausedAt : copyMs;
    sync(); // the final pass record
    return finish('completed', why, downtime);
  };

  for (;;) {
    // The link sends for one step. QEMU scans RAM by address; on the lab guest the used memory
    // lies low, so the scan meets full pages first (measured: the bulk pass's first 1.1–1.5 s sent
    // 34–45 k full pages and ~3 k zero pages), and the zero pages after them.
    let budget = (B * stepMs) / 1000;
    let scan = scanPagesPerStep;
    const full = classes.reduce((s, k) => s + k.toSend, 0);
    if (full > 0) {
      const fullSent = Math.min(full, budget / FULL_PAGE_BYTES, scan);
      budget -= fullSent * FULL_PAGE_BYTES;
      scan -= fullSent;
      transferred += fullSent * FULL_PAGE_BYTES;
      for (const k of classes) k.toSend -= (fullSent * k.toSend) / full;
      normalSent += fullSent;
      roundFullSent += fullSent;
    }
    if (zeroToSend > 0 && budget > 0 && scan > 0) {
      const zerosSent = Math.min(zeroToSend, budget / ZERO_PAGE_BYTES, scan);
      transferred += zerosSent * ZERO_PAGE_BYTES;
      zeroToSend -= zerosSent;
      zeroSent += zerosSent;
    }
    if (zeroToSend <= 0 && classes.every((k) => k.toSend <= 1e-9)) {
      // The cursor wraps: what was behind it is the new round.
      for (const k of classes) {
        k.toSend = k.next;
        k.next = 0;
      }
      roundFull = classes.reduce((s, k) => s + k.toSend, 0);
      roundFullSent = 0;
    }
    // The guest dirties pages (not while paused).
    if (!paused) {
      for (const k of classes) {
        k.log = Math.min(k.c.pages, k.log + newlyDirtied(k.c, k.log, stepMs / 1000, throttle, t / 1000));
        if (k.c.sequential)
          k.cursor += k.c.rate * (1 - throttle) * (stepMs / 1000) * activeShare(k.c, t / 1000, stepMs / 1000);
        if (
          k.c.periodS &&
          Math.floor(t / 1000 / k.c.periodS) !== Math.floor((t + stepMs) / 1000 / k.c.periodS)
        ) {
          // The hot window moved: its pages in the bitmap stay, but the new window starts clean in the log.
          k.log = 0;
        }
      }
    }
    t += stepMs;

    // QEMU's stop rule, once per iteration of the migration thread.
    if (t % checkMs < stepMs) {
      const thresholdPages = (B * (limitMs / 1000)) / PAGE;
      if (pending() < thresholdPages) {
        sync();
        if (pending() < thresholdPages)
          return stopAndCopy(paused ? 'completed after pause' : 'QEMU completed the migration');
      }
    }

    while (t >= nextSample.at && !paused) {
      const ms = windowsMs[nextSample.i]!;
      samples.push({
        seconds: ms / 1000,
        bytes: Math.min(o.ramBytes, dirtiedWithin(nextSample.at, ms)),
        atMs: t,
      });
      const i = (nextSample.i + 1) % windowsMs.length;
      nextSample = { at: nextSample.at + (i === 0 ? 250 : 0) + windowsMs[i]!, i };
    }

    // The controller polls.
    if (t % pollMs < stepMs) {
      const remainingBytes = pending() * PAGE;
      if (remainingBytes < watermark.remainingBytes) watermark = { remainingBytes, atMs: t };
      if (t >= o.deadlineMs) {
        decisions.push({
          atMs: t,
          pass,
          action: { kind: 'abort', reason: `deadline of ${o.deadlineMs / 1000} s reached → abort` },
        });
        return finish('cancelled', 'deadline reached', 0);
      }
      const state: ControllerState = {
        elapsedMs: t,
        status: 'active',
        passes,
        currentPass: pass,
        atPassEnd,
        ramBytes: o.ramBytes,
        remainingBytes,
        transferredBytes: transferred,
        bandwidthBps: passes.at(-1)?.bandwidthBps || B,
        downtimeBudgetMs: o.downtimeBudgetMs,
        deadlineMs: o.deadlineMs,
        downtimeLimitMs: limitMs,
        postcopyPermitted: setup.postcopy,
        progressWatermark: watermark,
        workingSetSamples: samples.length ? [...samples] : undefined,
        regions,
        actions,
      };
      atPassEnd = false;
      const action = o.policy.policy.decide(state, o.policy.config);
      if (action.kind !== 'continue' || state.atPassEnd) decisions.push({ atMs: t, pass, action });
      switch (action.kind) {
        case 'continue':
          break;
        case 'setDowntimeLimit':
          limitMs = Math.min(MAX_DOWNTIME_LIMIT_MS, action.downtimeLimitMs);
          break;
        case 'switchover':
          limitMs = Math.max(
            limitMs,
            Math.min(MAX_DOWNTIME_LIMIT_MS, action.downtimeLimitMs ?? MAX_DOWNTIME_LIMIT_MS),
          );
          actions.push({ kind: 'switchover', atMs: t, pass });
          break;
        case 'pause':
          paused = true;
          pausedAt = t;
          actions.push({ kind: 'pause', atMs: t, pass });
          break;
        case 'postcopy': {
          if (!setup.postcopy) break;
          // The guest moves now (device state only); the rest follows on demand and in the background.
          const rest =
            classes.reduce((s, k) => s + k.toSend + k.next + k.log, 0) * FULL_PAGE_BYTES +
            zeroToSend * ZERO_PAGE_BYTES;
          transferred += rest;
          // The guest stalls until what it touches within its first moments there has crossed.
          const stalledMs =
            (Math.min(rest, dirtiedWithin(t + POSTCOPY_TOUCH_MS, POSTCOPY_TOUCH_MS)) / B) * 1000;
          t += (rest / B) * 1000 + switchCostMs;
          return finish('completed', 'post-copy', switchCostMs + stalledMs, true);
        }
        case 'abort':
          return finish('cancelled', action.reason, 0);
      }
    }
  }
}
