import { existsSync, mkdirSync, renameSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { Lab, migrateLab, type LabMigrationResult } from '../lab/lab.js';
import { formatLink, parseLink } from '../lab/link.js';
import { parseWorkload } from '../lab/workload.js';
import { POLICIES, resolvePolicy, type ResolvedPolicy } from '../policy/index.js';
import { probeQemuVersion } from '../qemu/index.js';
import { UsageError } from '../util/errors.js';
import { summaryConfig, type BenchConfig } from './config.js';
import { assertPublishable, gitProvenance, type Provenance } from './provenance.js';
import { hostEnvironment, readResults, type Results, type RunRecord } from './results.js';
import { writeReports } from './report.js';
import { quantile } from './stats.js';

/** The study's ladder for relaxed(L*), ms. */
export const RELAXED_LADDER = [300, 500, 750, 1000, 1500, 2000, 3000, 5000, 8000, 13000, 21000];

/** The lowest ladder rung worth trying: 0.9 × (dirty set ÷ bandwidth) from stock's passes. */
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
  signal?: AbortSignal;
  log?: (line: string) => void;
}

interface Planned {
  key: string;
  workload: string;
  label: string;
  policy: ResolvedPolicy;
  rep: number;
  role: RunRecord['role'];
}

/** Checks names before anything runs. */
export function validateBench(opts: BenchOptions): void {
  for (const w of opts.workloads) parseWorkload(w);
  parseLink(opts.link);
  for (const p of opts.policies) {
    if (p !== 'oracle' && !POLICIES[p]) {
      throw new UsageError(
        `unknown policy '${p}': choose from ${[...Object.keys(POLICIES), 'oracle'].join(', ')}`,
      );
    }
  }
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
    summary: summaryConfig(opts.workloads, opts.summaryWorkloads),
  };
}

function label(policy: ResolvedPolicy): string {
  const cfg = policy.config as Record<string, unknown>;
  if (policy.policy.name === 'relaxed') return `relaxed(${cfg.downtimeLimitMs})`;
  if (policy.policy.name === 'switch-at-pass' || policy.policy.name === 'postcopy-after')
    return `${policy.policy.name}(${cfg.pass})`;
  return policy.policy.name;
}

export function toRunRecord(
  p: Planned,
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
    policyName: p.policy.policy.name,
    policyConfig: p.policy.config as Record<string, unknown>,
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
    transferredBytes: m.transferredBytes,
    linkBytes: r.linkBytes ?? null,
    passes: m.passes.length,
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

/**
 * Runs the experiment matrix on fresh lab pairs — every policy on every workload, `reps` times,
 * policies interleaved within a rep so slow drifts of this noisy host hit them alike — plus the
 * runs that find relaxed(L*) and the oracle. Writes results.json after every run (so Ctrl-C and
 * --resume lose nothing), then results.csv, report.md and report.html.
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
  const previous = opts.resume && existsSync(file) ? readResults(file) : undefined;
  const version = await probeQemuVersion();
  const results: Results = previous ?? {
    version: 1,
    createdAt: new Date().toISOString(),
    environment: hostEnvironment(version.text, 'tcg'),
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
  // The commit of this invocation; dirty if any invocation was, or runs come from several commits.
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
  const done = new Set(results.runs.map((r) => r.key));
  const save = () => {
    const tmp = `${file}.tmp`;
    writeFileSync(tmp, JSON.stringify(results, null, 1));
    renameSync(tmp, file);
  };
  const t0 = performance.now();
  let ran = 0;
  const execute = async (p: Planned, total: () => number): Promise<RunRecord | undefined> => {
    const existing = results.runs.find((r) => r.key === p.key);
    if (existing) return existing;
    if (opts.signal?.aborted) return undefined;
    const i = results.runs.length + 1;
    const eta = ran > 0 ? ((performance.now() - t0) / ran) * Math.max(0, total() - i + 1) : NaN;
    log(
      `run ${i}/${total()} ${p.workload} × ${p.label}${p.role === 'matrix' ? ` rep ${p.rep + 1}` : ` (${p.role})`}${Number.isFinite(eta) ? `, ETA ${Math.ceil(eta / 60_000)} min` : ''}`,
    );
    const lab = await Lab.start({
      workload: parseWorkload(p.workload),
      ramMiB: opts.ramMiB,
      link: parseLink(opts.link),
      tap: opts.tap,
    });
    let r: LabMigrationResult;
    try {
      results.environment.kernelPackage = lab.info.kernelPackage;
      r = await migrateLab(lab, {
        policy: p.policy,
        downtimeBudgetMs: opts.downtimeBudgetMs,
        deadlineMs: opts.deadlineS * 1000,
        postcopyPermitted: opts.postcopyPermitted,
        signal: opts.signal,
      });
    } finally {
      await lab.destroy();
    }
    const rec = toRunRecord(p, r, opts.downtimeBudgetMs, provenance);
    ran++;
    if (!opts.signal?.aborted || rec.outcome === 'completed') {
      results.runs.push(rec);
      done.add(rec.key);
      save();
    }
    log(
      `  → ${rec.success ? 'success' : rec.outcome}: total ${(rec.totalTimeMs / 1000).toFixed(2)} s, guest stall ${rec.totalStallMs?.toFixed(0) ?? '-'} ms (longest silence ${rec.longestSilenceMs?.toFixed(0) ?? '-'} ms), QEMU downtime ${rec.qemuDowntimeMs.toFixed(0)} ms`,
    );
    return rec;
  };

  const matrixPolicies = opts.policies.filter((p) => p !== 'relaxed' && p !== 'oracle');
  const wantsRelaxed = opts.policies.includes('relaxed');
  const wantsOracle = opts.policies.includes('oracle');
  const plannedTotal = () =>
    results.runs.length +
    opts.reps * opts.workloads.length * (matrixPolicies.length + (wantsRelaxed ? 1 : 0)) +
    (wantsOracle ? opts.workloads.length * 5 : 0) -
    results.runs.filter((r) => r.role === 'matrix' || r.role === 'oracle').length;

  const runMatrix = async (workload: string, name: string, rep: number): Promise<boolean> => {
    const policy =
      name === 'relaxed'
        ? resolvePolicy('relaxed', { downtimeLimitMs: results.relaxedLimitMs! })
        : resolvePolicy(name);
    const rec = await execute(
      {
        key: `matrix|${workload}|${name}|${rep}`,
        workload,
        label: label(policy),
        policy,
        rep,
        role: 'matrix',
      },
      plannedTotal,
    );
    return rec !== undefined;
  };

  // Rep 1: every policy but relaxed first (stock's runs show each workload's dirty set).
  for (const workload of opts.workloads) {
    for (const name of matrixPolicies) if (!(await runMatrix(workload, name, 0))) return await finish();
  }

  // relaxed(L*): per workload the smallest ladder limit that completes; L* is the largest of those.
  // QEMU completes only once dirty ≤ bandwidth × limit, so the climb starts at the rung that fits
  // 0.9 × the dirty set over the bandwidth stock saw; lower rungs cannot complete.
  if (wantsRelaxed && results.relaxedLimitMs === null) {
    let lStar = RELAXED_LADDER[0]!;
    for (const workload of opts.workloads) {
      const floor = Math.max(
        lStar,
        ladderStart(results.runs.filter((r) => r.workload === workload && r.policyName === 'stock')),
      );
      let found: number | undefined;
      for (const limit of RELAXED_LADDER.filter((l) => l >= floor)) {
        const policy = resolvePolicy('relaxed', { downtimeLimitMs: limit });
        const rec = await execute(
          {
            key: `ladder|${workload}|${limit}`,
            workload,
            label: label(policy),
            policy,
            rep: 0,
            role: 'ladder',
          },
          plannedTotal,
        );
        if (!rec) return await finish();
        if (rec.outcome === 'completed') {
          found = limit;
          break;
        }
      }
      lStar = Math.max(lStar, found ?? RELAXED_LADDER.at(-1)!);
    }
    results.relaxedLimitMs = lStar;
    save();
    log(`relaxed(L*): L* = ${lStar} ms`);
  }
  if (wantsRelaxed)
    for (const workload of opts.workloads)
      if (!(await runMatrix(workload, 'relaxed', 0))) return await finish();

  for (let rep = 1; rep < opts.reps; rep++) {
    const names = [...matrixPolicies, ...(wantsRelaxed ? ['relaxed'] : [])];
    // Rotate the order each rep: no policy always runs first on a warm (or cold) host.
    const order = names.map((_, i) => names[(i + rep) % names.length]!);
    for (const workload of opts.workloads)
      for (const name of order) if (!(await runMatrix(workload, name, rep))) return await finish();
  }

  // oracle: the best fixed choice in hindsight among switch-at-pass(2..5) and postcopy-after(1).
  if (wantsOracle) {
    const candidates = [2, 3, 4, 5]
      .map((k) => resolvePolicy('switch-at-pass', { pass: k }))
      .concat(resolvePolicy('postcopy-after', { pass: 1 }));
    for (const workload of opts.workloads) {
      for (const policy of candidates) {
        const rec = await execute(
          {
            key: `oracle|${workload}|${label(policy)}`,
            workload,
            label: label(policy),
            policy,
            rep: 0,
            role: 'oracle',
          },
          plannedTotal,
        );
        if (!rec) return await finish();
      }
    }
  }
  return await finish();

  async function finish(): Promise<Results> {
    save();
    await writeReports(results, opts.out);
    return results;
  }
}
