import { RELAXED_LADDER } from '../policy/relaxed.js';
import { hostEnvironment, type Results, type RunRecord } from '../bench/results.js';
import { quantile } from '../bench/stats.js';
import { parseLink, parseWorkload, workloadFootprintMib } from '../util/specs.js';
import { POLICIES, parsePolicyOptions, resolvePolicy, type ResolvedPolicy } from '../policy/index.js';
import { UsageError } from '../util/errors.js';
import { workloadClasses, type PageClass } from './model.js';
import type { ModelParams } from './params.js';
import { simulate, type SimResult } from './simulate.js';
import { readTrace, traceClasses } from './trace.js';
import { SCHEMA_VERSION, type SimRunLine } from '../core/schema.js';

const MiB = 2 ** 20;

/** Guest RAM the simulator accepts, MiB: 64 MiB … 16 TiB. */
export const SIM_RAM_MIB = { min: 64, max: 16 * 2 ** 20 };
/** Link rates the simulator accepts, Mbit/s (1 Mbit … 1.6 Tbit), and one-way delay, ms. */
export const SIM_LINK = { minMbit: 1, maxMbit: 1_600_000, maxDelayMs: 10_000 };

export function checkRamMiB(ramMiB: number): number {
  if (!Number.isFinite(ramMiB) || ramMiB < SIM_RAM_MIB.min || ramMiB > SIM_RAM_MIB.max)
    throw new UsageError(
      `RAM ${ramMiB} MiB is out of the simulator's range: ${SIM_RAM_MIB.min} MiB … ${SIM_RAM_MIB.max / 2 ** 20} TiB`,
    );
  return ramMiB;
}

/**
 * A workload for the simulator: a guest-program spec (`random:200`) or `trace:FILE`. With `ramMiB`,
 * what the workload writes must fit in the guest's RAM (one clear line otherwise).
 */
export function simClasses(workload: string, ramMiB?: number): PageClass[] {
  if (workload.startsWith('trace:')) {
    const trace = readTrace(workload.slice('trace:'.length));
    const classes = traceClasses(trace);
    if (ramMiB !== undefined && trace.header.ramBytes > ramMiB * MiB)
      throw new UsageError(
        `trace ${workload.slice(6)} was recorded on a ${trace.header.ramBytes / MiB} MiB guest: it does not fit in ${ramMiB} MiB`,
      );
    return classes;
  }
  const spec = parseWorkload(workload);
  if (ramMiB !== undefined && workloadFootprintMib(spec) > ramMiB)
    throw new UsageError(
      `workload ${workload} writes ${Math.round(workloadFootprintMib(spec))} MiB: more than the guest's ${ramMiB} MiB of RAM`,
    );
  return workloadClasses(spec);
}

/** A link for the simulator: a rate in its range and a delay; what the model does not model is refused. */
export function linkBps(link: string): { bps: number; rttMs: number } {
  const l = parseLink(link);
  if (l.rateMbit === undefined)
    throw new UsageError(`the simulator needs a link rate, e.g. 10gbit, not '${link}'`);
  if (l.lossPct !== undefined)
    throw new UsageError(
      `link '${link}': the simulator does not model packet loss (TCP retransmission); drop loss=${l.lossPct}%`,
    );
  if (l.rateMbit < SIM_LINK.minMbit || l.rateMbit > SIM_LINK.maxMbit)
    throw new UsageError(
      `link '${link}': the simulator takes rates from ${SIM_LINK.minMbit} mbit to ${SIM_LINK.maxMbit / 1000} gbit`,
    );
  if ((l.delayMs ?? 0) > SIM_LINK.maxDelayMs)
    throw new UsageError(`link '${link}': a delay over ${SIM_LINK.maxDelayMs} ms is not a migration link`);
  return { bps: (l.rateMbit * 1e6) / 8, rttMs: l.delayMs ? 2 * l.delayMs : 0 };
}

export interface SweepOptions {
  workloads: string[];
  ramMiB: number[];
  links: string[];
  /** Policy names; `relaxed` = relaxed(L*) found by the study's ladder, per sweep point. */
  policies: string[];
  downtimeBudgetMs: number;
  deadlineS: number;
  postcopyPermitted?: boolean;
  /** `k=v` options for the policy (one policy only: options are per policy). */
  policyOptions?: string[];
  /** The model's parameters (multifd channels, per-channel rate, …: src/sim/params.ts). */
  params?: Partial<ModelParams>;
}

export interface SweepRun {
  workload: string;
  ramMiB: number;
  link: string;
  policy: string;
  policyName: string;
  policyConfig: Record<string, unknown>;
  result: SimResult;
}

/**
 * One run as a `sim --json` line (docs/schema/sim-run.schema.json): the result under the names
 * `migrate --json` uses for the same things (qemuDowntimeMs, passes as records, policy and
 * policyConfig), the sweep point around it.
 */
export function simRunLine(o: Pick<SweepOptions, 'downtimeBudgetMs' | 'deadlineS'>, r: SweepRun): SimRunLine {
  const s = r.result;
  return {
    schemaVersion: SCHEMA_VERSION,
    workload: r.workload,
    ramMiB: r.ramMiB,
    link: r.link,
    policyLabel: r.policy,
    result: {
      outcome: s.outcome,
      guestRunsOn: s.guestRunsOn,
      reason: s.reason,
      policy: r.policyName,
      policyConfig: r.policyConfig,
      downtimeBudgetMs: o.downtimeBudgetMs,
      deadlineMs: o.deadlineS * 1000,
      ramBytes: r.ramMiB * MiB,
      totalTimeMs: s.totalTimeMs,
      // As in the bench's records (sweepResults): after post-copy QEMU's pause is not the guest's.
      qemuDowntimeMs: s.postcopy ? 0 : s.downtimeMs,
      guestDowntimeMs: s.downtimeMs,
      transferredBytes: s.transferredBytes,
      passes: s.passes,
      decisions: s.decisions,
      postcopy: s.postcopy,
    },
  };
}

function label(p: ResolvedPolicy): string {
  const cfg = p.config as Record<string, unknown>;
  return p.policy.name === 'relaxed' ? `relaxed(${cfg.downtimeLimitMs})` : p.policy.name;
}

/** Every workload × RAM × link × policy, simulated; relaxed(L*) climbs the ladder per point. */
export function runSweep(o: SweepOptions): SweepRun[] {
  for (const p of o.policies)
    if (p !== 'relaxed' && !POLICIES[p])
      throw new UsageError(`unknown policy '${p}': choose from ${Object.keys(POLICIES).join(', ')}`);
  const options = parsePolicyOptions(o.policyOptions ?? []);
  if (o.policyOptions?.length && o.policies.length !== 1)
    throw new UsageError('--policy-opt sets one policy’s options: name that one policy with --policy');
  if (o.policyOptions?.length && o.policies[0] === 'relaxed')
    throw new UsageError('relaxed = relaxed(L*) finds its own limit: use --policy-opt with another policy');
  // Every input is checked before the first run.
  const resolved = new Map(
    o.policies.filter((p) => p !== 'relaxed').map((p) => [p, resolvePolicy(p, options)]),
  );
  o.ramMiB.forEach(checkRamMiB);
  o.links.forEach(linkBps);
  for (const w of o.workloads) for (const r of o.ramMiB) simClasses(w, r);
  const runs: SweepRun[] = [];
  for (const workload of o.workloads) {
    const classes = simClasses(workload);
    for (const ramMiB of o.ramMiB) {
      for (const link of o.links) {
        const { bps, rttMs } = linkBps(link);
        const sim = (policy: ResolvedPolicy) =>
          simulate({
            ramBytes: ramMiB * MiB,
            linkBps: bps,
            rttMs,
            classes,
            policy,
            downtimeBudgetMs: o.downtimeBudgetMs,
            deadlineMs: o.deadlineS * 1000,
            postcopyPermitted: o.postcopyPermitted,
            params: o.params,
          });
        for (const name of o.policies) {
          let policy = resolved.get(name);
          let result: SimResult | undefined;
          if (!policy) {
            for (const limit of RELAXED_LADDER) {
              policy = resolvePolicy('relaxed', { downtimeLimitMs: limit });
              result = sim(policy);
              if (result.outcome === 'completed') break;
            }
          }
          result ??= sim(policy!);
          runs.push({
            workload,
            ramMiB,
            link,
            policy: label(policy!),
            policyName: policy!.policy.name,
            policyConfig: policy!.config as Record<string, unknown>,
            result,
          });
        }
      }
    }
  }
  return runs;
}

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
}

/**
 * The simulator against a real bench run: for each workload × policy of its matrix, the same
 * policy and configuration simulated on the same RAM, link, budget and deadline, against the
 * median of the real successful runs.
 */
export function validate(real: Results): {
  rows: ValidationRow[];
  rankings: { workload: string; real: string[]; sim: string[] }[];
} {
  const { bps, rttMs } = linkBps(real.matrix.link);
  const rows: ValidationRow[] = [];
  const matrix = real.runs.filter((r) => r.role === 'matrix');
  const cells = [...new Set(matrix.map((r) => `${r.workload}\u0000${r.policy}`))];
  for (const cell of cells) {
    const [workload, policyLabel] = cell.split('\u0000') as [string, string];
    const rs = matrix.filter((r) => r.workload === workload && r.policy === policyLabel && r.success);
    if (rs.length === 0) continue;
    const first = rs[0]!;
    const policy = resolvePolicy(first.policyName, first.policyConfig);
    const s = simulate({
      ramBytes: real.matrix.ramMiB * MiB,
      linkBps: bps,
      rttMs,
      classes: simClasses(workload),
      policy,
      downtimeBudgetMs: real.matrix.downtimeBudgetMs,
      deadlineMs: real.matrix.deadlineS * 1000,
      postcopyPermitted: real.matrix.postcopyPermitted,
    });
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
  return { rows, rankings };
}

export function validationTable(v: ReturnType<typeof validate>): string {
  const pct = (x: number) =>
    Number.isFinite(x) ? `${x >= 0 ? '+' : '−'}${Math.abs(Math.round(x * 100))}%` : 'n/a';
  const lines = [
    '| workload | policy | real runs | total s real / sim | error | guest downtime ms real / sim | error | MiB real / sim | error |',
    '|---|---|---:|---:|---:|---:|---:|---:|---:|',
    ...v.rows.map(
      (r) =>
        `| ${r.workload} | ${r.policy} | ${r.realRuns} | ${(r.real.totalMs / 1000).toFixed(2)} / ${r.sim.outcome === 'completed' ? (r.sim.totalMs / 1000).toFixed(2) : r.sim.outcome} | ${pct(r.error.total)} | ${r.real.downtimeMs.toFixed(0)} / ${r.sim.outcome === 'completed' ? r.sim.downtimeMs.toFixed(0) : '-'} | ${pct(r.error.downtime)} | ${(r.real.bytes / MiB).toFixed(0)} / ${(r.sim.bytes / MiB).toFixed(0)} | ${pct(r.error.bytes)} |`,
    ),
    '',
    ...v.rankings.map(
      (k) =>
        `${k.workload}: ranking by guest downtime — real ${k.real.join(' < ')}; sim ${k.sim.join(' < ')}${k.real.join() === k.sim.join() ? ' (same)' : ' (differs)'}`,
    ),
  ];
  const abs = (f: (r: ValidationRow) => number) => {
    const xs = v.rows.map(f).filter(Number.isFinite).map(Math.abs);
    return xs.length ? pct(quantile(xs, 0.5)) : 'n/a';
  };
  lines.push(
    '',
    `median |error|: total ${abs((r) => r.error.total)}, downtime ${abs((r) => r.error.downtime)}, data ${abs((r) => r.error.bytes)}`,
  );
  return lines.join('\n');
}
