import { BASELINE_MS } from '../lab/lab.js';
import { HEARTBEAT_PERIOD_MS } from '../lab/serial.js';
import { cellOf, parseBenchCell } from './config.js';
import { hostEnvironment, referenceResults, type Results, type RunRecord } from './results.js';
import { quantile } from './stats.js';
import { resolvePolicy } from '../policy/index.js';
import { startedAt } from '../sim/model.js';
import type { ModelParams } from '../sim/params.js';
import { simulate } from '../sim/simulate.js';
import { linkBps, simClasses, type SweepOptions, type SweepRun } from '../sim/sweep.js';

const MiB = 2 ** 20;

// The simulator's runs in the benchmark's results format, and its validation against a real bench:
// bench reads the simulator (the simulator never reads the bench).

/** The sweep in the benchmark's results format, so `report` renders it like a bench run. */
export function sweepResults(o: SweepOptions, runs: SweepRun[]): Results {
  const multi = o.ramMiB.length > 1 || o.links.length > 1;
  const name = (r: SweepRun) => (multi ? `${r.workload}@${r.ramMiB}MiB/${r.link}` : r.workload);
  const relaxed = runs
    .filter((r) => r.policyName === 'relaxed')
    .map((r) => r.policyConfig.downtimeLimitMs as number);
  return {
    version: 1,
    createdAt: new Date().toISOString(),
    environment: hostEnvironment('simulated', 'sim'),
    matrix: {
      workloads: [...new Set(runs.map(name))],
      policies: o.policies,
      ramMiB: o.ramMiB[0]!,
      link: o.links.join(','),
      reps: 1,
      downtimeBudgetMs: o.downtimeBudgetMs,
      deadlineS: o.deadlineS,
      postcopyPermitted: Boolean(o.postcopyPermitted),
    },
    relaxedLimitMs: relaxed.length ? Math.max(...relaxed) : null,
    runs: runs.map((r): RunRecord => {
      const s = r.result;
      const ok = s.outcome === 'completed';
      return {
        key: `sim|${name(r)}|${r.policy}`,
        workload: name(r),
        policy: r.policyName === 'relaxed' ? 'relaxed(L*)' : r.policy,
        policyName: r.policyName,
        policyConfig: r.policyConfig,
        rep: 0,
        role: 'matrix',
        startedAt: new Date().toISOString(),
        success: ok,
        sloSuccess: ok && s.downtimeMs <= o.downtimeBudgetMs,
        outcome: s.outcome,
        reason: s.reason,
        totalTimeMs: s.totalTimeMs,
        wallMs: s.totalTimeMs,
        qemuDowntimeMs: s.postcopy ? 0 : s.downtimeMs,
        guestDowntimeMs: ok ? s.downtimeMs : null,
        transferredBytes: s.transferredBytes,
        linkBytes: null,
        passes: s.passes.length,
        differingPages: null,
        guestCheckOk: null,
        controllerCpuPct: 0,
        actionLatencyMs: null,
        predictedDowntimeMs: null,
        predictedTotalMs: null,
        predictedBytes: null,
        passTimeline: s.passes,
        decisions: s.decisions.map((d) => ({
          atMs: d.atMs,
          pass: d.pass,
          kind: d.action.kind,
          reason: d.action.reason,
        })),
      };
    }),
  };
}

export interface ValidationRow {
  workload: string;
  policy: string;
  realRuns: number;
  real: { totalMs: number; downtimeMs: number; bytes: number };
  sim: { outcome: string; totalMs: number; downtimeMs: number; bytes: number };
  error: { total: number; downtime: number; bytes: number };
  /** A calibration cell (validation benches): the streams' limit is measured on it, so it checks nothing. */
  calibration?: boolean;
}

/** A cell where no real run succeeded: does the simulator also not complete? */
export interface OutcomeRow {
  workload: string;
  policy: string;
  realRuns: number;
  realOutcomes: string[];
  simOutcome: string;
}

/**
 * Two policies on one workload whose real guest downtimes differ by more than the noise: their
 * runs' spread, and never less than two heartbeat periods (the stall is measured in 50 ms beats).
 */
export interface RankingCheck {
  workload: string;
  better: string;
  worse: string;
  /** Real medians, ms, and the larger of the two policies' spreads (max − min over the runs). */
  realMs: [number, number];
  noiseMs: number;
  simMs: [number, number];
  agrees: boolean;
}

export interface Validation {
  rows: ValidationRow[];
  rankings: { workload: string; real: string[]; sim: string[] }[];
  outcomes: OutcomeRow[];
  rankingChecks: RankingCheck[];
  /** The streams' limit the simulation used, bytes/s per channel count (validation benches). */
  streamCaps: Record<number, number>;
}

/**
 * What this lab's migration streams carry together at most, bytes/s, by channel count: measured
 * on a guest that barely rewrites its data, over a 25 Gbit link that none of them fills (TCG on 2 cores: the sending
 * and receiving threads run out of CPU first). Used for a validation bench whose results carry no
 * calibration cells of their own (its post-copy half); docs/results-validation/README.md shows
 * where the numbers come from, and a unit test checks them against the committed calibration.
 */
export const LAB_STREAM_CAPS: Record<number, number> = { 1: 501e6, 4: 1157e6 };
/**
 * What each multifd channel beyond the first adds to the lab's stop-and-copy: the validation bench
 * measured 4 channels a median 43 ms (23–57) longer than one stream on the same workloads.
 */
export const LAB_SWITCH_MS_PER_EXTRA_CHANNEL = 14;
/**
 * How long the lab's guest program has been writing when the migration starts, s: the lab waits
 * BASELINE_MS after the first heartbeat, which comes one heartbeat period after the program starts
 * its loop. A bursty guest is that far into its cycle (burst:200:1000:2500: just into its quiet phase).
 */
export const LAB_WORKLOAD_START_S = (BASELINE_MS + HEARTBEAT_PERIOD_MS) / 1000;

/**
 * A validation bench: its workloads are cells with their own RAM, link and streams
 * (`W@RAM/LINK/Nch`), or the whole bench names its streams (config.multifdChannels).
 */
export function isCellBench(real: Results): boolean {
  return (
    real.config?.multifdChannels !== undefined ||
    real.matrix.workloads.some((w) => parseBenchCell(w).workload !== w)
  );
}

/** The RAM, link and streams a workload of this bench ran on. */
function runCell(workload: string, real: Results) {
  return cellOf(workload, { ...real.matrix, multifdChannels: real.config?.multifdChannels });
}

/** A calibration cell: a link of ≥ 10 Gbit, which no stream of the lab fills. */
export function isCalibrationCell(workload: string, real: Results): boolean {
  const { bps } = linkBps(runCell(workload, real).link);
  return isCellBench(real) && bps >= 1.25e9;
}

/**
 * The streams' limit, bytes/s per channel count, from the calibration cells: per run, the bytes of
 * every pass over their time (the bulk pass alone lasts ~0.1–0.2 s over 4 channels and QEMU may
 * cut it early), then the median over the cell's runs; channel counts without one keep
 * LAB_STREAM_CAPS.
 */
export function streamCaps(real: Results): Record<number, number> {
  const caps: Record<number, number> = { ...LAB_STREAM_CAPS };
  const byChannels = new Map<number, number[]>();
  for (const r of referenceResults(real).runs) {
    if (!r.success || !isCalibrationCell(r.workload, real)) continue;
    const bytes = r.passTimeline.reduce((a, p) => a + p.bytesSent, 0);
    const ms = r.passTimeline.reduce((a, p) => a + (p.endMs - p.startMs), 0);
    if (bytes <= 0 || ms <= 0) continue;
    const ch = runCell(r.workload, real).channels;
    byChannels.set(ch, [...(byChannels.get(ch) ?? []), (bytes / ms) * 1000]);
  }
  for (const [ch, xs] of byChannels) caps[ch] = quantile(xs, 0.5);
  return caps;
}

/**
 * The simulator against a real bench run: for each workload × policy of its matrix, the same
 * policy and configuration simulated on the same RAM, link, budget and deadline, against the
 * median of the real successful runs. A validation bench (cell workloads) also simulates every
 * ladder rung and oracle candidate (each a fixed policy), each cell on its own RAM, link and
 * streams, with the streams' limit measured on its calibration cells (streamCaps).
 */
export function validate(real: Results): Validation {
  const rows: ValidationRow[] = [];
  const outcomes: OutcomeRow[] = [];
  const cellBench = isCellBench(real);
  const caps = cellBench ? streamCaps(real) : {};
  // One driver's runs: with several, the reference driver's (the others are in the report's drivers section).
  const matrix = referenceResults(real).runs.filter((r) => cellBench || r.role === 'matrix');
  const cells = [...new Set(matrix.map((r) => `${r.workload}\u0000${r.policy}`))];
  const runsOf = (workload: string, policy: string) =>
    matrix.filter((r) => r.workload === workload && r.policy === policy && r.success);
  for (const cell of cells) {
    const [workload, policyLabel] = cell.split('\u0000') as [string, string];
    const all = matrix.filter((r) => r.workload === workload && r.policy === policyLabel);
    const rs = runsOf(workload, policyLabel);
    if (rs.length === 0 && !cellBench) continue;
    const first = rs[0] ?? all[0]!;
    const policy = resolvePolicy(first.policyName, first.policyConfig);
    const c = runCell(workload, real);
    const { bps, rttMs } = linkBps(c.link);
    const cap = caps[c.channels];
    const params: Partial<ModelParams> | undefined = cellBench
      ? {
          channels: c.channels,
          switchMsPerExtraChannel: LAB_SWITCH_MS_PER_EXTRA_CHANNEL,
          ...(cap !== undefined ? { channelBps: cap / c.channels } : {}),
        }
      : undefined;
    const s = simulate({
      ramBytes: c.ramMiB * MiB,
      linkBps: bps,
      rttMs,
      classes: startedAt(simClasses(c.workload), LAB_WORKLOAD_START_S),
      policy,
      downtimeBudgetMs: real.matrix.downtimeBudgetMs,
      deadlineMs: real.matrix.deadlineS * 1000,
      postcopyPermitted: real.matrix.postcopyPermitted,
      ...(params ? { params } : {}),
    });
    if (rs.length === 0) {
      outcomes.push({
        workload,
        policy: policyLabel,
        realRuns: all.length,
        realOutcomes: all.map((r) => r.outcome),
        simOutcome: s.outcome,
      });
      continue;
    }
    const med = (f: (r: RunRecord) => number | null) =>
      quantile(
        rs.map(f).filter((x): x is number => x !== null),
        0.5,
      );
    const realCell = {
      totalMs: med((r) => r.totalTimeMs),
      downtimeMs: med((r) => r.guestDowntimeMs),
      bytes: med((r) => r.transferredBytes),
    };
    const e = (simV: number, realV: number) => (s.outcome === 'completed' ? (simV - realV) / realV : NaN);
    rows.push({
      workload,
      policy: policyLabel,
      realRuns: rs.length,
      real: realCell,
      sim: {
        outcome: s.outcome,
        totalMs: s.totalTimeMs,
        downtimeMs: s.downtimeMs,
        bytes: s.transferredBytes,
      },
      error: {
        total: e(s.totalTimeMs, realCell.totalMs),
        downtime: e(s.downtimeMs, realCell.downtimeMs),
        bytes: e(s.transferredBytes, realCell.bytes),
      },
      ...(cellBench && isCalibrationCell(workload, real) ? { calibration: true } : {}),
    });
  }
  // Policy ranking per workload by guest downtime, real vs simulated.
  const rankings = [...new Set(rows.map((r) => r.workload))].map((workload) => {
    const ws = rows.filter((r) => r.workload === workload);
    const order = (f: (r: ValidationRow) => number) =>
      [...ws].sort((a, b) => f(a) - f(b)).map((r) => r.policy);
    return {
      workload,
      real: order((r) => r.real.downtimeMs),
      sim: order((r) => (r.sim.outcome === 'completed' ? r.sim.downtimeMs : Infinity)),
    };
  });
  return { rows, rankings, outcomes, rankingChecks: rankingChecks(rows, runsOf), streamCaps: caps };
}

/**
 * Pairs of policies on a workload whose real guest downtimes differ by more than the noise (the
 * larger spread of their runs, at least two heartbeat periods): does the simulator put them in the
 * same order?
 */
function rankingChecks(
  rows: ValidationRow[],
  runsOf: (workload: string, policy: string) => RunRecord[],
): RankingCheck[] {
  const spread = (w: string, p: string) => {
    const xs = runsOf(w, p)
      .map((r) => r.guestDowntimeMs)
      .filter((x): x is number => x !== null);
    return xs.length ? Math.max(...xs) - Math.min(...xs) : 0;
  };
  const simMs = (r: ValidationRow) => (r.sim.outcome === 'completed' ? r.sim.downtimeMs : Infinity);
  const out: RankingCheck[] = [];
  for (const workload of [...new Set(rows.map((r) => r.workload))]) {
    const ws = rows.filter((r) => r.workload === workload);
    for (const [i, a] of ws.entries())
      for (const b of ws.slice(i + 1)) {
        const [lo, hi] = a.real.downtimeMs <= b.real.downtimeMs ? [a, b] : [b, a];
        const noiseMs = Math.max(
          spread(workload, a.policy),
          spread(workload, b.policy),
          2 * HEARTBEAT_PERIOD_MS,
        );
        if (hi.real.downtimeMs - lo.real.downtimeMs <= noiseMs) continue;
        out.push({
          workload,
          better: lo.policy,
          worse: hi.policy,
          realMs: [lo.real.downtimeMs, hi.real.downtimeMs],
          noiseMs,
          simMs: [simMs(lo), simMs(hi)],
          agrees: simMs(lo) < simMs(hi),
        });
      }
  }
  return out;
}

export function validationTable(v: Validation): string {
  const pct = (x: number) =>
    Number.isFinite(x) ? `${x >= 0 ? '+' : '−'}${Math.abs(Math.round(x * 100))}%` : 'n/a';
  const lines = [
    '| workload | policy | real runs | total s real / sim | error | guest downtime ms real / sim | error | MiB real / sim | error |',
    '|---|---|---:|---:|---:|---:|---:|---:|---:|',
    ...v.rows.map(
      (r) =>
        `| ${r.workload}${r.calibration ? ' (calibration)' : ''} | ${r.policy} | ${r.realRuns} | ${(r.real.totalMs / 1000).toFixed(2)} / ${r.sim.outcome === 'completed' ? (r.sim.totalMs / 1000).toFixed(2) : r.sim.outcome} | ${pct(r.error.total)} | ${r.real.downtimeMs.toFixed(0)} / ${r.sim.outcome === 'completed' ? r.sim.downtimeMs.toFixed(0) : '-'} | ${pct(r.error.downtime)} | ${(r.real.bytes / MiB).toFixed(0)} / ${(r.sim.bytes / MiB).toFixed(0)} | ${pct(r.error.bytes)} |`,
    ),
    '',
    ...v.rankings.map(
      (k) =>
        `${k.workload}: ranking by guest downtime — real ${k.real.join(' < ')}; sim ${k.sim.join(' < ')}${k.real.join() === k.sim.join() ? ' (same)' : ' (differs)'}`,
    ),
  ];
  if (v.outcomes.length)
    lines.push(
      '',
      'No real run succeeded:',
      ...v.outcomes.map(
        (o) =>
          `- ${o.workload} × ${o.policy}: real ${o.realOutcomes.join(', ')}; sim ${o.simOutcome}${o.simOutcome === 'completed' ? ' (differs)' : ' (same)'}`,
      ),
    );
  if (v.rankingChecks.length) {
    const agree = v.rankingChecks.filter((c) => c.agrees).length;
    lines.push(
      '',
      `Pairs whose real guest downtimes differ by more than their runs' spread: the simulator orders ${agree} of ${v.rankingChecks.length} the same.`,
      ...v.rankingChecks
        .filter((c) => !c.agrees)
        .map(
          (c) =>
            `- differs: ${c.workload}: real ${c.better} ${c.realMs[0].toFixed(0)} < ${c.worse} ${c.realMs[1].toFixed(0)} ms (spread ${c.noiseMs.toFixed(0)}); sim ${c.simMs[0].toFixed(0)} vs ${c.simMs[1].toFixed(0)}`,
        ),
    );
  }
  const checked = v.rows.filter((r) => !r.calibration);
  const abs = (f: (r: ValidationRow) => number) => {
    const xs = checked.map(f).filter(Number.isFinite).map(Math.abs);
    return xs.length ? pct(quantile(xs, 0.5)) : 'n/a';
  };
  lines.push(
    '',
    `median |error|: total ${abs((r) => r.error.total)}, downtime ${abs((r) => r.error.downtime)}, data ${abs((r) => r.error.bytes)}`,
  );
  if (Object.keys(v.streamCaps).length) {
    const within = (f: (r: ValidationRow) => number) => checked.filter((r) => Math.abs(f(r)) <= 0.1).length;
    lines.push(
      `within 10%: total ${within((r) => r.error.total)} of ${checked.length} cells, downtime ${within((r) => r.error.downtime)} of ${checked.length}`,
      `streams' limit used: ${Object.entries(v.streamCaps)
        .map(([ch, bps]) => `${ch} channel(s) ${(bps / 1e6).toFixed(0)} MB/s`)
        .join(', ')}`,
    );
  }
  return lines.join('\n');
}
