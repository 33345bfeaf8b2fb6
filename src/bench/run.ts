import { existsSync, mkdirSync } from 'node:fs';
import { writeFileAtomic } from '../util/fs.js';
import path from 'node:path';
import { isDeepStrictEqual } from 'node:util';
import { Lab, migrateLab, type LabMigrationResult } from '../lab/lab.js';
import { formatLink, parseLink } from '../lab/link.js';
import { parseLabWorkload } from '../util/specs.js';
import { checkPolicyName, resolvePolicy } from '../policy/index.js';
import { RELAXED_LADDER } from '../policy/relaxed.js';
import { probeQemuVersion } from '../qemu/index.js';
import { UsageError } from '../util/errors.js';
import { summaryConfig, type BenchConfig } from './config.js';
import { relaxedLimit } from './oracle.js';
import { assertPublishable, gitProvenance, type Provenance } from './provenance.js';
import { hostEnvironment, readResults, type Results, type RunRecord } from './results.js';
import { writeReports } from './report.js';
import { benchSchedule, benchUnits, keepWholeReps, type PlannedRun } from './schedule.js';
import { quantile } from './stats.js';

/** The study's ladder for relaxed(L*), ms (defined with the shared ladder search in src/policy/relaxed.ts). */
export { RELAXED_LADDER };

/**
 * The lowest ladder rung worth trying: 0.9 × (dirty set ÷ bandwidth) from stock's passes. (The
 * bench now runs every rung of a fixed ladder on every rep; kept for what reads stock's need.)
 */
export function ladderStart(stockRuns: RunRecord[]): number {
  const needs = stockRuns.flatMap((r) => {
    // Between the bulk pass and the last one (closed at the cancel, with nothing left dirty).
    const later = r.passTimeline.slice(1, -1).filter((p) => p.endMs - p.startMs >= 50 && p.bandwidthBps > 0);
    return later.map((p) => (p.dirtyAtEndBytes / p.bandwidthBps) * 1000 * 0.9);
  });
  if (needs.length === 0) return RELAXED_LADDER[0]!;
  const need = quantile(needs, 0.5);
  return [...RELAXED_LADDER].reverse().find((l) => l <= need) ?? RELAXED_LADDER[0]!;
}

/**
 * The default ladder: the study's rungs up to the first one long enough to send all of RAM in one
 * stop on this link (higher rungs cannot behave differently).
 */
export function defaultLadder(ramMiB: number, link: string): number[] {
  const rate = parseLink(link).rateMbit;
  if (rate === undefined) return [...RELAXED_LADDER];
  const allOfRamMs = ((ramMiB * 2 ** 20 * 8) / (rate * 1e6)) * 1000;
  const top = RELAXED_LADDER.find((l) => l >= allOfRamMs) ?? RELAXED_LADDER.at(-1)!;
  return RELAXED_LADDER.filter((l) => l <= top);
}

/** Oracle candidates k = 1…K by default. */
export const DEFAULT_ORACLE_MAX_PASS = 4;

export interface BenchOptions {
  workloads: string[];
  /** Policy names; `relaxed` means relaxed(L*), `oracle` the best fixed choice in hindsight. */
  policies: string[];
  ramMiB: number;
  link: string;
  reps: number;
  downtimeBudgetMs: number;
  deadlineS: number;
  out: string;
  resume?: boolean;
  tap?: boolean;
  /** Let the policies that can post-copy (mp, adaptive, nova, kubevirt) do so. */
  postcopyPermitted?: boolean;
  /** The workloads the summary's geometric means run over (default: all of them), fixed before the run. */
  summaryWorkloads?: string[];
  /** relaxed(L*)'s rungs, ms (default: defaultLadder). */
  ladder?: number[];
  /** The oracle's candidates run k = 1…K (default 4). */
  oracleMaxPass?: number;
  signal?: AbortSignal;
  log?: (line: string) => void;
}

/** Checks names before anything runs. */
export function validateBench(opts: BenchOptions): void {
  for (const w of opts.workloads) parseLabWorkload(w);
  parseLink(opts.link);
  for (const p of opts.policies) checkPolicyName(p, ['oracle']);
  if (opts.workloads.length === 0 || opts.policies.length === 0)
    throw new UsageError('name at least one workload and one policy');
  summaryConfig(opts.workloads, opts.summaryWorkloads);
}

/** Bench options from a committed configuration (BENCH_CONFIGS), e.g. for `bench --config NAME`. */
export function optionsFromConfig(
  c: BenchConfig,
  rest: Pick<BenchOptions, 'out'> & Partial<BenchOptions>,
): BenchOptions {
  return {
    workloads: [...c.workloads],
    policies: [...c.policies],
    ramMiB: c.ramMiB,
    link: c.link,
    reps: c.reps,
    downtimeBudgetMs: c.downtimeBudgetMs,
    deadlineS: c.deadlineS,
    postcopyPermitted: c.postcopyPermitted,
    tap: c.tap,
    ladder: c.ladder ? [...c.ladder] : undefined,
    oracleMaxPass: c.oracleMaxPass,
    summaryWorkloads: [...c.summary.workloads],
    ...rest,
  };
}

/** The full configuration a run records (everything but the signal and the log). */
export function benchConfigOf(opts: BenchOptions): BenchConfig {
  return {
    workloads: [...opts.workloads],
    policies: [...opts.policies],
    ramMiB: opts.ramMiB,
    link: formatLink(parseLink(opts.link)),
    reps: opts.reps,
    downtimeBudgetMs: opts.downtimeBudgetMs,
    deadlineS: opts.deadlineS,
    postcopyPermitted: Boolean(opts.postcopyPermitted),
    tap: Boolean(opts.tap),
    ladder: [...(opts.ladder ?? defaultLadder(opts.ramMiB, opts.link))].sort((a, b) => a - b),
    oracleMaxPass: opts.oracleMaxPass ?? DEFAULT_ORACLE_MAX_PASS,
    summary: summaryConfig(opts.workloads, opts.summaryWorkloads),
  };
}

/** The record of one run, from what the lab measured and verified. */
export function toRunRecord(
  p: PlannedRun,
  r: LabMigrationResult,
  budgetMs: number,
  provenance?: Pick<Provenance, 'commit' | 'dirty'>,
): RunRecord {
  const m = r.migration;
  // The guest's total stall, on every run; downtime figures and SLO success use it alone.
  const stall = r.guestStall?.totalStallMs ?? r.guestDowntimeMs ?? null;
  const prediction = m.decisions
    .map((d) =>
      d.action.kind === 'switchover' || d.action.kind === 'postcopy' ? d.action.prediction : undefined,
    )
    .find(Boolean);
  return {
    key: p.key,
    workload: p.workload,
    policy: p.label,
    policyName: p.policyName,
    policyConfig: p.config,
    rep: p.rep,
    role: p.role,
    startedAt: new Date().toISOString(),
    success: r.success,
    sloSuccess: r.success && stall !== null && stall <= budgetMs,
    outcome: m.outcome,
    reason: m.reason,
    totalTimeMs: m.totalTimeMs,
    wallMs: m.wallMs,
    qemuDowntimeMs: m.qemuDowntimeMs,
    guestDowntimeMs: m.outcome === 'completed' ? stall : null,
    totalStallMs: stall,
    longestSilenceMs: r.guestStall?.longestSilenceMs ?? null,
    slowdown: r.guestStall?.slowdown ?? null,
    appP99Ms: r.appLatency?.p99Ms ?? null,
    appMaxMs: r.appLatency?.maxMs ?? null,
    appBaselineP99Ms: r.appLatency?.baseline.p99Ms ?? null,
    transferredBytes: m.transferredBytes,
    linkBytes: r.linkBytes ?? null,
    passes: m.passes.length,
    // What was verified: RAM byte for byte, or (post-copy) only the guest's own check, or nothing.
    verification: r.verification?.ram ? 'byte-for-byte' : r.verification ? 'guest-check-only' : 'none',
    differingPages: r.verification?.ram?.differingPages ?? null,
    guestCheckOk: r.verification?.guestCheck.ok ?? null,
    controllerCpuPct: m.controllerCpuPct,
    actionLatencyMs: m.actionLatencyMs ?? null,
    predictedDowntimeMs: prediction?.downtimeMs ?? null,
    predictedTotalMs: prediction?.totalMs ?? null,
    predictedBytes: prediction?.bytes ?? null,
    passTimeline: m.passes,
    decisions: m.decisions.map((d) => ({
      atMs: d.atMs,
      pass: d.pass,
      kind: d.action.kind,
      reason: d.action.reason,
    })),
    commit: provenance?.commit ?? null,
    dirty: provenance?.dirty ?? null,
  };
}

/** The whole bench in run order (pure): every unit on every workload and rep, rotated per rep. */
export function planOf(opts: BenchOptions): PlannedRun[] {
  const c = benchConfigOf(opts);
  const units = benchUnits({
    policies: c.policies,
    ladder: c.ladder!,
    oracleMaxPass: c.oracleMaxPass!,
    postcopyPermitted: c.postcopyPermitted,
  });
  return benchSchedule(c.workloads, units, c.reps);
}

/** A new results file for this configuration. */
function freshResults(opts: BenchOptions, qemu: string): Results {
  return {
    version: 1,
    createdAt: new Date().toISOString(),
    environment: hostEnvironment(qemu, 'tcg'),
    config: benchConfigOf(opts),
    matrix: {
      workloads: opts.workloads,
      policies: opts.policies,
      ramMiB: opts.ramMiB,
      link: formatLink(parseLink(opts.link)),
      reps: opts.reps,
      downtimeBudgetMs: opts.downtimeBudgetMs,
      deadlineS: opts.deadlineS,
      postcopyPermitted: Boolean(opts.postcopyPermitted),
    },
    relaxedLimitMs: null,
    runs: [],
  };
}

/**
 * --resume: the earlier results of the same configuration, keeping only whole reps of this plan
 * (a rep cut short is run again from its start, never patched one policy at a time).
 */
function resumedResults(opts: BenchOptions, file: string, plan: PlannedRun[]): Results | undefined {
  if (!opts.resume || !existsSync(file)) return undefined;
  const previous = readResults(file);
  if (!isDeepStrictEqual(previous.config, benchConfigOf(opts)))
    throw new UsageError(
      `--resume: ${file} was made with another configuration; resume with the same options or use another --out`,
    );
  const { kept, dropped } = keepWholeReps(plan, previous.runs);
  if (dropped.length)
    opts.log?.(`resume: ${dropped.length} run(s) of unfinished reps dropped; those reps run again whole`);
  return { ...previous, runs: kept, relaxedLimitMs: null };
}

/** The commit of this invocation; dirty if any invocation was, or runs come from several commits. */
function recordProvenance(results: Results, provenance: Provenance): void {
  const commits = [
    ...new Set([...(results.provenance?.commits ?? []), ...(provenance.commit ? [provenance.commit] : [])]),
  ];
  results.provenance = {
    commit: provenance.commit,
    dirty:
      provenance.dirty === null
        ? null
        : provenance.dirty || Boolean(results.provenance?.dirty) || commits.length > 1,
    commits,
  };
}

/** One run on a fresh lab pair: start, migrate under the unit's policy, verify, tear down. */
async function runOne(
  opts: BenchOptions,
  p: PlannedRun,
  results: Results,
  provenance: Provenance,
): Promise<RunRecord> {
  const policy = resolvePolicy(p.policyName, p.config);
  const lab = await Lab.start({
    workload: parseLabWorkload(p.workload),
    ramMiB: opts.ramMiB,
    link: parseLink(opts.link),
    tap: opts.tap,
  });
  let r: LabMigrationResult;
  try {
    results.environment.kernelPackage = lab.info.kernelPackage;
    r = await migrateLab(lab, {
      policy,
      downtimeBudgetMs: opts.downtimeBudgetMs,
      deadlineMs: opts.deadlineS * 1000,
      postcopyPermitted: opts.postcopyPermitted,
      signal: opts.signal,
    });
  } finally {
    await lab.destroy();
  }
  return toRunRecord(
    { ...p, config: policy.config as Record<string, unknown> },
    r,
    opts.downtimeBudgetMs,
    provenance,
  );
}

const progressLine = (p: PlannedRun, i: number, total: number, etaMs: number) =>
  `run ${i}/${total} rep ${p.rep + 1} ${p.workload} × ${p.label}${p.role === 'matrix' ? '' : ` (${p.role})`}${Number.isFinite(etaMs) ? `, ETA ${Math.ceil(etaMs / 60_000)} min` : ''}`;

const outcomeLine = (rec: RunRecord) =>
  `  → ${rec.success ? 'success' : rec.outcome} (verified: ${rec.verification}): total ${(rec.totalTimeMs / 1000).toFixed(2)} s, guest stall ${rec.totalStallMs?.toFixed(0) ?? '-'} ms (longest silence ${rec.longestSilenceMs?.toFixed(0) ?? '-'} ms), QEMU downtime ${rec.qemuDowntimeMs.toFixed(0)} ms`;

/**
 * Runs the bench on fresh lab pairs in the order planOf() gives — every policy, every ladder rung
 * of relaxed(L*) and every oracle candidate on every workload and rep, interleaved and rotated per
 * rep. Writes results.json after every run (Ctrl-C loses nothing; --resume re-runs unfinished reps
 * whole); at the end picks L* from the ladder's runs, then writes results.csv, report.md and
 * report.html.
 */
export async function runBench(opts: BenchOptions): Promise<Results> {
  validateBench(opts);
  const log = opts.log ?? (() => undefined);
  // Published results come from committed code; every result says which.
  const provenance = gitProvenance(opts.out);
  assertPublishable(provenance, opts.out);
  if (provenance.dirty)
    log(`note: the tree has uncommitted changes (${provenance.dirtyPaths.slice(0, 3).join(', ')}…)`);
  mkdirSync(opts.out, { recursive: true });
  const file = path.join(opts.out, 'results.json');
  const plan = planOf(opts);
  const perRep = plan.filter((p) => p.rep === 0).length;
  log(
    `plan: ${plan.length} runs (${opts.reps} reps × ${perRep}: every policy, ladder rung and oracle candidate on each workload)`,
  );
  const results = resumedResults(opts, file, plan) ?? freshResults(opts, (await probeQemuVersion()).text);
  recordProvenance(results, provenance);
  const save = () => writeFileAtomic(file, JSON.stringify(results, null, 1));
  const done = new Set(results.runs.map((r) => r.key));
  const todo = plan.filter((p) => !done.has(p.key));
  const t0 = performance.now();
  for (const [n, p] of todo.entries()) {
    if (opts.signal?.aborted) break;
    const eta = n > 0 ? ((performance.now() - t0) / n) * (todo.length - n) : NaN;
    log(progressLine(p, plan.length - todo.length + n + 1, plan.length, eta));
    const rec = await runOne(opts, p, results, provenance);
    // A run the interrupt cut short is not a result.
    if (!opts.signal?.aborted || rec.outcome === 'completed') {
      results.runs.push(rec);
      save();
    }
    log(outcomeLine(rec));
  }
  return finish(results, opts, save);
}

/** relaxed(L*) from the ladder's runs (the shared ladder search), then every report. */
async function finish(results: Results, opts: BenchOptions, save: () => void): Promise<Results> {
  const lStar = relaxedLimit(results.runs, opts.workloads, opts.deadlineS);
  results.relaxedLimitMs = lStar?.limitMs ?? null;
  if (lStar)
    opts.log?.(
      `relaxed(L*): L* = ${lStar.limitMs} ms${lStar.unfinished.length ? ` (no rung completed every rep of ${lStar.unfinished.join(', ')}: top rung)` : ''}`,
    );
  save();
  await writeReports(results, opts.out);
  return results;
}
