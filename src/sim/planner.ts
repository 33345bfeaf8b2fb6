import type { Fleet, FleetVm } from './fleet-spec.js';
import {
  evacuate,
  fixedConcurrency,
  predictor,
  streamCap,
  type Active,
  type FleetResult,
  type Strategy,
} from './fleet.js';
import type { SharedLink } from './link.js';
import type { SimResult } from './simulate.js';

type Predictor = ReturnType<typeof predictor>;

/** Shares of its bottleneck link the planner considers giving one migration: 1/j of it. */
const SHARES = [1, 2, 3, 4, 5, 6, 8, 10, 12, 16];
/** A share that fits the spare bandwidth is taken if it occupies at most this × the best link × time. */
const AREA_SLACK = 3;
/** Planned downtimes stay under this share of the SLO: in a fleet a migration's share moves. */
const SLO_MARGIN = 0.8;
/** The margins planEvacuation tries, in turn, until the evacuation keeps to the unavoidable violations. */
const MARGINS = [0.8, 0.7, 0.6];

export interface PlanOption {
  /** Bandwidth reserved for (and max-bandwidth of) its migration, bytes/s. */
  bps: number;
  /** Predicted solo migration at that bandwidth. */
  predicted: SimResult;
}

export interface PlanEntry {
  vm: string;
  /** The shares that complete and keep the SLO whenever the full share does, least link × time first. */
  options: PlanOption[];
}

/**
 * Our planner. Each VM's migration is predicted with the simulator itself, alone on its path at
 * 1/j of the bottleneck (j = 1…16; never more than its streams carry). Its options are the shares
 * at which it completes within 80% of the SLO (or, if the full share cannot, no more than 10%
 * over the full share's downtime), ranked by the link × time
 * they occupy (bandwidth × predicted total time): a VM that dirties little (its time is scanning
 * and fixed costs) is cheapest on a thin slice, one whose dirty pages outrun a slice on the whole
 * link. VMs go longest-predicted first (LPT); each starts as soon as one of its options fits the
 * bandwidth not reserved, on every link of its path, by the migrations predicted to be still
 * sending when its own will begin (after the setup time: destinations are prepared while others
 * send), backfilling past VMs that do not fit,
 * taking the cheapest that fits. Its max-bandwidth is its reservation.
 */
export function plannerStrategy(
  fleet: Fleet,
  opts: { maxPerHost?: number; sloMargin?: number; predict?: Predictor } = {},
): Strategy & { plan: Map<FleetVm, PlanEntry> } {
  const maxPerHost = opts.maxPerHost ?? 32;
  const plan = planOptions(fleet, opts.sloMargin ?? SLO_MARGIN, opts.predict);
  const cap = streamCap(fleet);
  const reserved = new Map<FleetVm, number>();
  /** When each admitted migration is predicted to stop sending. */
  const endsAt = new Map<FleetVm, number>();
  const setupMs = fleet.spec.setupS * 1000;
  // Bandwidth reserved, per link, by the migrations still sending at `from` (memoized per state).
  // One already past its predicted end is counted: when it will end is unknown.
  let memo = { now: -1, n: -1, from: -1, used: new Map<SharedLink, number>() };
  const free = (vm: FleetVm, active: Active[], now: number, from: number) => {
    if (memo.now !== now || memo.n !== active.length || memo.from !== from) {
      const used = new Map<SharedLink, number>();
      for (const a of active) {
        const end = endsAt.get(a.vm)!;
        if (end > from || end <= now)
          for (const l of a.vm.path) used.set(l, (used.get(l) ?? 0) + reserved.get(a.vm)!);
      }
      memo = { now, n: active.length, from, used };
    }
    return Math.min(...vm.path.map((l) => l.capacityBps - (memo.used.get(l) ?? 0)));
  };
  const perHost = (host: string, active: Active[]) => {
    let n = 0;
    for (const a of active) if (a.vm.host === host) n++;
    return n;
  };
  const cost = (vm: FleetVm) => plan.get(vm)!.options[0]!.predicted.totalTimeMs;
  return {
    name: 'planner',
    plan,
    order: (vms) => [...vms].sort((a, b) => cost(b) - cost(a)),
    admit: (vm, active, t) => {
      const options = plan.get(vm)!.options;
      if (perHost(vm.host, active) >= maxPerHost) return false;
      const spare = active.length === 0 ? Infinity : free(vm, active, t, t + setupMs);
      const best = options[0]!;
      const fit = options.find(
        (o) =>
          o.bps <= spare * (1 + 1e-9) &&
          o.bps * o.predicted.totalTimeMs <= AREA_SLACK * best.bps * best.predicted.totalTimeMs,
      );
      if (!fit) return false;
      reserved.set(vm, fit.bps);
      endsAt.set(vm, t + setupMs + fit.predicted.totalTimeMs);
      return true;
    },
    // Exactly its reservation: a cap that grows while others set up and shrinks when they send
    // would leave QEMU's bandwidth estimate (≥100 ms old) too high at the stop, and overshoot.
    bandwidth: (vm) => {
      const mine = reserved.get(vm)!;
      return mine >= cap ? undefined : mine;
    },
  };
}

/** Every VM's options: predicted at each share, filtered and ranked (see plannerStrategy). */
export function planOptions(
  fleet: Fleet,
  margin = SLO_MARGIN,
  predict: Predictor = predictor(fleet),
): Map<FleetVm, PlanEntry> {
  const cap = streamCap(fleet);
  const slo = fleet.spec.downtimeSloMs;
  const plan = new Map<FleetVm, PlanEntry>();
  for (const vm of fleet.vms) {
    const bottleneck = Math.min(...vm.path.map((l) => l.capacityBps));
    const rates = [...new Set(SHARES.map((j) => Math.min(cap, bottleneck / j)))].sort((a, b) => b - a);
    const full = predict(vm, rates[0]!);
    // Within the SLO with a margin (in a fleet its share moves), or no worse than the full share.
    const target =
      full.outcome === 'completed' && full.downtimeMs <= margin * slo ? margin * slo : full.downtimeMs * 1.1;
    const keepsSlo = (r: SimResult) => r.outcome === 'completed' && r.downtimeMs <= target;
    const options = rates
      .map((bps) => ({ bps, predicted: bps === rates[0] ? full : predict(vm, bps) }))
      .filter((o, i) => i === 0 || keepsSlo(o.predicted))
      .sort((a, b) => a.bps * a.predicted.totalTimeMs - b.bps * b.predicted.totalTimeMs);
    plan.set(vm, { vm: vm.name, options });
  }
  return plan;
}

/**
 * The planner checks its plans with the simulator and keeps the best: the packing plan above
 * with an SLO margin of 80%, then 70% and 60% while more migrations break the SLO than break it
 * alone on the full link (unavoidable); and, as concurrency candidates, 2, 3 and 4 migrations at a
 * time per host in its longest-first order without bandwidth caps. Best = fewest SLO violations,
 * then the shortest makespan.
 */
export function planEvacuation(fleet: Fleet): FleetResult {
  const predict = predictor(fleet);
  const slo = fleet.spec.downtimeSloMs;
  const plan = planOptions(fleet, SLO_MARGIN, predict);
  const unavoidable = [...plan.values()].filter((e) => {
    const full = [...e.options].sort((a, b) => b.bps - a.bps)[0]!.predicted;
    return full.outcome !== 'completed' || full.downtimeMs > slo;
  }).length;
  const better = (a: FleetResult, b: FleetResult | undefined) =>
    !b ||
    a.sloViolations < b.sloViolations ||
    (a.sloViolations === b.sloViolations && a.makespanMs < b.makespanMs);
  let best: FleetResult | undefined;
  for (const sloMargin of MARGINS) {
    const r = evacuate(fleet, plannerStrategy(fleet, { sloMargin, predict }));
    if (better(r, best)) best = r;
    if (r.sloViolations <= unavoidable) break;
  }
  const cost = (vm: FleetVm) => plan.get(vm)!.options[0]!.predicted.totalTimeMs;
  for (const n of [2, 3, 4]) {
    const fixed = fixedConcurrency(n);
    const r = evacuate(fleet, { ...fixed, order: (vms) => [...vms].sort((a, b) => cost(b) - cost(a)) });
    if (better(r, best)) best = r;
  }
  return { ...best!, strategy: 'planner' };
}
