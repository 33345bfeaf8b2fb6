import { Controller, type Command, type DeadlineAction, type Decision } from '../core/controller.js';
import type { GuestRunsOn } from '../core/ending.js';
import type { MigrationInfo } from '../core/sample.js';
import type { ResolvedPolicy } from '../policy/registry.js';
import type { PassRecord } from '../policy/types.js';
import { UsageError } from '../util/errors.js';
import { activeShare, newlyDirtied, type PageClass } from './model.js';

const PAGE = 4096;
/** Bytes on the wire: a full page record, and a zero page record (header + fill byte). */
const FULL_PAGE_BYTES = PAGE + 8;
const ZERO_PAGE_BYTES = 9;
/** After a post-copy switch the guest faults on what it touches; the pages of this window must cross first. */
const POSTCOPY_TOUCH_MS = 125;
const REGION_PAGES = 512; // 2 MiB, as the live region sources

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
  onDeadline?: DeadlineAction;
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
  /** Sees every sample the core observes (traces, and replaying a run through another driver). */
  onObserve?: (info: MigrationInfo, atMs: number) => void;
}

/** The simulator's decisions are the controller core's. */
export type SimDecision = Decision;

export interface SimResult {
  outcome: 'completed' | 'cancelled' | 'failed';
  guestRunsOn: GuestRunsOn;
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

/** How the model's migration ended, before the core says where the guest runs. */
type ModelEnd = { status: 'completed' | 'cancelled'; downtimeMs: number; why: string };

/**
 * A deterministic model of QEMU's pre-copy loop and the link, driven by page classes. Mean-field:
 * counts, not page identities. Per step: the link sends from the migration bitmap (full pages
 * cost 4 KiB, zero pages 9 bytes); the guest dirties pages into the dirty log; every `checkMs`
 * QEMU compares what is left with bandwidth × downtime-limit and, when under it, syncs
 * (bitmap |= log) and either stops the guest (still under) or starts a new pass. It reports
 * itself as `query-migrate` samples and obeys the controller core's commands.
 */
class MigrationModel {
  t = 0;
  transferred = 0;
  normalSent = 0;
  zeroSent = 0;
  pass = 1;
  limitMs: number;
  paused = false;
  pausedAt = 0;
  throttle = 0;
  private throttleArmed = 0;
  private lastDirtyRate = 0;
  private passStart = { t: 0, transferred: 0 };
  readonly classes: ClassState[];
  private zeroToSend: number;
  private roundFull: number;
  private roundFullSent = 0;
  private readonly scanPagesPerStep: number;

  constructor(
    private readonly o: SimOptions,
    downtimeLimitMs: number,
    private readonly autoConverge: boolean,
  ) {
    const stepMs = o.stepMs ?? 10;
    this.limitMs = downtimeLimitMs;
    this.scanPagesPerStep = ((o.scanBytesPerS ?? 20e9) * stepMs) / 1000 / PAGE;
    let nextRegion = 0;
    this.classes = o.classes.map((c) => {
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
    const ramPages = o.ramBytes / PAGE;
    this.zeroToSend = Math.max(
      0,
      ramPages - this.classes.reduce((s, k) => s + (k.c.regionPages ?? k.toSend), 0),
    );
    this.roundFull = this.classes.reduce((s, k) => s + k.toSend, 0);
  }

  pending(): number {
    return this.classes.reduce((s, k) => s + k.toSend + k.next, 0) + this.zeroToSend;
  }

  /** What `query-migrate` would say now. */
  sample(status: string): MigrationInfo {
    return {
      status,
      'total-time': this.t,
      ram: {
        transferred: this.transferred,
        remaining: this.pending() * PAGE,
        total: this.o.ramBytes,
        duplicate: this.zeroSent,
        normal: this.normalSent,
        'dirty-sync-count': this.pass,
        'dirty-pages-rate': this.lastDirtyRate,
        mbps: (this.o.linkBps * 8) / 1e6,
      },
    };
  }

  /** One step of the link and the guest. */
  step(stepMs: number): void {
    this.send(stepMs);
    if (!this.paused) this.dirty(stepMs);
    this.t += stepMs;
  }

  /**
   * The link sends for one step. QEMU scans RAM by address; on the lab guest the used memory
   * lies low, so the scan meets full pages first (measured: the bulk pass's first 1.1–1.5 s sent
   * 34–45 k full pages and ~3 k zero pages), and the zero pages after them.
   */
  private send(stepMs: number): void {
    let budget = (this.o.linkBps * stepMs) / 1000;
    let scan = this.scanPagesPerStep;
    const full = this.classes.reduce((s, k) => s + k.toSend, 0);
    if (full > 0) {
      const fullSent = Math.min(full, budget / FULL_PAGE_BYTES, scan);
      budget -= fullSent * FULL_PAGE_BYTES;
      scan -= fullSent;
      this.transferred += fullSent * FULL_PAGE_BYTES;
      for (const k of this.classes) k.toSend -= (fullSent * k.toSend) / full;
      this.normalSent += fullSent;
      this.roundFullSent += fullSent;
    }
    if (this.zeroToSend > 0 && budget > 0 && scan > 0) {
      const zerosSent = Math.min(this.zeroToSend, budget / ZERO_PAGE_BYTES, scan);
      this.transferred += zerosSent * ZERO_PAGE_BYTES;
      this.zeroToSend -= zerosSent;
      this.zeroSent += zerosSent;
    }
    if (this.zeroToSend <= 0 && this.classes.every((k) => k.toSend <= 1e-9)) {
      // The cursor wraps: what was behind it is the new round.
      for (const k of this.classes) {
        k.toSend = k.next;
        k.next = 0;
      }
      this.roundFull = this.classes.reduce((s, k) => s + k.toSend, 0);
      this.roundFullSent = 0;
    }
  }

  /** The guest dirties pages into the dirty log. */
  private dirty(stepMs: number): void {
    const t = this.t;
    for (const k of this.classes) {
      k.log = Math.min(k.c.pages, k.log + newlyDirtied(k.c, k.log, stepMs / 1000, this.throttle, t / 1000));
      if (k.c.sequential)
        k.cursor +=
          k.c.rate * (1 - this.throttle) * (stepMs / 1000) * activeShare(k.c, t / 1000, stepMs / 1000);
      if (
        k.c.periodS &&
        Math.floor(t / 1000 / k.c.periodS) !== Math.floor((t + stepMs) / 1000 / k.c.periodS)
      ) {
        // The hot window moved: its pages in the bitmap stay, but the new window starts clean in the log.
        k.log = 0;
      }
    }
  }

  /** QEMU's stop rule: true when what is left fits bandwidth × downtime-limit even after a sync. */
  stopRuleSyncs(): 'no' | 'synced' | 'stop' {
    const thresholdPages = (this.o.linkBps * (this.limitMs / 1000)) / PAGE;
    if (this.pending() >= thresholdPages) return 'no';
    this.sync();
    return this.pending() < thresholdPages ? 'stop' : 'synced';
  }

  /** A bitmap sync: bitmap |= log, the new pages split by QEMU's scan cursor; a new pass begins. */
  sync(): void {
    // The share of this round's full pages still ahead of the cursor (none once in the zeros).
    const inFullSection = this.classes.some((x) => x.toSend > 0);
    const ahead =
      inFullSection && this.roundFull > 0 ? Math.max(0, 1 - this.roundFullSent / this.roundFull) : 0;
    for (const k of this.classes) k.cursorAtSync = k.cursor;
    let loggedPages = 0;
    for (const k of this.classes) {
      // Newly dirty = logged pages not already in the bitmap (independence), split by the cursor.
      const fresh = k.log * Math.max(0, 1 - (k.toSend + k.next) / Math.max(1, k.c.pages));
      loggedPages += k.log;
      k.toSend += fresh * ahead;
      k.next += fresh * (1 - ahead);
      k.log = 0;
    }
    const seconds = Math.max(0.001, (this.t - this.passStart.t) / 1000);
    this.lastDirtyRate = loggedPages / seconds;
    // auto-converge: throttle when the guest dirtied more than half of what was sent, twice in a row.
    if (this.autoConverge) {
      const sent = this.transferred - this.passStart.transferred;
      this.throttleArmed = loggedPages * PAGE > 0.5 * sent ? this.throttleArmed + 1 : 0;
      if (this.throttleArmed >= 2)
        this.throttle = Math.min(0.99, this.throttle === 0 ? 0.2 : this.throttle + 0.1);
    }
    this.pass++;
    this.passStart = { t: this.t, transferred: this.transferred };
  }

  /** The regions each class dirtied since the last sync (mean-field: all of a random class's, or none). */
  dirtiedRegions(): number[] {
    const out: number[] = [];
    for (const k of this.classes) {
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
        const at = (Math.floor(this.t / 1000 / k.c.periodS) % places) * windowRegions;
        for (let r = 0; r < windowRegions; r++) out.push(k.firstRegion + at + r);
      } else if (k.log / k.regionCount >= Math.LN2) {
        // At least one write per region with even odds or better.
        for (let r = 0; r < k.regionCount; r++) out.push(k.firstRegion + r);
      }
    }
    return out;
  }

  /** Distinct bytes the guest dirties within a window of `ms` ending at `end`. */
  dirtiedWithin(end: number, ms: number): number {
    return (
      this.classes.reduce(
        (sum, k) => sum + newlyDirtied(k.c, 0, ms / 1000, this.throttle, (end - ms) / 1000),
        0,
      ) * PAGE
    );
  }

  /** The stop-and-copy: everything left crosses while the guest is stopped. */
  stopAndCopy(why: string): ModelEnd {
    const bytes =
      this.classes.reduce((s, k) => s + k.toSend + k.next, 0) * FULL_PAGE_BYTES +
      this.zeroToSend * ZERO_PAGE_BYTES;
    const copyMs = (bytes / this.o.linkBps) * 1000 + (this.o.switchCostMs ?? 40) + (this.o.rttMs ?? 0);
    this.transferred += bytes;
    this.t += copyMs;
    this.normalSent += this.classes.reduce((s, k) => s + k.toSend + k.next, 0);
    // After a pause the guest has been stopped since the pause, not just for the copy.
    return { status: 'completed', downtimeMs: this.paused ? this.t - this.pausedAt : copyMs, why };
  }

  /** A post-copy switch: the guest moves now, the rest follows on demand and in the background. */
  postcopy(): ModelEnd {
    const switchCostMs = this.o.switchCostMs ?? 40;
    const rest =
      this.classes.reduce((s, k) => s + k.toSend + k.next + k.log, 0) * FULL_PAGE_BYTES +
      this.zeroToSend * ZERO_PAGE_BYTES;
    this.transferred += rest;
    // The guest stalls until what it touches within its first moments there has crossed.
    const stalledMs =
      (Math.min(rest, this.dirtiedWithin(this.t + POSTCOPY_TOUCH_MS, POSTCOPY_TOUCH_MS)) / this.o.linkBps) *
      1000;
    this.t += (rest / this.o.linkBps) * 1000 + switchCostMs;
    return { status: 'completed', downtimeMs: switchCostMs + stalledMs, why: 'post-copy' };
  }
}

/**
 * Runs one simulated migration through the controller core — the same safety chain, action rules
 * and policy as the live drivers. The core sees the model's `query-migrate` samples every
 * `pollMs` and right after each sync (the live drivers wake on MIGRATION_PASS), and the model
 * carries out its commands.
 */
export function simulate(o: SimOptions): SimResult {
  checkSimOptions(o);
  const stepMs = o.stepMs ?? 10;
  const checkMs = o.checkMs ?? 50;
  const pollMs = o.pollMs ?? 50;
  const core = new Controller({
    policy: o.policy,
    downtimeBudgetMs: o.downtimeBudgetMs,
    deadlineMs: o.deadlineMs,
    onDeadline: o.onDeadline,
    postcopyPermitted: o.postcopyPermitted ?? false,
    ramBytes: o.ramBytes,
  });
  const setup = core.setup;
  const m = new MigrationModel(o, setup.downtimeLimitMs, setup.autoConverge);
  if (setup.wantsRegions) {
    core.attachRegions({
      source: 'model',
      regionBytes: REGION_PAGES * PAGE,
      regionCount: Math.ceil(o.ramBytes / PAGE / REGION_PAGES),
    });
  }
  const observe = (status: string) => {
    const info = m.sample(status);
    o.onObserve?.(info, m.t);
    return core.observe(info, m.t);
  };
  const sampler = workingSetSampler(setup.workingSetWindowsMs ?? [], o.ramBytes, m);
  let end: ModelEnd | undefined;
  while (!end) {
    m.step(stepMs);
    let synced = false;
    if (m.t % checkMs < stepMs) {
      const dirtied = setup.wantsRegions ? m.dirtiedRegions() : [];
      const rule = m.stopRuleSyncs();
      if (rule !== 'no') core.regionsDirtied(dirtied);
      if (rule === 'stop') {
        // The guest is stopped: the controller sees QEMU in `device` and cannot act any more.
        observe('device');
        end = m.stopAndCopy(m.paused ? 'completed after pause' : 'QEMU completed the migration');
        break;
      }
      synced = rule === 'synced';
    }
    if (!m.paused) for (const s of sampler(m.t)) core.workingSetMeasured(s);
    if (synced || m.t % pollMs < stepMs) end = carryOut(observe('active').commands, core, m);
  }
  observe(end.status);
  core.finish(undefined, m.t);
  const ending = core.conclude({
    sourceRunState: end.status === 'completed' ? 'postmigrate' : 'running',
    sourceWasRunning: true,
    destination: end.status === 'completed' ? { verdict: 'completed', detail: 'model' } : undefined,
  });
  return {
    outcome: ending.outcome,
    guestRunsOn: ending.guestRunsOn,
    reason: end.status === 'completed' ? end.why : ending.reason,
    totalTimeMs: m.t,
    downtimeMs: end.downtimeMs,
    transferredBytes: m.transferred,
    passes: core.passes,
    decisions: core.decisions,
    postcopy: core.postcopyStarted,
  };
}

/**
 * Every input of a simulated migration, checked before the run; what is wrong is one line (a
 * UsageError). The pages a class holds when the migration starts must fit in the guest's RAM.
 */
export function checkSimOptions(o: SimOptions): void {
  const bad = (why: string) => {
    throw new UsageError(`simulator: ${why}`);
  };
  const positive = (x: number | undefined, what: string) => {
    if (x !== undefined && !(Number.isFinite(x) && x > 0)) bad(`${what} must be a number above 0, not ${x}`);
  };
  const nonNegative = (x: number | undefined, what: string) => {
    if (x !== undefined && !(Number.isFinite(x) && x >= 0)) bad(`${what} must be a number ≥ 0, not ${x}`);
  };
  positive(o.ramBytes, 'RAM');
  if (o.ramBytes < 2 ** 20) bad(`RAM ${o.ramBytes} bytes is under 1 MiB`);
  positive(o.linkBps, 'the link rate');
  nonNegative(o.rttMs, 'the round trip');
  positive(o.downtimeBudgetMs, 'the downtime budget');
  positive(o.deadlineMs, 'the deadline');
  positive(o.stepMs, 'the step');
  positive(o.checkMs, 'the stop-rule check interval');
  positive(o.pollMs, 'the poll interval');
  positive(o.scanBytesPerS, 'the zero-page scan rate');
  nonNegative(o.switchCostMs, 'the switchover cost');
  if (o.classes.length === 0) bad('no page classes: give a workload');
  let resident = 0;
  for (const c of o.classes) {
    nonNegative(c.pages, `class ${c.name}: pages`);
    nonNegative(c.rate, `class ${c.name}: rate`);
    nonNegative(c.initialPages, `class ${c.name}: initialPages`);
    if ((c.initialPages ?? 0) > c.pages) bad(`class ${c.name}: initialPages exceeds its pages`);
    resident += c.initialPages ?? c.regionPages ?? c.pages;
  }
  const ramPages = o.ramBytes / PAGE;
  if (resident > ramPages)
    bad(
      `the workload holds ${Math.round((resident * PAGE) / 2 ** 20)} MiB but the guest has ${Math.round(o.ramBytes / 2 ** 20)} MiB of RAM`,
    );
}

/** The model carries out the core's commands; a command that ends the migration returns how. */
function carryOut(commands: Command[], core: Controller, m: MigrationModel): ModelEnd | undefined {
  for (const cmd of commands) {
    switch (cmd.kind) {
      case 'setDowntimeLimit':
        m.limitMs = cmd.downtimeLimitMs;
        break;
      case 'stopSource':
        m.paused = true;
        m.pausedAt = m.t;
        break;
      case 'startPostcopy':
        core.commandDone(cmd);
        return m.postcopy();
      case 'cancel':
        return { status: 'cancelled', downtimeMs: 0, why: 'cancelled' };
    }
    core.commandDone(cmd);
  }
  return undefined;
}

/** calc-dirty-rate as the live session runs it: the windows in turn, then a 250 ms pause. */
function workingSetSampler(windowsMs: number[], ramBytes: number, m: MigrationModel) {
  let next = { at: windowsMs[0] ?? Infinity, i: 0 };
  return (t: number) => {
    const out: { seconds: number; bytes: number; atMs: number }[] = [];
    while (t >= next.at) {
      const ms = windowsMs[next.i]!;
      out.push({ seconds: ms / 1000, bytes: Math.min(ramBytes, m.dirtiedWithin(next.at, ms)), atMs: t });
      const i = (next.i + 1) % windowsMs.length;
      next = { at: next.at + (i === 0 ? 250 : 0) + windowsMs[i]!, i };
    }
    return out;
  };
}
