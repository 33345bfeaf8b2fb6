import { existsSync, mkdirSync } from 'node:fs';
import { writeFileAtomic } from '../util/fs.js';
import path from 'node:path';
import { isDeepStrictEqual } from 'node:util';
import { buildGuestImage, defaultCacheDir } from '../lab/image.js';
import { checkWorkloadFits, Lab, migrateLab, type LabMigrationResult } from '../lab/lab.js';
import { migrateLibvirtLab } from '../lab/libvirt-migrate.js';
import { LibvirtPair } from '../lab/libvirt-pair.js';
import { formatLink, parseLink } from '../lab/link.js';
import { parseWorkload } from '../lab/workload.js';
import { LibvirtClient } from '../libvirt/index.js';
import { isAppWorkload, parseLabWorkload } from '../util/specs.js';
import { checkPolicyName, POLICIES, resolvePolicy } from '../policy/index.js';
import { RELAXED_LADDER } from '../policy/relaxed.js';
import { probeQemuVersion } from '../qemu/index.js';
import { UsageError } from '../util/errors.js';
import { cellOf, DRIVERS, parseBenchCell, summaryConfig, type BenchConfig, type Driver } from './config.js';
import { relaxedLimit } from './oracle.js';
import { assertPublishable, gitProvenance, type Provenance } from './provenance.js';
import { hostEnvironment, readResults, referenceResults, type Results, type RunRecord } from './results.js';
import { writeReports } from './report.js';
import { benchSchedule, benchUnits, keepWholeReps, parseMatrixPolicy, type PlannedRun } from './schedule.js';
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
  /**
   * The drivers every unit runs under (default QMP alone). Several: each unit runs under each,
   * back to back, and the first is the reference for the report's main figures.
   */
  drivers?: Driver[];
  /**
   * Migration streams (default 1: QEMU's single stream; n ≥ 2: multifd with n channels on both
   * sides). A cell workload (`W@RAM/LINK/Nch`) sets its own.
   */
  multifdChannels?: number;
  signal?: AbortSignal;
  log?: (line: string) => void;
}

/**
 * `--driver`: `qmp`, `libvirt`, `both` (= qmp,libvirt), or a list in the order wanted (the first
 * is the reference driver).
 */
export function parseDrivers(text: string): Driver[] {
  const names = text === 'both' ? ['qmp', 'libvirt'] : text.split(',').map((x) => x.trim());
  const bad = names.find((n) => !(DRIVERS as readonly string[]).includes(n));
  if (bad !== undefined || new Set(names).size !== names.length)
    throw new UsageError(
      `${bad !== undefined ? `unknown driver '${bad}'` : `'${text}' names a driver twice`}: use qmp, libvirt or both`,
    );
  return names as Driver[];
}

/** Checks names before anything runs. */
export function validateBench(opts: BenchOptions): void {
  parseLink(opts.link);
  const cells = opts.workloads.map((w) => cellOf(w, opts));
  for (const c of cells) {
    checkWorkloadFits(parseLabWorkload(c.workload), c.ramMiB);
    parseLink(c.link);
  }
  const multifd = opts.workloads.find((w, i) => cells[i]!.channels > 1);
  if (multifd !== undefined) {
    // QEMU 10.0's migrate_caps_check: "Postcopy is not yet compatible with multifd".
    if (opts.postcopyPermitted)
      throw new UsageError(
        `${multifd} runs multifd, which QEMU refuses with post-copy: run multifd cells without --allow-postcopy`,
      );
    if (opts.tap) throw new UsageError(`${multifd} runs multifd: the tap follows one stream, drop --tap`);
  }
  for (const p of opts.policies) {
    const { policyName, config } = parseMatrixPolicy(p);
    checkPolicyName(policyName, ['oracle']);
    // A variant's options are checked by the policy's own schema (one line on a bad one).
    if (Object.keys(config).length) resolvePolicy(policyName, config);
  }
  if (opts.workloads.length === 0 || opts.policies.length === 0)
    throw new UsageError('name at least one workload and one policy');
  summaryConfig(opts.workloads, opts.summaryWorkloads);
  const drivers = opts.drivers ?? ['qmp'];
  if (drivers.length === 0 || new Set(drivers).size !== drivers.length)
    throw new UsageError(`name each driver once: ${drivers.join(', ') || '(none)'}`);
  if (drivers.includes('libvirt')) {
    const cell = opts.workloads.find((w) => parseBenchCell(w).workload !== w);
    if (cell !== undefined || (opts.multifdChannels ?? 1) > 1)
      throw new UsageError(
        `--driver libvirt runs one RAM size, link and stream per bench: ${cell ?? `multifd ${opts.multifdChannels}`} is QMP only`,
      );
    const app = opts.workloads.find((w) => isAppWorkload(parseLabWorkload(w)));
    if (app)
      throw new UsageError(
        `--driver libvirt runs the synthetic workloads only (the lab's libvirt domain boots no application image): drop ${app}`,
      );
    if (opts.tap)
      throw new UsageError('--tap works with the QMP driver only (the lab relays QMP migrations)');
  }
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
    drivers: c.drivers ? [...c.drivers] : undefined,
    multifdChannels: c.multifdChannels,
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
    // QMP alone is what every config without the field means: the committed configs stay as they are.
    ...(isDeepStrictEqual(opts.drivers ?? ['qmp'], ['qmp']) ? {} : { drivers: [...opts.drivers!] }),
    // One stream is what every config without the field means.
    ...(opts.multifdChannels !== undefined ? { multifdChannels: opts.multifdChannels } : {}),
    summary: summaryConfig(opts.workloads, opts.summaryWorkloads),
  };
}

/** The record of one run, from what the lab measured and verified (through either driver). */
export function toRunRecord(
  p: PlannedRun,
  r: Omit<LabMigrationResult, 'lab' | 'tap'>,
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
    driver: p.driver,
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
  return benchSchedule(c.workloads, units, c.reps, c.drivers ?? ['qmp']);
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

/**
 * The lab's libvirt pair, started on the first libvirt run and kept for the whole bench (its
 * daemons take seconds to start; every run gets a fresh domain), with one connection per daemon.
 */
class LibvirtLab {
  private started:
    Promise<{ pair: LibvirtPair; source: LibvirtClient; destination: LibvirtClient }> | undefined;
  private pair: LibvirtPair | undefined;
  private clients: LibvirtClient[] = [];

  constructor(
    private readonly link: string,
    private readonly log: (line: string) => void,
  ) {}

  get(): Promise<{ pair: LibvirtPair; source: LibvirtClient; destination: LibvirtClient }> {
    this.started ??= (async () => {
      this.pair = await LibvirtPair.start({ link: parseLink(this.link), log: this.log });
      const source = await LibvirtClient.open(this.pair.source.uri);
      this.clients.push(source);
      const destination = await LibvirtClient.open(this.pair.destination.uri);
      this.clients.push(destination);
      return { pair: this.pair, source, destination };
    })();
    return this.started;
  }

  /** Closes the connections, then stops the daemons and their QEMUs by PID and removes the link, netns and dirs. */
  async destroy(): Promise<void> {
    for (const c of this.clients.splice(0)) await c.close().catch(() => undefined);
    await this.started?.catch(() => undefined);
    await this.pair?.destroy();
  }
}

/** One run: the unit's policy under the run's driver, on a fresh guest; verified, torn down. */
function runOne(
  opts: BenchOptions,
  p: PlannedRun,
  results: Results,
  provenance: Provenance,
  libvirt: LibvirtLab,
): Promise<RunRecord> {
  return p.driver === 'libvirt'
    ? runLibvirt(opts, p, results, provenance, libvirt)
    : runQmp(opts, p, results, provenance);
}

/**
 * The policy a run resolves. Where post-copy is permitted, the production rules that gate it
 * behind a switch of their own (KubeVirt's allowPostCopy) get it switched on, as an operator who
 * permits post-copy would configure them; the unit's own config still wins.
 */
function benchPolicy(opts: BenchOptions, p: PlannedRun) {
  const schema = POLICIES[p.policyName]?.configSchema as { shape?: Record<string, unknown> } | undefined;
  const gated = opts.postcopyPermitted && schema?.shape?.allowPostCopy !== undefined;
  return resolvePolicy(p.policyName, { ...(gated ? { allowPostCopy: true } : {}), ...p.config });
}

/** A fresh lab guest as a domain on the bench's libvirt pair, migrated through libvirt. */
async function runLibvirt(
  opts: BenchOptions,
  p: PlannedRun,
  results: Results,
  provenance: Provenance,
  libvirt: LibvirtLab,
): Promise<RunRecord> {
  const policy = benchPolicy(opts, p);
  const { pair, source, destination } = await libvirt.get();
  results.environment.kernelPackage ||= (await buildGuestImage(defaultCacheDir())).image.kernelPackage;
  const guest = await pair.startGuest({ workload: parseWorkload(p.workload), ramMiB: opts.ramMiB });
  try {
    // Interrupted while the guest booted: no migration to start.
    opts.signal?.throwIfAborted();
    const r = await migrateLibvirtLab(guest, {
      source,
      destination,
      policy,
      downtimeBudgetMs: opts.downtimeBudgetMs,
      deadlineMs: opts.deadlineS * 1000,
      postcopyPermitted: opts.postcopyPermitted,
      signal: opts.signal,
    });
    return toRunRecord(
      { ...p, config: policy.config as Record<string, unknown> },
      r,
      opts.downtimeBudgetMs,
      provenance,
    );
  } finally {
    await guest.remove(source, destination);
  }
}

/** One run on a fresh QMP lab pair: start, migrate under the unit's policy, verify, tear down. */
async function runQmp(
  opts: BenchOptions,
  p: PlannedRun,
  results: Results,
  provenance: Provenance,
): Promise<RunRecord> {
  const policy = benchPolicy(opts, p);
  // A cell workload carries its own RAM, link and streams.
  const cell = cellOf(p.workload, opts);
  const lab = await Lab.start({
    workload: parseLabWorkload(cell.workload),
    ramMiB: cell.ramMiB,
    link: parseLink(cell.link),
    tap: opts.tap,
    ...(cell.channels > 1 ? { multifdChannels: cell.channels } : {}),
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

const progressLine = (p: PlannedRun, i: number, total: number, etaMs: number, drivers: boolean) =>
  `run ${i}/${total} rep ${p.rep + 1} ${p.workload} × ${p.label}${drivers ? ` via ${p.driver}` : ''}${p.role === 'matrix' ? '' : ` (${p.role})`}${Number.isFinite(etaMs) ? `, ETA ${Math.ceil(etaMs / 60_000)} min` : ''}`;

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
  const showDriver = !isDeepStrictEqual(opts.drivers ?? ['qmp'], ['qmp']);
  const libvirt = new LibvirtLab(opts.link, log);
  try {
    for (const [n, p] of todo.entries()) {
      if (opts.signal?.aborted) break;
      const eta = n > 0 ? ((performance.now() - t0) / n) * (todo.length - n) : NaN;
      log(progressLine(p, plan.length - todo.length + n + 1, plan.length, eta, showDriver));
      let rec: RunRecord;
      try {
        rec = await runOne(opts, p, results, provenance, libvirt);
      } catch (err) {
        // What an interrupt broke (a guest booting, a daemon call) is not a result; anything else is a failure.
        if (opts.signal?.aborted) break;
        throw err;
      }
      // A run the interrupt cut short is not a result.
      if (!opts.signal?.aborted || rec.outcome === 'completed') {
        results.runs.push(rec);
        save();
      }
      log(outcomeLine(rec));
    }
  } finally {
    await libvirt.destroy();
  }
  return finish(results, opts, save);
}

/** relaxed(L*) from the ladder's runs (the shared ladder search), then every report. */
async function finish(results: Results, opts: BenchOptions, save: () => void): Promise<Results> {
  // L* from the reference driver's ladder; the drivers section holds the others to the same L*.
  const lStar = relaxedLimit(referenceResults(results).runs, opts.workloads, opts.deadlineS);
  results.relaxedLimitMs = lStar?.limitMs ?? null;
  if (lStar)
    opts.log?.(
      `relaxed(L*): L* = ${lStar.limitMs} ms${lStar.unfinished.length ? ` (no rung completed every rep of ${lStar.unfinished.join(', ')}: top rung)` : ''}`,
    );
  save();
  await writeReports(results, opts.out);
  return results;
}
