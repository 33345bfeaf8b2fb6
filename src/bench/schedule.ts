import { policyLabel } from '../policy/registry.js';
/**
 * The bench's run order, as a pure function of its configuration: every policy of the matrix,
 * every rung of the relaxed(L*) ladder and every oracle candidate runs on every rep, interleaved
 * within a rep and rotated from rep to rep (a Latin-square-like rotation), so slow drifts of a
 * noisy host hit them all alike and no unit always runs first, last or after the same neighbour
 * block. A re-run replaces whole reps, never one policy's block (keepWholeReps).
 */

import { UsageError } from '../util/errors.js';
import type { Driver } from './config.js';
import type { RunRecord } from './results.js';

export type Role = RunRecord['role'];

/** One thing that runs once per workload and rep: a matrix policy, a ladder rung or an oracle candidate. */
export interface Unit {
  role: Role;
  policyName: string;
  config: Record<string, unknown>;
  /** As reports show it: `relaxed(2000)`, `switch-at-pass(3)`, `mp`. */
  label: string;
}

export interface PlannedRun extends Unit {
  key: string;
  workload: string;
  rep: number;
  driver: Driver;
}

/** How a policy is shown in reports (one definition, in the policy registry). */
export const labelOf = policyLabel;

const unit = (role: Role, policyName: string, config: Record<string, unknown> = {}): Unit => ({
  role,
  policyName,
  config,
  label: labelOf(policyName, config),
});

/**
 * A matrix policy as the bench takes it: a name, or a name with options in brackets
 * (`adaptive[xbzrle=true]`, `proxmox[autoConverge=false;xbzrle=true]`), so variants of one policy
 * run side by side in the same reps. Reports label the variant as written.
 */
export function parseMatrixPolicy(spec: string): { policyName: string; config: Record<string, string> } {
  const m = /^([a-z0-9-]+)(?:\[(.*)\])?$/.exec(spec.trim());
  if (!m) throw new UsageError(`policy '${spec}': write NAME or NAME[key=value;key=value]`);
  const config: Record<string, string> = {};
  for (const kv of (m[2] ?? '').split(';').filter((x) => x.trim())) {
    const eq = kv.indexOf('=');
    if (eq <= 0) throw new UsageError(`policy '${spec}': option '${kv}' is not key=value`);
    config[kv.slice(0, eq).trim()] = kv.slice(eq + 1).trim();
  }
  return { policyName: m[1]!, config };
}

export interface UnitOptions {
  /** Policy names; `relaxed` = relaxed(L*) (the ladder), `oracle` = the oracle's candidates. */
  policies: string[];
  /** The ladder's rungs (downtime-limits, ms): run when relaxed or the oracle is wanted. */
  ladder: readonly number[];
  /** Oracle candidates: switch after pass k and (post-copy permitted) post-copy after pass k, k = 1…K. */
  oracleMaxPass: number;
  postcopyPermitted: boolean;
}

/**
 * The oracle's fixed choices besides the ladder's rungs ("let QEMU converge" with each limit):
 * switch over after pass k (switch-at-pass(k+1): the switchover is forced as pass k+1 begins) and,
 * when post-copy is permitted, post-copy after pass k.
 */
export function oracleCandidates(maxPass: number, postcopyPermitted: boolean): Unit[] {
  const ks = Array.from({ length: maxPass }, (_, i) => i + 1);
  return [
    ...ks.map((k) => unit('oracle', 'switch-at-pass', { pass: k + 1 })),
    ...(postcopyPermitted ? ks.map((k) => unit('oracle', 'postcopy-after', { pass: k })) : []),
  ];
}

/** Round-robin over groups: a, x, 1, b, y, 2, … — no kind of unit runs as one block. */
export function interleave<T>(groups: T[][]): T[] {
  const out: T[] = [];
  for (let i = 0; i < Math.max(0, ...groups.map((g) => g.length)); i++)
    for (const g of groups) if (i < g.length) out.push(g[i]!);
  return out;
}

/** Everything that runs once per workload and rep, in its base order (rep 0). */
export function benchUnits(o: UnitOptions): Unit[] {
  const matrix = o.policies
    .filter((p) => p !== 'relaxed' && p !== 'oracle')
    .map((p) => {
      const { policyName, config } = parseMatrixPolicy(p);
      const u = unit('matrix', policyName, config);
      return Object.keys(config).length ? { ...u, label: p.trim() } : u;
    });
  const wantsOracle = o.policies.includes('oracle');
  const ladder =
    o.policies.includes('relaxed') || wantsOracle
      ? [...new Set(o.ladder)]
          .sort((a, b) => a - b)
          .map((l) => unit('ladder', 'relaxed', { downtimeLimitMs: l }))
      : [];
  const oracle = wantsOracle ? oracleCandidates(o.oracleMaxPass, o.postcopyPermitted) : [];
  return interleave([matrix, ladder, oracle]);
}

/**
 * Where rep `rep`'s order starts in the base order: reps spread evenly over it, so with R reps and
 * n units each unit's position moves by about n/R from rep to rep (every rep starts elsewhere
 * while R ≤ n).
 */
export function rotationOffset(n: number, reps: number, rep: number): number {
  if (n === 0) return 0;
  return Math.floor((rep * n) / Math.max(1, reps)) % n;
}

export const rotate = <T>(xs: T[], by: number): T[] =>
  xs.length === 0 ? [] : xs.map((_, i) => xs[(i + by) % xs.length]!);

/** A run's key; QMP runs keep the key they had before there was a driver to choose (resume reads it). */
export const runKey = (role: Role, workload: string, label: string, rep: number, driver: Driver = 'qmp') =>
  `${role}|${workload}|${label}|${driver === 'qmp' ? '' : `${driver}|`}${rep}`;

/**
 * The whole bench in run order: rep by rep; within a rep, workloads in a rotated order and, per
 * workload, every unit in the base order rotated by rotationOffset. With several drivers, each
 * unit runs under every driver back to back (a driver is one more dimension, interleaved like the
 * policies: the runs a comparison pairs share the machine's state of the moment), the driver that
 * goes first alternating from unit to unit and rep to rep.
 */
export function benchSchedule(
  workloads: string[],
  units: Unit[],
  reps: number,
  drivers: readonly Driver[] = ['qmp'],
): PlannedRun[] {
  const plan: PlannedRun[] = [];
  for (let rep = 0; rep < reps; rep++) {
    const order = rotate(units, rotationOffset(units.length, reps, rep));
    let n = 0;
    for (const workload of rotate(workloads, rep % Math.max(1, workloads.length)))
      for (const u of order)
        for (const driver of rotate([...drivers], (rep + n++) % drivers.length))
          plan.push({ ...u, workload, rep, driver, key: runKey(u.role, workload, u.label, rep, driver) });
  }
  return plan;
}

/** Reps whose every planned run is recorded. */
export function completeReps(plan: PlannedRun[], runs: Pick<RunRecord, 'key'>[]): Set<number> {
  const have = new Set(runs.map((r) => r.key));
  const reps = new Set(plan.map((p) => p.rep));
  for (const p of plan) if (!have.has(p.key)) reps.delete(p.rep);
  return reps;
}

/**
 * For --resume: keep the runs of complete reps of this plan and drop the rest (a rep cut short,
 * runs of an older plan), so the re-run replaces whole reps.
 */
export function keepWholeReps<R extends Pick<RunRecord, 'key' | 'rep'>>(
  plan: PlannedRun[],
  runs: R[],
): { kept: R[]; dropped: R[] } {
  const complete = completeReps(plan, runs);
  const planned = new Set(plan.map((p) => p.key));
  const keep = (r: R) => planned.has(r.key) && complete.has(r.rep);
  return { kept: runs.filter(keep), dropped: runs.filter((r) => !keep(r)) };
}
