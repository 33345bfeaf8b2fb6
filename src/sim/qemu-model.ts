import type { MigrationInfo } from '../core/sample.js';
import { activeShare, classClock, newlyDirtied, throttledRate, type PageClass } from './model.js';
import { faultMs, scanRate, syncMs, type ModelParams } from './params.js';

/** Bytes on the wire besides the page itself: a page record header; a zero page is header + fill byte. */
const PAGE_HEADER = 8;
const ZERO_PAGE_BYTES = 9;
/** QEMU measures its bandwidth over windows of at least this long (BUFFER_DELAY, migration.c). */
const BANDWIDTH_WINDOW_MS = 100;
/** Post-copy is stepped finer than pre-copy: the stall ends within a step. */
const POSTCOPY_SUBSTEP_MS = 1;
/** A sequential writer's pages touched within this window after a post-copy switch must cross first. */
const POSTCOPY_TOUCH_MS = 125;

export interface ModelConfig {
  ramBytes: number;
  classes: PageClass[];
  rttMs: number;
  params: ModelParams;
}

/** How the model's migration ended, before the core says where the guest runs. */
export type ModelEnd = { status: 'completed' | 'cancelled'; downtimeMs: number; why: string };

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

/** What is left once the guest stopped (stop-and-copy) or moved (post-copy), sent step by step. */
interface Switch {
  kind: 'stop' | 'postcopy';
  why: string;
  /** Time with the guest stopped that moves no RAM: stopping, the last sync, device state, RTT. */
  fixedMsLeft: number;
  /** Bytes to send, in order; post-copy: per class (index) or zero pages (-1). */
  queue: { cls: number; pages: number }[];
  startedAt: number;
  /** Post-copy: pages of each class not yet on the destination, and when the guest stopped stalling. */
  missing?: number[];
  stallEndAt?: number;
  /** Post-copy: queue entries at its head the guest is blocked on whatever the share says. */
  urgentLeft?: number;
}

/**
 * Converts classes counted in 4 KiB pages to the model's tracking granularity: a random write
 * dirties one (larger) page; a sweep crosses `k` times fewer of them per second.
 */
export function atPageSize(classes: PageClass[], pageBytes: number): PageClass[] {
  const k = pageBytes / 4096;
  if (k === 1) return classes;
  const scale = (x: number | undefined) => (x === undefined ? undefined : Math.max(1, x / k));
  return classes.map((c) => ({
    ...c,
    pages: Math.max(1, c.pages / k),
    initialPages: c.initialPages === undefined ? undefined : c.initialPages / k,
    regionPages: scale(c.regionPages),
    rate: c.sequential ? c.rate / k : c.rate,
  }));
}

/** QEMU's auto-converge parameters, % (cpu-throttle-initial, -increment, max-cpu-throttle, throttle-trigger-threshold). */
export interface AutoConvergeSteps {
  initialPct: number;
  incrementPct: number;
  maxPct: number;
  triggerPct: number;
}

/** QEMU's defaults (migration/options.c). */
export const AUTO_CONVERGE_DEFAULTS: Readonly<AutoConvergeSteps> = {
  initialPct: 20,
  incrementPct: 10,
  maxPct: 99,
  triggerPct: 50,
};

/** The steps `migrate-set-parameters` values ask for, over `d` (QEMU's defaults). */
export function autoConvergeSteps(
  parameters: Record<string, number> | undefined,
  d: Readonly<AutoConvergeSteps> = AUTO_CONVERGE_DEFAULTS,
): AutoConvergeSteps {
  const p = parameters ?? {};
  return {
    initialPct: p['cpu-throttle-initial'] ?? d.initialPct,
    incrementPct: p['cpu-throttle-increment'] ?? d.incrementPct,
    maxPct: p['max-cpu-throttle'] ?? d.maxPct,
    triggerPct: p['throttle-trigger-threshold'] ?? d.triggerPct,
  };
}

/**
 * A deterministic model of QEMU's migration thread, driven by page classes. Mean-field: counts,
 * not page identities. Per step the streams send what the link gives them from the migration
 * bitmap (full pages cost a page + header, zero pages 9 bytes, each page is scanned for zeros);
 * the guest dirties pages into the dirty log. Every `checkMs` QEMU updates its bandwidth estimate
 * (bytes sent over the last ≥100 ms window, as migration_update_counters does) and compares what
 * is left with estimate × downtime-limit; when under it, it syncs (bitmap |= log, costing time in
 * which nothing is sent) and either stops the guest (still under) or starts a new pass.
 */
export class MigrationModel {
  t = 0;
  transferred = 0;
  normalSent = 0;
  zeroSent = 0;
  pass = 1;
  limitMs: number;
  paused = false;
  pausedAt = 0;
  throttle = 0;
  /** QEMU's threshold_size, bytes: 0 until the first bandwidth window closes (as in QEMU). */
  thresholdBytes = 0;
  /** QEMU's own bandwidth estimate (bytes/s) from the last window. */
  estimateBps = 0;
  sw: Switch | undefined;
  readonly classes: ClassState[];
  readonly page: number;
  private throttleArmed = 0;
  private lastDirtyRate = 0;
  private passStart = { t: 0, transferred: 0 };
  /** QEMU's rate period: syncs over ≥ 1 s (time_last_bitmap_sync, num_dirty_pages_period). */
  private period = { t: 0, transferred: 0, dirtyPages: 0 };
  private window = { t: 0, transferred: 0 };
  private busyUntil = 0;
  private zeroToSend: number;
  private roundFull: number;
  private roundFullSent = 0;
  private readonly fullPageBytes: number;
  private readonly regionPages: number;

  constructor(
    private readonly o: ModelConfig,
    downtimeLimitMs: number,
    private readonly autoConverge: boolean,
    /** Auto-converge's steps (QEMU's parameters; a steering policy sets all three to its pick). */
    readonly throttleSteps: AutoConvergeSteps = { ...AUTO_CONVERGE_DEFAULTS },
  ) {
    this.page = o.params.pageBytes;
    this.fullPageBytes = this.page + PAGE_HEADER;
    this.regionPages = Math.max(1, 2 ** 21 / this.page);
    this.limitMs = downtimeLimitMs;
    let nextRegion = 0;
    this.classes = atPageSize(o.classes, this.page).map((c) => {
      const regionCount = Math.max(1, Math.ceil((c.regionPages ?? c.pages) / this.regionPages));
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
    const ramPages = o.ramBytes / this.page;
    this.zeroToSend = Math.max(
      0,
      ramPages - this.classes.reduce((s, k) => s + (k.c.regionPages ?? k.toSend), 0),
    );
    this.roundFull = this.classes.reduce((s, k) => s + k.toSend, 0);
  }

  /** Pages of 4 KiB per model page: what `query-migrate` counts in. */
  private get k(): number {
    return this.page / 4096;
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
        remaining: this.pending() * this.page,
        total: this.o.ramBytes,
        duplicate: this.zeroSent * this.k,
        normal: this.normalSent * this.k,
        'dirty-sync-count': this.pass,
        'dirty-pages-rate': this.lastDirtyRate * this.k,
        mbps: (this.estimateBps * 8) / 1e6,
      },
    };
  }

  /** One pre-copy step: the streams send at `rateBps` (less any time spent syncing); the guest writes. */
  step(stepMs: number, rateBps: number): void {
    const sendMs = Math.max(0, Math.min(stepMs, this.t + stepMs - this.busyUntil));
    this.send((rateBps * sendMs) / 1000, (scanRate(this.o.params) * sendMs) / 1000 / this.page);
    if (!this.paused) this.dirty(stepMs);
    this.t += stepMs;
  }

  /**
   * Bytes/s the streams could put on the wire in the next step of `stepMs` however fast the link:
   * nothing while a bitmap sync or the switchover's fixed part holds the migration thread, the
   * scan's pace through zero pages (9 bytes per page examined). What a link shared by several
   * migrations can give to the others meanwhile (TCP does not hold bandwidth a flow does not use).
   * Never below what `step`/`stepSwitch` would send: the first step after a pass, and post-copy,
   * are counted as unbounded.
   */
  usableBps(stepMs: number): number {
    const sw = this.sw;
    if (sw) return sw.fixedMsLeft >= stepMs ? 0 : Infinity;
    const sendMs = Math.max(0, Math.min(stepMs, this.t + stepMs - this.busyUntil));
    if (sendMs <= 0) return 0;
    const scan = (scanRate(this.o.params) * sendMs) / 1000 / this.page;
    const full = this.classes.reduce((x, k) => x + k.toSend, 0);
    // A round about to wrap sends its next round's pages only from the next step on.
    if (full <= 1e-9 && this.zeroToSend <= 0) return Infinity;
    const fullSent = Math.min(full, scan);
    const zeros = Math.min(this.zeroToSend, scan - fullSent);
    const bytes = fullSent * this.fullPageBytes + zeros * ZERO_PAGE_BYTES;
    // A margin, so that rounding never leaves a sliver of the round for the next step.
    return ((bytes * 1.01 + this.fullPageBytes) / sendMs) * 1000;
  }

  /**
   * The streams send. QEMU scans RAM by address; on the lab guest the used memory lies low, so
   * the scan meets full pages first (measured: the bulk pass's first 1.1–1.5 s sent 34–45 k full
   * pages and ~3 k zero pages), and the zero pages after them.
   */
  private send(budget: number, scan: number): void {
    const full = this.classes.reduce((s, k) => s + k.toSend, 0);
    if (full > 0) {
      const fullSent = Math.min(full, budget / this.fullPageBytes, scan);
      budget -= fullSent * this.fullPageBytes;
      scan -= fullSent;
      this.transferred += fullSent * this.fullPageBytes;
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

  /**
   * The guest dirties pages into the dirty log. Under KVM each first write to a clean page after
   * a sync is a write-protection fault: each vCPU dirties at most 1e6 / dirtyLogFaultUs new pages/s.
   */
  private dirty(stepMs: number): void {
    const t = this.t;
    const dt = stepMs / 1000;
    const fresh = this.classes.map((k) => newlyDirtied(k.c, k.log, dt, this.throttle, t / 1000));
    const { dirtyLogFaultUs, vcpus } = this.o.params;
    const cap = dirtyLogFaultUs > 0 ? (vcpus * 1e6 * dt) / dirtyLogFaultUs : Infinity;
    const total = fresh.reduce((a, b) => a + b, 0);
    const scale = total > cap ? cap / total : 1;
    this.classes.forEach((k, i) => {
      k.log = Math.min(k.c.pages, k.log + fresh[i]! * scale);
      if (k.c.sequential) k.cursor += throttledRate(k.c, this.throttle) * dt * activeShare(k.c, t / 1000, dt);
      if (
        k.c.periodS &&
        Math.floor(classClock(k.c, t / 1000) / k.c.periodS) !==
          Math.floor(classClock(k.c, (t + stepMs) / 1000) / k.c.periodS)
      ) {
        // The hot window moved: its pages in the bitmap stay, but the new window starts clean in the log.
        k.log = 0;
      }
    });
  }

  /** migration_update_counters: a new estimate once ≥100 ms have passed since the last. */
  private updateEstimate(): void {
    const ms = this.t - this.window.t;
    if (ms < BANDWIDTH_WINDOW_MS) return;
    this.estimateBps = ((this.transferred - this.window.transferred) / ms) * 1000;
    this.thresholdBytes = (this.estimateBps / 1000) * this.limitMs;
    this.window = { t: this.t, transferred: this.transferred };
  }

  /** QEMU's stop rule, once per iteration of its migration thread. */
  stopRuleSyncs(): 'no' | 'synced' | 'stop' {
    if (this.t < this.busyUntil) return 'no';
    this.updateEstimate();
    // The downtime-limit may have changed since the window closed: QEMU reads it at the window.
    const thresholdPages = this.thresholdBytes / this.page;
    if (this.pending() >= thresholdPages) return 'no';
    this.sync();
    return this.pending() < thresholdPages ? 'stop' : 'synced';
  }

  /** A bitmap sync: bitmap |= log, the new pages split by QEMU's scan cursor; a new pass begins. */
  sync(newPass = true): void {
    // The share of this round's full pages still ahead of the cursor (none once in the zeros).
    const inFullSection = this.classes.some((x) => x.toSend > 0);
    const ahead =
      inFullSection && this.roundFull > 0 ? Math.max(0, 1 - this.roundFullSent / this.roundFull) : 0;
    let loggedPages = 0;
    for (const k of this.classes) {
      k.cursorAtSync = k.cursor;
      // Newly dirty = logged pages not already in the bitmap (independence), split by the cursor.
      const fresh = k.log * Math.max(0, 1 - (k.toSend + k.next) / Math.max(1, k.c.pages));
      loggedPages += k.log;
      k.toSend += fresh * ahead;
      k.next += fresh * (1 - ahead);
      k.log = 0;
    }
    const seconds = Math.max(0.001, (this.t - this.passStart.t) / 1000);
    this.lastDirtyRate = loggedPages / seconds;
    // auto-converge (migration_bitmap_sync → migration_trigger_throttle): QEMU looks at a period of
    // over 1 s of syncs; at every second period in which the guest dirtied more than the trigger
    // threshold of what was sent, it starts at `initial`, then adds `increment`, up to `max`
    // (mig_throttle_guest_down).
    this.period.dirtyPages += loggedPages;
    if (this.t > this.period.t + 1000) {
      if (this.autoConverge) {
        const sent = this.transferred - this.period.transferred;
        const steps = this.throttleSteps;
        if (
          this.period.dirtyPages * this.page > (steps.triggerPct / 100) * sent &&
          ++this.throttleArmed >= 2
        ) {
          this.throttleArmed = 0;
          const pct =
            this.throttle === 0
              ? steps.initialPct
              : Math.min(steps.maxPct, this.throttle * 100 + steps.incrementPct);
          this.throttle = Math.min(99, pct) / 100;
        }
      }
      this.period = { t: this.t, transferred: this.transferred, dirtyPages: 0 };
    }
    if (!newPass) return;
    this.pass++;
    this.passStart = { t: this.t, transferred: this.transferred };
    this.busyUntil = Math.max(this.busyUntil, this.t) + syncMs(this.o.params, this.o.ramBytes);
  }

  /** The regions each class dirtied since the last sync (mean-field: all of a random class's, or none). */
  dirtiedRegions(): number[] {
    const out: number[] = [];
    const R = this.regionPages;
    for (const k of this.classes) {
      if (k.log <= 0) continue;
      if (k.c.sequential) {
        const from = Math.floor(k.cursorAtSync / R);
        const to = Math.floor(k.cursor / R);
        for (let r = from; r <= Math.min(to, from + k.regionCount - 1); r++)
          out.push(k.firstRegion + (r % k.regionCount));
      } else if (k.c.periodS) {
        // phase: the hot window's regions, at its current place in the region it moves through.
        const windowRegions = Math.max(1, Math.ceil(k.c.pages / R));
        const places = Math.max(1, Math.floor(k.regionCount / windowRegions));
        const at = (Math.floor(classClock(k.c, this.t / 1000) / k.c.periodS) % places) * windowRegions;
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
      ) * this.page
    );
  }

  private switchFixedMs(): number {
    const p = this.o.params;
    return (
      p.switchCostMs +
      p.vcpus * p.switchMsPerVcpu +
      (p.channels - 1) * p.switchMsPerExtraChannel +
      syncMs(p, this.o.ramBytes)
    );
  }

  /** The stop-and-copy begins: everything left crosses while the guest is stopped. */
  beginStop(why: string): void {
    const full = this.classes.reduce((s, k) => s + k.toSend + k.next, 0);
    this.sw = {
      kind: 'stop',
      why,
      fixedMsLeft: this.switchFixedMs() + this.o.rttMs,
      queue: [
        { cls: 0, pages: full },
        { cls: -1, pages: this.zeroToSend },
      ],
      startedAt: this.t,
    };
  }

  /**
   * A post-copy switch: QEMU syncs once more and the guest moves now; what is missing follows in
   * address order from the scan cursor (what is ahead of it, the zero pages, then what is behind).
   * A sequential writer faults on the page at its cursor and QEMU moves its scan there, so the
   * pages it touches within POSTCOPY_TOUCH_MS go first; the guest stalls at least until they
   * have crossed (it then runs at the link's pace: slowed, not stopped).
   */
  beginPostcopy(): void {
    this.sync(false);
    const touched = this.classes.map((k) =>
      k.c.sequential
        ? Math.min(
            k.toSend + k.next,
            newlyDirtied(k.c, 0, POSTCOPY_TOUCH_MS / 1000, this.throttle, this.t / 1000),
          )
        : 0,
    );
    const first = touched.map((pages, cls) => ({ cls, pages })).filter((q) => q.pages > 0);
    const ahead = this.classes.map((k, cls) => ({ cls, pages: Math.max(0, k.toSend - touched[cls]!) }));
    const behind = this.classes.map((k, cls) => ({
      cls,
      pages: Math.max(0, k.next - Math.max(0, touched[cls]! - k.toSend)),
    }));
    this.sw = {
      kind: 'postcopy',
      why: 'post-copy',
      fixedMsLeft: this.switchFixedMs(),
      queue: [...first, ...ahead, { cls: -1, pages: this.zeroToSend }, ...behind].filter((q) => q.pages > 0),
      startedAt: this.t,
      missing: this.classes.map((k) => k.toSend + k.next),
      urgentLeft: first.length,
    };
  }

  /**
   * Writes per second the guest would make on pages the destination does not have yet, were it
   * never blocked: each class's write rate × the share of its pages still missing. A sequential
   * writer is not counted: QEMU's scan follows its faults, so it runs at the link's pace, slowed
   * rather than stopped (its first pages are the urgent queue entries).
   */
  private faultDemand(): number[] {
    const sw = this.sw!;
    return this.classes.map((k, i) =>
      k.c.sequential
        ? 0
        : (throttledRate(k.c, this.throttle) * activeShare(k.c, this.t / 1000, 0.001) * sw.missing![i]!) /
          Math.max(1, k.c.pages),
    );
  }

  /**
   * Post-copy page requests: a vCPU that touches a missing page blocks for one fault (faultMs:
   * round trip, the page, and the background bytes queued ahead of it) and QEMU sends requested
   * pages before its background stream (get_queued_page). Mean-field: a vCPU that would fault f
   * times a second runs 1/f between faults and waits L each, so it faults f/(1 + f·L) times a
   * second, on the classes in proportion to how often their writes miss. Returns the bytes used.
   */
  private faultIn(ms: number, rateBps: number, budget: number): number {
    const sw = this.sw!;
    const weights = this.faultDemand();
    const total = weights.reduce((a, b) => a + b, 0);
    if (total <= 0) return 0;
    const vcpus = this.o.params.vcpus;
    const perFaultS = faultMs(this.o.params, this.o.rttMs, rateBps) / 1000;
    const perVcpu = total / vcpus;
    const faults = Math.min(
      budget / this.fullPageBytes,
      ((vcpus * perVcpu) / (1 + perVcpu * perFaultS)) * (ms / 1000),
    );
    let used = 0;
    weights.forEach((w, i) => {
      const pages = Math.min(sw.missing![i]!, (faults * w) / total);
      if (pages <= 0) return;
      sw.missing![i]! -= pages;
      // The requested pages leave the background queue (from the back of the class's entries).
      let left = pages;
      for (let j = sw.queue.length - 1; j >= 0 && left > 0; j--) {
        const q = sw.queue[j]!;
        if (q.cls !== i) continue;
        const take = Math.min(q.pages, left);
        q.pages -= take;
        left -= take;
      }
      used += pages * this.fullPageBytes;
      this.normalSent += pages;
    });
    sw.queue = sw.queue.filter(
      (q, j) => q.pages > 1e-9 || (sw.urgentLeft !== undefined && j < sw.urgentLeft),
    );
    this.transferred += used;
    return used;
  }

  /** Whether the guest still stalls: its vCPUs spend more time waiting for faults than running (w·m·L > 1). */
  private stalled(rateBps: number): boolean {
    const perVcpu = this.faultDemand().reduce((a, b) => a + b, 0) / this.o.params.vcpus;
    return perVcpu * (faultMs(this.o.params, this.o.rttMs, rateBps) / 1000) > 1;
  }

  /** One step of a switch in progress at `rateBps`; returns how the migration ended, once it has. */
  stepSwitch(stepMs: number, rateBps: number): ModelEnd | undefined {
    const sw = this.sw!;
    const sub = sw.kind === 'postcopy' && sw.stallEndAt === undefined ? POSTCOPY_SUBSTEP_MS : stepMs;
    for (let done = 0; done < stepMs - 1e-9; done += sub) {
      const end = this.switchTick(Math.min(sub, stepMs - done), rateBps);
      if (end) return end;
    }
    return undefined;
  }

  private switchTick(ms: number, rateBps: number): ModelEnd | undefined {
    const sw = this.sw!;
    const fixed = Math.min(ms, sw.fixedMsLeft);
    sw.fixedMsLeft -= fixed;
    let budget = (rateBps * (ms - fixed)) / 1000;
    if (sw.kind === 'postcopy' && budget > 0) budget -= this.faultIn(ms - fixed, rateBps, budget);
    while (budget > 0 && sw.queue.length) {
      const q = sw.queue[0]!;
      const per = q.cls < 0 ? ZERO_PAGE_BYTES : this.fullPageBytes;
      const pages = Math.min(q.pages, budget / per);
      q.pages -= pages;
      budget -= pages * per;
      this.transferred += pages * per;
      if (q.cls < 0) this.zeroSent += pages;
      else this.normalSent += pages;
      if (sw.missing && q.cls >= 0) sw.missing[q.cls]! -= pages;
      if (q.pages <= 1e-9) {
        sw.queue.shift();
        if (sw.urgentLeft) sw.urgentLeft--;
      }
    }
    const unused = rateBps > 0 ? (budget / rateBps) * 1000 : 0;
    const now = this.t + ms - unused;
    if (sw.kind === 'postcopy' && sw.stallEndAt === undefined && sw.fixedMsLeft <= 0 && !sw.urgentLeft)
      if (sw.queue.length === 0 || !this.stalled(rateBps)) sw.stallEndAt = now;
    if (sw.fixedMsLeft > 0 || sw.queue.length > 0) {
      this.t += ms;
      return undefined;
    }
    this.t = now;
    return { status: 'completed', downtimeMs: this.switchDowntime(sw), why: sw.why };
  }

  private switchDowntime(sw: Switch): number {
    if (sw.kind === 'stop') return this.paused ? this.t - this.pausedAt : this.t - sw.startedAt;
    const stalled = (sw.stallEndAt ?? this.t) - sw.startedAt;
    const fixed = this.switchFixedMs();
    // A guest that stalls at all waits at least one fault's round trip.
    return stalled > fixed + 1e-6 ? stalled + this.o.rttMs + this.o.params.faultUs / 1000 : stalled;
  }
}
