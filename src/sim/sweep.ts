import { ladderSearch, RELAXED_LADDER } from '../policy/relaxed.js';
import { parseLink, parseWorkload, workloadFootprintMib } from '../util/specs.js';
import {
  checkPolicyName,
  parsePolicyOptions,
  policyLabel,
  resolvePolicy,
  type ResolvedPolicy,
} from '../policy/index.js';
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

const label = (p: ResolvedPolicy) => policyLabel(p.policy.name, p.config as Record<string, unknown>);

/** Every workload × RAM × link × policy, simulated; relaxed(L*) climbs the ladder per point. */
export function runSweep(o: SweepOptions): SweepRun[] {
  for (const p of o.policies) checkPolicyName(p);
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
            // relaxed(L*): the smallest rung with which QEMU completes by itself.
            const tried = new Map<number, SimResult>();
            const rung = (l: number) =>
              tried.get(l) ?? tried.set(l, sim(resolvePolicy('relaxed', { downtimeLimitMs: l }))).get(l)!;
            const limit =
              ladderSearch(RELAXED_LADDER, (l) => rung(l).outcome === 'completed') ?? RELAXED_LADDER.at(-1)!;
            policy = resolvePolicy('relaxed', { downtimeLimitMs: limit });
            result = rung(limit);
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
