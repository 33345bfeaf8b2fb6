// The QMP driver vs the libvirt driver on the same workload, in one run, reps interleaved:
// `npx tsx scripts/compare-drivers.ts [--reps N] [--policies frs,adaptive]`
// Writes docs/results-drivers/runs.json (every run, raw) and docs/results-drivers/README.md
// (medians, min–max, how it was run). Needs root and the lab's set-up (scripts/setup-host.sh).
//
// Per run, for both drivers alike: a fresh guest (random:200, 512 MiB, TCG) on the 1 Gbit lab
// link, budget 300 ms, deadline 60 s; the destination is left paused after completion, its RAM
// compared byte for byte with the source's, then resumed. The guest-felt stall is guestStall()
// over both consoles' heartbeats, the verification hold (destination paused for the compare)
// cut out, exactly as src/lab/lab.ts does for QMP runs (migrateLab does it for the QMP runs here).
// The decision → command latency is measured by wrapping the clients, not by editing src/:
// from the core deciding a switchover (onDecision) to the downtime-limit call returning
// (LibvirtClient.setMaxDowntime / QMP migrate-set-parameters).
import { execFileSync } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { MigrationResult, RunEvent } from '../src/core/result.js';
import { guestStall, type GuestStall } from '../src/lab/guest-stall.js';
import { Lab, migrateLab } from '../src/lab/lab.js';
import { LibvirtPair, type LibvirtLabGuest } from '../src/lab/libvirt-pair.js';
import { parseLink } from '../src/lab/link.js';
import { HEARTBEAT_PERIOD_MS, type SerialConsole } from '../src/lab/serial.js';
import { parseWorkload } from '../src/lab/workload.js';
import { LibvirtClient } from '../src/libvirt/index.js';
import type { LibvirtEvent } from '../src/libvirt/events.js';
import { LibvirtSession } from '../src/libvirt/libvirt-session.js';
import { RegionSampler } from '../src/migration/region-sampler.js';
import { resolvePolicy } from '../src/policy/index.js';

const ROOT = path.join(import.meta.dirname, '..');

const arg = (name: string, dflt: string) => {
  const i = process.argv.indexOf(name);
  return i >= 0 && process.argv[i + 1] ? process.argv[i + 1]! : dflt;
};
const OUT = path.resolve(arg('--out', path.join(ROOT, 'docs', 'results-drivers')));
const REPS = Number(arg('--reps', '3'));
const POLICIES = arg('--policies', 'frs,adaptive').split(',');
const WORKLOAD = 'random:200';
const RAM_MIB = 512;
const LINK = '1gbit';
const BUDGET_MS = 300;
const DEADLINE_MS = 60_000;
/** As src/lab/lab.ts: the window runs on this long after the end; the guest beats this long before `migrate`. */
const SETTLE_MS = 500;
const BASELINE_MS = 1000;

type Driver = 'qmp' | 'libvirt';

/** One switchover decision and the downtime-limit call that carried it out. */
interface CommandTiming {
  /** Core decided (onDecision) → the driver issued the call, ms. */
  decideToCallMs: number;
  /** The call's own round trip, ms. */
  callMs: number;
  /** Core decided → the call returned, ms: the decision → command latency. */
  decideToReturnMs: number;
  downtimeLimitMs: number;
}

interface RunRecord {
  seq: number;
  rep: number;
  driver: Driver;
  policy: string;
  startedAt: string;
  loadavgAtStart: string;
  outcome: string;
  reason: string;
  totalTimeMs: number;
  wallMs: number;
  qemuDowntimeMs: number;
  guestStallMs: number | null;
  guestStall: GuestStall | null;
  /** How the verification hold was cut out of the libvirt guest's timeline (see holdBasis below). */
  holdBasis?: string;
  holdMs?: number;
  /** The stall if the hold were taken to start at the source's job-completed event instead (libvirt only). */
  guestStallAltMs?: number | null;
  transferredBytes: number;
  linkBytes: number | null;
  passes: number;
  actionLatencyMs: number | null;
  controllerCpuPct: number;
  regionSource: string | null;
  switchoverCommands: CommandTiming[];
  differingPages: number | null;
  pagesCompared: number | null;
  guestCheckOk: boolean | null;
  heartbeatResumed: boolean | null;
  success: boolean;
  forcing: string[];
  /** performance.now() clock of this process: migrate issued, the controller saw the end, first forcing decision. */
  clock?: { startedAt: number; endedAt: number; firstForcingAt: number | null };
  /**
   * libvirt only, from libvirt's lifecycle events, ms after the first forcing decision: the source
   * guest stopped (suspended/migrated: stop-and-copy begins), the destination's Finish
   * (suspended/paused, as VIR_MIGRATE_PAUSED asks), the source's Confirm (stopped/migrated), and
   * the job-completed event.
   */
  libvirtPhases?: {
    sourceStoppedMs: number | null;
    destinationFinishMs: number | null;
    sourceConfirmMs: number | null;
    jobCompletedMs: number | null;
  };
  events?: { at: number; side: 'src' | 'dst'; kind: string; detail?: string }[];
  error?: string;
}

const loadavg = () => readFileSync('/proc/loadavg', 'utf8').trim();
const pgrepQemu = () => {
  try {
    return execFileSync('pgrep', ['-a', 'qemu-system'], { encoding: 'utf8' })
      .trim()
      .split('\n')
      .filter(Boolean);
  } catch {
    return [];
  }
};
const netns = () =>
  execFileSync('ip', ['netns'], { encoding: 'utf8' })
    .trim()
    .split('\n')
    .filter(Boolean)
    .map((l) => l.split(' ')[0]!);

/**
 * Records switchover decisions that produced a downtime-limit command (the core's 'decision'
 * event, then its 'command' event, in the same step) and times the call that carries each out.
 */
class SwitchoverClock {
  private candidate: number | undefined;
  /** performance.now() when the core first decided a forcing action (switchover, post-copy, pause). */
  firstForcingAt: number | undefined;
  private pending: { at: number; ms: number }[] = [];
  readonly timings: CommandTiming[] = [];
  onEvent = (e: RunEvent) => {
    if (e.type === 'decision' && ['switchover', 'postcopy', 'pause'].includes(e.decision.action.kind))
      this.firstForcingAt ??= performance.now();
    if (e.type === 'decision')
      this.candidate = e.decision.action.kind === 'switchover' ? performance.now() : undefined;
    if (e.type === 'command' && e.command.kind === 'setDowntimeLimit' && this.candidate !== undefined) {
      this.pending.push({ at: this.candidate, ms: e.command.downtimeLimitMs });
      this.candidate = undefined;
    }
  };
  /** Wraps one downtime-limit call (issued now). */
  async around<T>(ms: number, call: () => Promise<T>): Promise<T> {
    const i = this.pending.findIndex((p) => p.ms === ms);
    const decided = i >= 0 ? this.pending.splice(i, 1)[0] : undefined;
    const t0 = performance.now();
    const v = await call();
    if (decided) {
      const t1 = performance.now();
      this.timings.push({
        decideToCallMs: t0 - decided.at,
        callMs: t1 - t0,
        decideToReturnMs: t1 - decided.at,
        downtimeLimitMs: ms,
      });
    }
    return v;
  }
}

const forcingOf = (m: MigrationResult) =>
  m.decisions
    .filter((d) => d.action.kind !== 'continue')
    .map((d) => `p${d.pass} ${d.action.kind}: ${d.action.reason}`);

// ---- QMP driver: the lab as the bench runs it -------------------------------------------------

async function runQmp(seq: number, rep: number, policy: string): Promise<RunRecord> {
  const startedAt = new Date().toISOString();
  const loadavgAtStart = loadavg();
  const lab = await Lab.start({ workload: parseWorkload(WORKLOAD), ramMiB: RAM_MIB, link: parseLink(LINK) });
  try {
    const clock = new SwitchoverClock();
    const qmp = lab.source.qmp;
    const execute = qmp.execute.bind(qmp) as (...a: unknown[]) => Promise<unknown>;
    // The session keeps this client (opts.source): wrap its downtime-limit calls.
    (qmp as unknown as { execute: (...a: unknown[]) => Promise<unknown> }).execute = (...a: unknown[]) => {
      const [cmd, args] = a as [string, Record<string, unknown> | undefined];
      const limit = args?.['downtime-limit'];
      if (cmd === 'migrate-set-parameters' && typeof limit === 'number')
        return clock.around(limit, () => execute(...a));
      return execute(...a);
    };
    const r = await migrateLab(lab, {
      policy: resolvePolicy(policy),
      downtimeBudgetMs: BUDGET_MS,
      deadlineMs: DEADLINE_MS,
      onEvent: clock.onEvent,
    });
    const m = r.migration;
    const ram = r.verification?.ram;
    return {
      seq,
      rep,
      driver: 'qmp',
      policy,
      startedAt,
      loadavgAtStart,
      outcome: m.outcome,
      reason: m.reason,
      totalTimeMs: m.totalTimeMs,
      wallMs: m.wallMs,
      qemuDowntimeMs: m.qemuDowntimeMs,
      guestStallMs: r.guestDowntimeMs ?? null,
      guestStall: r.guestStall ?? null,
      transferredBytes: m.transferredBytes,
      linkBytes: r.linkBytes ?? null,
      passes: m.passes.length,
      actionLatencyMs: m.actionLatencyMs ?? null,
      controllerCpuPct: m.controllerCpuPct,
      regionSource: m.regionSource ?? null,
      switchoverCommands: clock.timings,
      differingPages: ram?.differingPages ?? null,
      pagesCompared: ram?.pagesCompared ?? null,
      guestCheckOk: r.verification?.guestCheck.ok ?? r.sourceCheck?.ok ?? null,
      heartbeatResumed: r.verification?.heartbeatResumed ?? null,
      success: r.success,
      forcing: forcingOf(m),
      clock: {
        startedAt: m.clock.startedAt,
        endedAt: m.clock.endedAt,
        firstForcingAt: clock.firstForcingAt ?? null,
      },
    };
  } finally {
    await lab.destroy();
  }
}

// ---- libvirt driver: the lab pair, the guest verified as test/integration/libvirt-controller does

/** Where the guest's RAM sits in its QEMU: the memfd mapping of the guest's size (the lab domain's backing). */
function memfdMapping(pid: number, bytes: number): { gpa: number; hva: number; length: number }[] {
  for (const line of readFileSync(`/proc/${pid}/maps`, 'utf8').split('\n')) {
    const m = /^([0-9a-f]+)-([0-9a-f]+) .* \/memfd:/.exec(line);
    if (!m) continue;
    const from = Number(BigInt(`0x${m[1]}`));
    const to = Number(BigInt(`0x${m[2]}`));
    if (to - from === bytes) return [{ gpa: 0, hva: from, length: bytes }];
  }
  throw new Error(`QEMU ${pid}: no memfd mapping of ${bytes} bytes`);
}

async function waitBeatAfter(consoles: SerialConsole[], t: number, timeoutMs: number): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  while (!consoles.some((c) => (c.heartbeats.at(-1)?.at ?? -Infinity) >= t) && performance.now() < deadline)
    await sleep(20);
}

async function runLibvirt(
  seq: number,
  rep: number,
  policy: string,
  pair: LibvirtPair,
  src: LibvirtClient,
  dst: LibvirtClient,
  clockRef: { current: SwitchoverClock | undefined },
): Promise<RunRecord> {
  const startedAt = new Date().toISOString();
  const loadavgAtStart = loadavg();
  const guest: LibvirtLabGuest = await pair.startGuest({
    workload: parseWorkload(WORKLOAD),
    ramMiB: RAM_MIB,
  });
  const events: NonNullable<RunRecord['events']> = [];
  const listen = (side: 'src' | 'dst') => (e: LibvirtEvent) => {
    if (e.domain !== guest.name) return;
    events.push({
      at: e.at,
      side,
      kind: e.kind === 'lifecycle' ? `${e.event}/${e.detail}` : e.kind,
      ...(e.kind === 'migration-iteration' ? { detail: String(e.iteration) } : {}),
    });
  };
  const onSrc = listen('src');
  const onDst = listen('dst');
  src.on('event', onSrc);
  dst.on('event', onDst);
  const clock = new SwitchoverClock();
  clockRef.current = clock;
  try {
    // As migrateLab: the guest's pace before `migrate` is the slowdown's baseline.
    const firstBeat = guest.sourceConsole.heartbeats[0]?.at;
    if (firstBeat !== undefined && firstBeat + BASELINE_MS > performance.now())
      await sleep(firstBeat + BASELINE_MS - performance.now());
    const tx0 = await pair.link.txBytes();
    const m = await new LibvirtSession({
      source: src,
      destination: dst,
      domain: guest.name,
      start: {
        destUri: pair.destination.uri,
        migrateUri: pair.migrateUri,
        listenAddress: pair.listenAddress,
        paused: true,
      },
      policy: resolvePolicy(policy),
      downtimeBudgetMs: BUDGET_MS,
      deadlineMs: DEADLINE_MS,
      resumeDestination: false,
      onEvent: clock.onEvent,
      // The same host-side region sampling the QMP lab gives its sessions (adaptive wants regions).
      regionSampler: async () =>
        new RegionSampler(guest.sourcePid, memfdMapping(guest.sourcePid, guest.ramBytes)),
    }).run();
    const sinceForcing = (side: 'src' | 'dst', kind: string) => {
      const e = events.find((x) => x.side === side && x.kind === kind && x.at >= m.clock.startedAt);
      return e && clock.firstForcingAt !== undefined ? e.at - clock.firstForcingAt : null;
    };
    const srcCompletedAt = events.find((e) => e.side === 'src' && e.kind === 'job-completed')?.at;
    const forcingAt = m.decisions.find((d) => ['switchover', 'postcopy', 'pause'].includes(d.action.kind));
    const precopyEnd = forcingAt
      ? Math.min(m.clock.startedAt + forcingAt.atMs, srcCompletedAt ?? m.clock.endedAt)
      : (srcCompletedAt ?? m.clock.endedAt);
    const base: Omit<
      RunRecord,
      | 'guestStallMs'
      | 'guestStall'
      | 'differingPages'
      | 'pagesCompared'
      | 'guestCheckOk'
      | 'heartbeatResumed'
      | 'success'
      | 'linkBytes'
    > = {
      seq,
      rep,
      driver: 'libvirt',
      policy,
      startedAt,
      loadavgAtStart,
      outcome: m.outcome,
      reason: m.reason,
      totalTimeMs: m.totalTimeMs,
      wallMs: m.wallMs,
      qemuDowntimeMs: m.qemuDowntimeMs,
      transferredBytes: m.transferredBytes,
      passes: m.passes.length,
      actionLatencyMs: m.actionLatencyMs ?? null,
      controllerCpuPct: m.controllerCpuPct,
      regionSource: m.regionSource ?? null,
      switchoverCommands: clock.timings,
      forcing: forcingOf(m),
      clock: {
        startedAt: m.clock.startedAt,
        endedAt: m.clock.endedAt,
        firstForcingAt: clock.firstForcingAt ?? null,
      },
      libvirtPhases: {
        sourceStoppedMs: sinceForcing('src', 'suspended/migrated'),
        destinationFinishMs: sinceForcing('dst', 'suspended/paused'),
        sourceConfirmMs: sinceForcing('src', 'stopped/migrated'),
        jobCompletedMs: sinceForcing('src', 'job-completed'),
      },
      events,
    };

    if (m.outcome !== 'completed' || m.guestRunsOn !== 'destination') {
      const after = performance.now();
      const window = { from: m.clock.startedAt, to: after + SETTLE_MS };
      await sleep(SETTLE_MS);
      await waitBeatAfter([guest.sourceConsole], window.to, 2000);
      const stall = guestStall({
        beats: guest.sourceConsole.heartbeats,
        periodMs: HEARTBEAT_PERIOD_MS,
        window,
        precopyEnd,
      });
      const check = await guest.sourceConsole
        .integrityCheck()
        .catch((e: Error) => ({ ok: false, line: e.message }));
      return {
        ...base,
        guestStallMs: stall.totalStallMs,
        guestStall: stall,
        linkBytes: (await pair.link.txBytes()) - tx0,
        differingPages: null,
        pagesCompared: null,
        guestCheckOk: check.ok,
        heartbeatResumed: null,
        success: false,
      };
    }

    // Completed: the destination is paused (VIR_MIGRATE_PAUSED). Compare, then resume through the
    // driver. The resume callback waits out the stall window before verifyOnDestination runs the
    // guest's integrity check (which pauses the workload), as migrateLab measures before it.
    let resumeAt = 0;
    let window = { from: m.clock.startedAt, to: 0 };
    const check = await guest.verifyOnDestination(await dst.qemuPid(guest.name), async () => {
      resumeAt = performance.now();
      await dst.resume(guest.name);
      window = { from: m.clock.startedAt, to: resumeAt + SETTLE_MS };
      const wait = window.to - performance.now();
      if (wait > 0) await sleep(wait);
      await waitBeatAfter([guest.destinationConsole!], window.to, 2000);
    });
    // The hold: from where libvirt would have resumed the destination (its Finish phase, which with
    // VIR_MIGRATE_PAUSED emits suspended/paused on the destination instead of resumed/migrated) to
    // our resume. Fallbacks, in order: the source's job-completed event, the session's end.
    const dstFinish = events.find(
      (e) => e.side === 'dst' && e.at >= m.clock.startedAt && /^(suspended|resumed)\//.test(e.kind),
    );
    const holdFrom = dstFinish?.at ?? srcCompletedAt ?? m.clock.endedAt;
    const holdBasis = dstFinish
      ? `destination ${dstFinish.kind} event`
      : srcCompletedAt
        ? 'source job-completed event'
        : 'session end';
    const beats = [...guest.sourceConsole.heartbeats, ...(guest.destinationConsole?.heartbeats ?? [])];
    const stallWith = (from: number) =>
      guestStall({
        beats,
        periodMs: HEARTBEAT_PERIOD_MS,
        window,
        exclude: [{ from: Math.min(from, resumeAt), to: resumeAt }],
        precopyEnd,
      });
    const stall = stallWith(holdFrom);
    const alt = srcCompletedAt !== undefined ? stallWith(srcCompletedAt).totalStallMs : null;
    return {
      ...base,
      guestStallMs: check.heartbeatResumed ? stall.totalStallMs : null,
      guestStall: stall,
      holdBasis,
      holdMs: resumeAt - Math.min(holdFrom, resumeAt),
      guestStallAltMs: alt,
      linkBytes: (await pair.link.txBytes()) - tx0,
      differingPages: check.ram.differingPages,
      pagesCompared: check.ram.pagesCompared,
      guestCheckOk: check.guestCheck.ok,
      heartbeatResumed: check.heartbeatResumed,
      success: check.ram.differingPages === 0 && check.guestCheck.ok && check.heartbeatResumed,
    };
  } finally {
    clockRef.current = undefined;
    src.off('event', onSrc);
    dst.off('event', onDst);
    await dst.destroyDomain(guest.name).catch(() => undefined);
    await src.destroyDomain(guest.name).catch(() => undefined);
    await guest.close();
  }
}

// ---- statistics and the write-up ---------------------------------------------------------------

function quantile(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  if (!s.length) return NaN;
  const i = (s.length - 1) * p;
  const lo = Math.floor(i);
  const hi = Math.ceil(i);
  return s[lo]! + (s[hi]! - s[lo]!) * (i - lo);
}
const median = (xs: number[]) => quantile(xs, 0.5);
/** Nearest-rank p95 (with few samples: the largest but one or the largest). */
const p95 = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.ceil(0.95 * s.length) - 1)] ?? NaN;
};

function cell(xs: (number | null | undefined)[], digits = 0, scale = 1): string {
  const v = xs.filter((x): x is number => typeof x === 'number' && Number.isFinite(x)).map((x) => x * scale);
  if (!v.length) return '–';
  const f = (x: number) => x.toFixed(digits);
  return v.length === 1 ? f(v[0]!) : `${f(median(v))} (${f(Math.min(...v))}–${f(Math.max(...v))})`;
}

function table(runs: RunRecord[]): string {
  const head =
    '| driver | policy | outcomes | total time s | QEMU downtime ms | guest-felt stall ms | longest silence ms | data MiB | passes | decision→action ms | decision→source stopped ms | controller CPU % | differing pages |';
  const rows = [head, '|' + ' --- |'.repeat(13)];
  for (const policy of POLICIES) {
    for (const driver of ['qmp', 'libvirt'] as Driver[]) {
      const rs = runs.filter((r) => r.driver === driver && r.policy === policy);
      if (!rs.length) continue;
      const outcomes = Object.entries(
        rs.reduce<Record<string, number>>(
          (a, r) => ((a[r.error ? 'error' : r.outcome] = (a[r.error ? 'error' : r.outcome] ?? 0) + 1), a),
          {},
        ),
      )
        .map(([k, n]) => `${n} ${k}`)
        .join(', ');
      const ok = rs.filter((r) => !r.error);
      rows.push(
        `| ${driver} | ${policy} | ${outcomes} | ${cell(
          ok.map((r) => r.totalTimeMs),
          1,
          1e-3,
        )} | ${cell(ok.map((r) => r.qemuDowntimeMs))} | ${cell(ok.map((r) => r.guestStallMs))} | ${cell(
          ok.map((r) => r.guestStall?.longestSilenceMs),
        )} | ${cell(
          ok.map((r) => r.transferredBytes),
          0,
          2 ** -20,
        )} | ${cell(ok.map((r) => r.passes))} | ${cell(ok.map((r) => r.actionLatencyMs))} | ${cell(
          ok.map((r) => (r.driver === 'qmp' ? r.actionLatencyMs : r.libvirtPhases?.sourceStoppedMs)),
        )} | ${cell(
          ok.map((r) => r.controllerCpuPct),
          1,
        )} | ${cell(ok.map((r) => r.differingPages))} |`,
      );
    }
  }
  return rows.join('\n');
}

function latencyLines(runs: RunRecord[]): string {
  const out: string[] = [];
  for (const driver of ['libvirt', 'qmp'] as Driver[]) {
    const t = runs.filter((r) => r.driver === driver).flatMap((r) => r.switchoverCommands);
    if (!t.length) {
      out.push(`- ${driver}: no switchover command timed`);
      continue;
    }
    const f = (xs: number[]) =>
      `median ${median(xs).toFixed(1)} ms, p95 ${p95(xs).toFixed(1)} ms, max ${Math.max(...xs).toFixed(1)} ms`;
    out.push(
      `- ${driver} (n=${t.length} switchover commands): decision → call returned ${f(t.map((x) => x.decideToReturnMs))}; ` +
        `of which decision → call issued ${f(t.map((x) => x.decideToCallMs))}, the call itself ${f(t.map((x) => x.callMs))}`,
    );
  }
  const lv = runs.filter((r) => r.driver === 'libvirt' && r.libvirtPhases && r.outcome === 'completed');
  const ph = (k: keyof NonNullable<RunRecord['libvirtPhases']>) => {
    const xs = lv.map((r) => r.libvirtPhases![k]).filter((x): x is number => x !== null);
    return xs.length
      ? `median ${median(xs).toFixed(0)} ms (${Math.min(...xs).toFixed(0)}–${Math.max(...xs).toFixed(0)})`
      : '–';
  };
  if (lv.length)
    out.push(
      `- libvirt, from its lifecycle events (n=${lv.length} completed runs), after the first forcing decision: ` +
        `source guest stopped (suspended/migrated, stop-and-copy begins) ${ph('sourceStoppedMs')}; ` +
        `destination Finish (suspended/paused) ${ph('destinationFinishMs')}; source Confirm (stopped/migrated) ${ph('sourceConfirmMs')}; ` +
        `job-completed ${ph('jobCompletedMs')}`,
    );
  return out.join('\n');
}

/**
 * The commit measured. Run from a `git archive` snapshot (no .git) while others edit the shared
 * work tree: say which commit it is in COMPARE_COMMIT.
 */
function commit(): string {
  if (process.env.COMPARE_COMMIT) return `${process.env.COMPARE_COMMIT} (git archive snapshot)`;
  const head = execFileSync('git', ['rev-parse', 'HEAD'], { cwd: ROOT, encoding: 'utf8' }).trim();
  const dirty = execFileSync('git', ['status', '--porcelain', '--', 'src'], {
    cwd: ROOT,
    encoding: 'utf8',
  }).trim();
  return dirty ? `${head} + uncommitted changes in src/` : head;
}

async function main(): Promise<void> {
  mkdirSync(OUT, { recursive: true });
  const before = { load: loadavg(), qemu: pgrepQemu(), netns: netns(), at: new Date().toISOString() };
  console.log(
    `start ${before.at}; load ${before.load}; ${before.qemu.length} qemu, ${before.netns.length} netns`,
  );
  const runs: RunRecord[] = [];
  let pair: LibvirtPair | undefined;
  let src: LibvirtClient | undefined;
  let dst: LibvirtClient | undefined;
  const pairPids: number[] = [];
  const write = (after?: object) =>
    writeFileSync(
      path.join(OUT, 'runs.json'),
      JSON.stringify(
        {
          commit: commit(),
          config: {
            workload: WORKLOAD,
            ramMiB: RAM_MIB,
            link: LINK,
            budgetMs: BUDGET_MS,
            deadlineMs: DEADLINE_MS,
            reps: REPS,
            policies: POLICIES,
          },
          host: { cpus: os.cpus().length, node: process.version },
          before,
          ...(after ? { after } : {}),
          runs,
        },
        null,
        2,
      ) + '\n',
    );
  try {
    pair = await LibvirtPair.start({ link: parseLink(LINK), log: (l) => console.log(l) });
    pairPids.push(pair.source.pid, pair.destination.pid);
    src = await LibvirtClient.open(pair.source.uri);
    dst = await LibvirtClient.open(pair.destination.uri);
    const clockRef: { current: SwitchoverClock | undefined } = { current: undefined };
    // The session calls src.setMaxDowntime: wrap it on this client.
    const setMaxDowntime = src.setMaxDowntime.bind(src);
    src.setMaxDowntime = (name: string, ms: number) =>
      clockRef.current
        ? clockRef.current.around(ms, () => setMaxDowntime(name, ms))
        : setMaxDowntime(name, ms);

    let seq = 0;
    let stopping = false;
    const stop = (sig: string) => {
      console.log(`${sig}: stopping after the current run, then cleaning up`);
      stopping = true;
    };
    process.on('SIGINT', () => stop('SIGINT'));
    process.on('SIGTERM', () => stop('SIGTERM'));
    for (let rep = 1; rep <= REPS && !stopping; rep++) {
      for (const policy of POLICIES) {
        if (stopping) break;
        // Alternate which driver goes first, so neither always follows the other.
        const order: Driver[] =
          (rep + POLICIES.indexOf(policy)) % 2 ? ['qmp', 'libvirt'] : ['libvirt', 'qmp'];
        for (const driver of order) {
          if (stopping) break;
          seq++;
          const label = `#${seq} rep ${rep} ${driver} ${policy}`;
          console.log(`${label}: start (load ${loadavg()})`);
          let r: RunRecord;
          try {
            r =
              driver === 'qmp'
                ? await runQmp(seq, rep, policy)
                : await runLibvirt(seq, rep, policy, pair, src, dst, clockRef);
          } catch (err) {
            console.log(`${label}: ERROR ${(err as Error).stack ?? err}`);
            r = {
              seq,
              rep,
              driver,
              policy,
              startedAt: new Date().toISOString(),
              loadavgAtStart: loadavg(),
              outcome: 'error',
              reason: (err as Error).message,
              error: (err as Error).message,
            } as RunRecord;
          }
          if (driver === 'libvirt') pairPids.push(...pair.source.qemuPids(), ...pair.destination.qemuPids());
          runs.push(r);
          write();
          console.log(
            `${label}: ${r.outcome}, total ${r.totalTimeMs} ms, QEMU downtime ${r.qemuDowntimeMs} ms, ` +
              `stall ${r.guestStallMs?.toFixed?.(0)} ms, ${((r.transferredBytes ?? 0) / 2 ** 20).toFixed(0)} MiB, ` +
              `${r.passes} passes, action ${r.actionLatencyMs?.toFixed?.(0)} ms, cpu ${r.controllerCpuPct?.toFixed?.(1)} %, ` +
              `switchover cmd ${(r.switchoverCommands ?? []).map((c) => c.decideToReturnMs.toFixed(1)).join('/')} ms, ` +
              `differing ${r.differingPages}, ${r.holdBasis ?? ''}`,
          );
        }
      }
    }
  } finally {
    await src?.close().catch(() => undefined);
    await dst?.close().catch(() => undefined);
    await pair?.destroy().catch(() => undefined);
  }
  await sleep(1000);
  const after = { load: loadavg(), qemu: pgrepQemu(), netns: netns(), at: new Date().toISOString() };
  const mine = pair ? (s: string) => s.includes(pair!.id) : () => false;
  const leftPids = pairPids.filter((p) => {
    try {
      return !/^\d+ \(.*\) Z/.test(readFileSync(`/proc/${p}/stat`, 'utf8'));
    } catch {
      return false;
    }
  });
  const leftover = {
    pairPids: leftPids,
    pairNetns: after.netns.filter(mine),
    newQemu: after.qemu.filter((l) => !before.qemu.includes(l)),
    newNetns: after.netns.filter((n) => !before.netns.includes(n)),
  };
  write({ ...after, leftover });
  console.log(`end ${after.at}; load ${after.load}; leftovers ${JSON.stringify(leftover)}`);

  writeReport(JSON.parse(readFileSync(path.join(OUT, 'runs.json'), 'utf8')) as RunsFile);
}

interface RunsFile {
  commit: string;
  before: { load: string; at: string };
  after: { load: string; at: string; leftover: object };
  runs: RunRecord[];
}

/** README.md from runs.json (also alone: `--report-only` rewrites it from the runs.json there). */
function writeReport(data: RunsFile): void {
  const { runs, before, after } = data;
  const leftover = after.leftover;
  const minutes = ((Date.parse(after.at) - Date.parse(before.at)) / 60_000).toFixed(1);
  const readme = `# QMP driver vs libvirt driver: the same workload, one run

For the closing note of issue 14 ("Numbers for the closing note"). Produced by
\`npx tsx scripts/compare-drivers.ts\` (raw runs: [runs.json](runs.json)).

- commit ${data.commit}, ${before.at} → ${after.at} (${minutes} min)
- ${WORKLOAD} on a ${RAM_MIB} MiB TCG guest, lab link ${LINK}, budget ${BUDGET_MS} ms, deadline ${DEADLINE_MS / 1000} s;
  policies ${POLICIES.join(', ')}, ${REPS} reps each per driver, interleaved (rep by rep, policy by policy,
  alternating which driver goes first); a fresh guest every run (QMP: a fresh \`Lab\`; libvirt: a
  fresh domain on one \`LibvirtPair\` kept for the whole run)
- host: ${os.cpus().length} CPUs shared with other engineers' tests; load average before \`${before.load}\`,
  after \`${after.load}\` (per-run load in runs.json, \`loadavgAtStart\`)

## Medians (min–max)

${table(runs)}

Columns: total time = QEMU's total-time; QEMU downtime = QEMU's downtime; guest-felt stall =
guestStall() over the heartbeats of both consoles (src/lab/guest-stall.ts), the time the
destination was held paused for the RAM compare cut out; data = bytes QEMU transferred;
longest silence = the longest gap between two heartbeats in the window (the switchover itself);
decision→action = \`result.actionLatencyMs\` (first forcing decision → the driver seeing the job
leave \`active\`: for QMP the \`device\` status event, for libvirt — which reports no \`device\`
status — the job's completion, after libvirt's Finish and Confirm phases);
decision→source stopped = for QMP the same as decision→action; for libvirt the first forcing decision
(\`onEvent\`) → the source's \`suspended/migrated\` lifecycle event (QEMU stops the guest for the
stop-and-copy), the comparable number;
controller CPU = \`result.controllerCpuPct\` (this process's CPU ÷ wall time, % of one core — the
process also reads the guest consoles); differing pages = byte-for-byte compare of source and
destination RAM after completion.

## Decision → command latency (switchover)

Time from the core deciding a switchover (\`onDecision\`) to the downtime-limit call returning —
libvirt: \`LibvirtClient.setMaxDowntime\` (virDomainMigrateSetMaxDowntime over libvirt's RPC);
QMP: \`migrate-set-parameters\` — measured by wrapping the clients in the script:

${latencyLines(runs)}

## How the two drivers were measured alike

- QMP runs: \`Lab.start\` + \`migrateLab\` as the bench does; the stall is what migrateLab computes.
- libvirt runs: \`LibvirtPair.startGuest\` + \`LibvirtSession\` (destination left paused), then
  \`guest.verifyOnDestination\`. The stall is computed as migrateLab does (same window: from
  \`migrate\` to resume + ${SETTLE_MS} ms; same baseline wait of ${BASELINE_MS} ms of beats before
  \`migrate\`), over \`guest.sourceConsole\` and the destination console. The held-paused interval
  cut out runs from the destination's Finish (libvirt's \`suspended/paused\` lifecycle event on the
  destination, where without VIR_MIGRATE_PAUSED it would have resumed the guest) to our resume
  (\`holdBasis\` per run); \`guestStallAltMs\` is the same stall with the hold taken from the
  source's job-completed event instead.
- Both drivers got the same host-side region sampler for adaptive (RegionSampler over
  /proc/PID/mem; for the libvirt guest, its memfd mapping found in /proc/PID/maps): the
  \`kvmigrate migrate --libvirt\` CLI wires no region source, so through the CLI adaptive would decide
  without regions.

## Clean-up check

Leftovers after the run (pair daemons and QEMUs alive, pair netns; new qemu-system processes or
netns not present before — other engineers' labs come and go, so these two lists are only a hint):
\`${JSON.stringify(leftover)}\`
`;
  writeFileSync(path.join(OUT, 'README.md'), readme);
  console.log('\n' + table(runs) + '\n\n' + latencyLines(runs));
}

if (process.argv.includes('--report-only'))
  writeReport(JSON.parse(readFileSync(path.join(OUT, 'runs.json'), 'utf8')) as RunsFile);
else await main();
