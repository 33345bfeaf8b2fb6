import { UsageError } from '../util/errors.js';
import type { Fleet, FleetVm } from './fleet-spec.js';
import type { SharedLink } from './link.js';
import { DEFAULT_PARAMS, streamCapBps } from './params.js';
import { SimRun, type SimOptions, type SimResult } from './simulate.js';

/**
 * Host evacuation, simulated: every VM's migration is a SimRun (the controller core over the
 * model), all of them stepped together; in each step the active migrations share their links
 * (max-min fair over every link on their path, each capped by its streams and max-bandwidth).
 * A strategy decides the order, when the next migration may start and its max-bandwidth.
 */
export interface Strategy {
  name: string;
  /** The queue, in the order migrations are started. */
  order(vms: FleetVm[]): FleetVm[];
  /** May `vm` start at `tMs`, with `active` running? */
  admit(vm: FleetVm, active: Active[], tMs: number): boolean;
  /** QEMU max-bandwidth for its migration now (bytes/s), with `active` running; undefined = none. */
  bandwidth?(vm: FleetVm, active: Active[], queueEmpty: boolean): number | undefined;
}

export interface Active {
  vm: FleetVm;
  run: SimRun;
  /** When the orchestrator started it, and when QEMU began to send (after the setup time). */
  startedAt: number;
  sendingAt: number;
  cap: number | undefined;
}

export interface VmOutcome {
  vm: string;
  host: string;
  ramMiB: number;
  workload: string;
  attempts: number;
  outcome: SimResult['outcome'];
  startedAtMs: number;
  endedAtMs: number;
  downtimeMs: number;
  transferredBytes: number;
  postcopy: boolean;
  sloViolated: boolean;
}

export interface FleetResult {
  strategy: string;
  makespanMs: number;
  vms: VmOutcome[];
  completed: number;
  failed: number;
  sloViolations: number;
  transferredBytes: number;
  maxConcurrent: number;
  simWallMs: number;
}

/** The simulation step of fleet runs, ms: one QEMU iteration and one controller poll per step. */
export const FLEET_STEP_MS = 50;
/** Besides when a migration ends, the strategy is asked to admit more this often (ms). */
const ADMIT_EVERY_MS = 250;

/** Options every migration of the fleet is simulated with (its link's rate is set per step). */
export function vmOptions(fleet: Fleet, vm: FleetVm, extra: Partial<SimOptions> = {}): SimOptions {
  const s = fleet.spec;
  const bottleneck = Math.min(...vm.path.map((l) => l.capacityBps));
  return {
    ramBytes: vm.ramMiB * 2 ** 20,
    linkBps: bottleneck,
    rttMs: Math.max(...vm.path.map((l) => l.rttMs)),
    classes: vm.classes,
    policy: vm.policy,
    downtimeBudgetMs: s.downtimeSloMs,
    deadlineMs: s.deadlineS * 1000,
    postcopyPermitted: s.postcopyPermitted,
    params: fleet.params,
    stepMs: FLEET_STEP_MS,
    ...extra,
  };
}

/**
 * Max-min fair rates for flows over several links (progressive filling): raise every unfrozen
 * flow's rate together until a link is full or a flow has what it wants; freeze those; repeat.
 */
export function progressiveFill(flows: { demand: number; path: SharedLink[] }[], tMs: number): number[] {
  const rate = flows.map(() => 0);
  const frozen = flows.map((f) => !(f.demand > 0));
  const left = new Map<SharedLink, number>();
  for (const f of flows) for (const l of f.path) left.set(l, l.capacityAt(tMs));
  for (let round = 0; round <= flows.length + left.size; round++) {
    const users = new Map<SharedLink, number>();
    flows.forEach((f, i) => {
      if (!frozen[i]) for (const l of f.path) users.set(l, (users.get(l) ?? 0) + 1);
    });
    if (users.size === 0) break;
    let delta = Infinity;
    for (const [l, n] of users) delta = Math.min(delta, left.get(l)! / n);
    flows.forEach((f, i) => {
      if (!frozen[i]) delta = Math.min(delta, f.demand - rate[i]!);
    });
    flows.forEach((f, i) => {
      if (frozen[i]) return;
      rate[i]! += delta;
      for (const l of f.path) left.set(l, left.get(l)! - delta);
    });
    flows.forEach((f, i) => {
      if (!frozen[i] && (rate[i]! >= f.demand - 1e-9 || f.path.some((l) => left.get(l)! <= 1e-6)))
        frozen[i] = true;
    });
  }
  return rate;
}

/** Evacuates the fleet under a strategy. */
export function evacuate(fleet: Fleet, strategy: Strategy): FleetResult {
  return evacuateWithin(fleet, strategy, Infinity)!;
}

/**
 * Evacuates the fleet under a strategy, giving up (undefined) once the evacuation has run past
 * `untilMs` of simulated time: a plan that cannot beat one already found need not be finished.
 */
export function evacuateWithin(fleet: Fleet, strategy: Strategy, untilMs: number): FleetResult | undefined {
  const t0 = performance.now();
  const queue = strategy.order(fleet.vms).map((vm) => ({ vm, attempts: 0 }));
  const active: (Active & { attempts: number })[] = [];
  const done: VmOutcome[] = [];
  let t = 0;
  let maxConcurrent = 0;
  let changed = true;
  while (queue.length || active.length) {
    // Admission is tried when a migration ended, and every ADMIT_EVERY_MS (plans depend on time).
    if (changed || t % ADMIT_EVERY_MS === 0) startAdmitted(fleet, strategy, queue, active, t);
    changed = false;
    maxConcurrent = Math.max(maxConcurrent, active.length);
    if (!active.length) throw new UsageError(`strategy ${strategy.name} admits none of the queued VMs`);
    const emptyQueue = queue.length === 0;
    for (const a of active) {
      const cap = strategy.bandwidth?.(a.vm, active, emptyQueue);
      if (cap !== a.cap) a.run.setMaxBandwidth((a.cap = cap));
    }
    const rates = progressiveFill(
      active.map((a) => ({ demand: t >= a.sendingAt ? a.run.usableBps() : 0, path: a.vm.path })),
      t,
    );
    active.forEach((a, i) => {
      if (t >= a.sendingAt) a.run.step(rates[i]!);
    });
    t += FLEET_STEP_MS;
    if (t > untilMs) return undefined;
    for (let i = active.length - 1; i >= 0; i--) {
      const a = active[i]!;
      if (!a.run.done) continue;
      active.splice(i, 1);
      changed = true;
      const r = a.run.result();
      if (r.outcome !== 'completed' && a.attempts <= fleet.spec.retries) {
        queue.push({ vm: a.vm, attempts: a.attempts });
        continue;
      }
      done.push(outcome(fleet, a, r));
    }
  }
  return summarizeFleet(strategy.name, done, maxConcurrent, performance.now() - t0);
}

function startAdmitted(
  fleet: Fleet,
  strategy: Strategy,
  queue: { vm: FleetVm; attempts: number }[],
  active: (Active & { attempts: number })[],
  t: number,
): void {
  for (let i = 0; i < queue.length; i++) {
    const q = queue[i]!;
    if (!strategy.admit(q.vm, active, t)) continue;
    queue.splice(i--, 1);
    const cap = strategy.bandwidth?.(q.vm, active, queue.length === 0);
    const run = new SimRun(vmOptions(fleet, q.vm, { maxBandwidthBps: cap }));
    const sendingAt = t + fleet.spec.setupS * 1000;
    active.push({ vm: q.vm, run, startedAt: t, sendingAt, cap, attempts: q.attempts + 1 });
  }
}

function outcome(fleet: Fleet, a: Active & { attempts: number }, r: SimResult): VmOutcome {
  const ok = r.outcome === 'completed';
  return {
    vm: a.vm.name,
    host: a.vm.host,
    ramMiB: a.vm.ramMiB,
    workload: a.vm.workload,
    attempts: a.attempts,
    outcome: r.outcome,
    startedAtMs: a.startedAt,
    endedAtMs: a.sendingAt + r.totalTimeMs,
    downtimeMs: ok ? r.downtimeMs : 0,
    transferredBytes: r.transferredBytes,
    postcopy: r.postcopy,
    sloViolated: !ok || r.downtimeMs > fleet.spec.downtimeSloMs,
  };
}

function summarizeFleet(
  strategy: string,
  vms: VmOutcome[],
  maxConcurrent: number,
  wallMs: number,
): FleetResult {
  return {
    strategy,
    makespanMs: Math.max(0, ...vms.map((v) => v.endedAtMs)),
    vms,
    completed: vms.filter((v) => v.outcome === 'completed').length,
    failed: vms.filter((v) => v.outcome !== 'completed').length,
    sloViolations: vms.filter((v) => v.sloViolated).length,
    transferredBytes: vms.reduce((s, v) => s + v.transferredBytes, 0),
    maxConcurrent,
    simWallMs: wallMs,
  };
}

const perHost = (vm: FleetVm, active: Active[]) => active.filter((a) => a.vm.host === vm.host).length;

/** N migrations at a time per source host (and at most `cluster` in all), in queue order. */
export function fixedConcurrency(perNode: number, cluster = Infinity, name = `fixed:${perNode}`): Strategy {
  return {
    name,
    order: (vms) => vms,
    admit: (vm, active) => perHost(vm, active) < perNode && active.length < cluster,
  };
}

/** Nova: `max_concurrent_live_migrations` = 1 per compute host (nova.conf default), queue order. */
export const novaStrategy = (): Strategy => fixedConcurrency(1, Infinity, 'nova (1 per host)');

/**
 * KubeVirt: `parallelOutboundMigrationsPerNode` 2 and `parallelMigrationsPerCluster` 5
 * (MigrationConfiguration defaults), no per-migration bandwidth limit (bandwidthPerMigration 0).
 */
export const kubevirtStrategy = (): Strategy => fixedConcurrency(2, 5, 'kubevirt (2/node, 5/cluster)');

/** Strategy names the CLI takes: nova, kubevirt, fixed:N, best-fixed, planner. */
export function strategyNames(): string[] {
  return ['nova', 'kubevirt', 'fixed:N', 'best-fixed', 'planner'];
}

/** The best fixed per-host concurrency (1…maxN) by makespan, then SLO violations. */
export function bestFixed(fleet: Fleet, maxN = 12): FleetResult {
  let best: FleetResult | undefined;
  for (let n = 1; n <= maxN; n++) {
    const r = evacuate(fleet, fixedConcurrency(n));
    if (!best || r.makespanMs < best.makespanMs) best = r;
  }
  return { ...best!, strategy: `best fixed (${best!.strategy})` };
}

/**
 * A solo prediction of one VM's migration with `bps` to itself (its max-bandwidth, and the link it
 * has): the simulator itself, stepped as the fleet steps, with the bandwidth it used in every step
 * from its first byte on (`profile`, bytes/s per FLEET_STEP_MS): low while QEMU scans zero pages,
 * syncs its bitmap or switches over.
 */
export interface Prediction extends SimResult {
  profile: Float32Array;
}

export function predictor(fleet: Fleet) {
  const cache = new Map<string, Prediction>();
  return (vm: FleetVm, bps: number): Prediction => {
    const key = `${vm.workload}@${vm.ramMiB}|${vm.policy.policy.name}|${JSON.stringify(vm.policy.config)}|${vm.path.map((l) => l.name).join('>')}|${Math.round(bps)}`;
    let r = cache.get(key);
    if (!r) {
      const run = new SimRun(vmOptions(fleet, vm, { linkBps: bps }));
      const used: number[] = [];
      while (!run.done) {
        const before = run.m.transferred;
        run.step(Math.min(run.demandBps(), bps));
        used.push(((run.m.transferred - before) * 1000) / FLEET_STEP_MS);
      }
      r = { ...run.result(), profile: Float32Array.from(used) };
      cache.set(key, r);
    }
    return r;
  };
}

/** The per-VM stream cap in this fleet. */
export function streamCap(fleet: Fleet): number {
  return streamCapBps({ ...DEFAULT_PARAMS, ...fleet.params });
}
