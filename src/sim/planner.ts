import type { Fleet, FleetVm } from './fleet-spec.js';
import {
  evacuateWithin,
  fixedConcurrency,
  FLEET_STEP_MS,
  predictor,
  streamCap,
  type Active,
  type FleetResult,
  type Prediction,
  type Strategy,
} from './fleet.js';
import type { SharedLink } from './link.js';

type Predictor = ReturnType<typeof predictor>;

/** Shares of its bottleneck link the planner considers giving one migration: 1/j of it. */
const SHARES = [1, 1.25, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10, 12, 16];
/** A share that fits now is taken if it occupies at most this × the least link × time of the VM's options. */
const AREA_SLACK = 2;
/**
 * The calendar books up to this share of a link. Booked flat (each migration its max-bandwidth
 * for its whole predicted run), the caps of the migrations sending at once never sum past the
 * link, and max-min sharing then gives a migration in its stop-and-copy — which QEMU sends
 * regardless of max-bandwidth (ram_save_complete: "flush all remaining blocks regardless of rate
 * limiting") — at least its own cap: no reserve is needed for the switchover itself.
 */
const HEADROOM = 1;
/** Planned downtimes stay under this share of the SLO. */
const SLO_MARGIN = 0.9;
/** The margins planEvacuation tries, in turn, while more migrations break the SLO than must. */
const MARGINS = [0.9, 0.8, 0.7];
/** The orders planEvacuation tries (see plannerStrategy). */
const ORDERS = ['area', 'time'] as const;

export interface PlanOption {
  /** Bandwidth reserved for (and max-bandwidth of) its migration, bytes/s. */
  bps: number;
  /** Predicted solo migration at that bandwidth, with the bandwidth it uses step by step. */
  predicted: Prediction;
}

export interface PlanEntry {
  vm: string;
  /** The shares that complete and keep the SLO whenever the full share does, least link × time first. */
  options: PlanOption[];
}

export interface PlannerOptions {
  /** At most this many migrations per source host at once, setting up or sending (default 32). */
  maxPerHost?: number;
  /** Planned downtimes stay under this share of the SLO (default 0.9). */
  sloMargin?: number;
  /**
   * The queue: `area` = most link × time first (the migrations that hold the link longest are
   * not left for the end), `time` = longest predicted migration first (LPT). Default `area`.
   */
  order?: 'area' | 'time';
  /** The share of each link the calendar books (default HEADROOM). */
  headroom?: number;
  /**
   * What the calendar books for a migration: `flat` = its max-bandwidth for the whole predicted
   * migration (default), `profile` = the bandwidth its solo prediction uses step by step.
   */
  booking?: 'flat' | 'profile';
  predict?: Predictor;
}

/** Bytes a prediction has sent after each of its steps. */
const cumulative = new WeakMap<Prediction, Float64Array>();

/** How many steps into its prediction a migration is that has sent `bytes` (the last step not past them). */
function progressStep(p: Prediction, bytes: number): number {
  let cum = cumulative.get(p);
  if (!cum) {
    cum = new Float64Array(p.profile.length);
    let sum = 0;
    p.profile.forEach((bps, k) => (cum![k] = sum += (bps * FLEET_STEP_MS) / 1000));
    cumulative.set(p, cum);
  }
  let lo = 0;
  let hi = cum.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (cum[mid]! <= bytes * (1 + 1e-9) + 1) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/**
 * The link's calendar: for every link, the bandwidth the admitted migrations are predicted to use
 * in every FLEET_STEP_MS from now on (their solo predictions, each from when it begins to send).
 */
class Calendar {
  private readonly use = new Map<SharedLink, Float64Array>();
  constructor(private readonly headroom: number) {}

  private row(l: SharedLink, upTo: number): Float64Array {
    let r = this.use.get(l);
    if (!r || r.length < upTo) {
      const grown = new Float64Array(Math.max(upTo, 2 * (r?.length ?? 1024)));
      if (r) grown.set(r);
      this.use.set(l, (r = grown));
    }
    return r;
  }

  /** Does `profile`, from step `at` on, fit under every link's capacity on `path` (with `extra` in use)? */
  fits(path: SharedLink[], at: number, profile: Float32Array, extra: number): boolean {
    for (const l of path) {
      const r = this.row(l, at + profile.length);
      const v = l.variation;
      const steady = !v.schedule?.length && !(v.periodS && v.depth);
      const room = l.capacityBps * this.headroom - extra;
      for (let k = 0; k < profile.length; k++) {
        const cap = steady ? room : l.capacityAt((at + k) * FLEET_STEP_MS) * this.headroom - extra;
        if (r[at + k]! + profile[k]! > cap) return false;
      }
    }
    return true;
  }

  /** Adds (sign 1) or takes back (sign −1) a profile from step `at` on, from step `from` on only. */
  book(path: SharedLink[], at: number, profile: Float32Array, sign: 1 | -1, from = at): void {
    for (const l of path) {
      const r = this.row(l, at + profile.length);
      for (let k = Math.max(0, from - at); k < profile.length; k++) r[at + k]! += sign * profile[k]!;
    }
  }
}

/**
 * Our planner. Each VM's migration is predicted with the simulator itself, alone on its path at
 * 1/j of the bottleneck (never more than its streams carry), with the bandwidth it uses in every
 * step: all of its share while it sends pages, almost none while QEMU scans zero pages, syncs
 * its bitmap or switches over. Its options are the shares at which it completes within
 * `sloMargin` of the SLO (or, if the full share cannot, no more than 10% over the full share's
 * downtime), ranked by the link × time they occupy.
 *
 * The planner keeps a calendar of each link's bookings. A VM starts as soon as one of its options
 * fits, from when it will begin to send (after the orchestrator's set-up time: destinations are
 * prepared while others send) to its predicted end, under the link's capacity beside what the
 * admitted migrations booked, taking the cheapest option that fits, backfilling past VMs that
 * fit nowhere yet. Its max-bandwidth is its share. Booked `flat` (the default), a migration
 * holds its share for its whole predicted run, so the caps of the migrations sending at once
 * never sum past the link: each gets its cap (max-min fair), keeps ahead of its dirty rate as
 * predicted, and its QEMU's bandwidth estimate, and so its stop rule, holds; one in its
 * stop-and-copy (uncapped in QEMU) gets at least its cap, and takes more only from what the
 * others leave. Booked by `profile` (the prediction's use step by step), others are packed into
 * its gaps (zero-page scans, syncs): denser, but a migration that falls behind its prediction —
 * squeezed by another's uncapped stop-and-copy — then overlaps the bookings made in those gaps,
 * the caps sum past the link, and the squeeze spreads (on a 1,000-VM host, 57–100 SLO
 * violations where 50 are unavoidable; flat: 50). A migration that ends early gives its booking
 * back; one behind its prediction has its booking moved later; one past its predicted end is
 * counted at its share until it ends.
 */
export function plannerStrategy(
  fleet: Fleet,
  opts: PlannerOptions = {},
): Strategy & { plan: Map<FleetVm, PlanEntry> } {
  const maxPerHost = opts.maxPerHost ?? 32;
  const plan = planOptions(fleet, opts.sloMargin ?? SLO_MARGIN, opts.predict);
  const cap = streamCap(fleet);
  const calendar = new Calendar(opts.headroom ?? HEADROOM);
  const flat = new WeakMap<PlanOption, Float32Array>();
  const booking = (o: PlanOption): Float32Array => {
    if (opts.booking === 'profile') return o.predicted.profile;
    let f = flat.get(o);
    if (!f) flat.set(o, (f = new Float32Array(o.predicted.profile.length).fill(o.bps)));
    return f;
  };
  const setupSteps = Math.ceil((fleet.spec.setupS * 1000) / FLEET_STEP_MS);
  /** What each admitted migration booked: its option and the step it begins to send. */
  const booked = new Map<FleetVm, { option: PlanOption; at: number }>();
  // Per admission round (one `now`, one set of active migrations): the shares of migrations past
  // their prediction, and the (workload, RAM, path) kinds that fit nowhere this round.
  let round = {
    now: -1,
    n: -1,
    overrun: new Map<SharedLink, number>(),
    full: new Set<string>(),
    perHost: new Map<string, number>(),
  };
  const kinds = new Map<FleetVm, string>();
  const kind = (vm: FleetVm) => {
    let k = kinds.get(vm);
    if (k === undefined)
      kinds.set(
        vm,
        (k = `${vm.workload}@${vm.ramMiB}|${vm.policy.policy.name}|${JSON.stringify(vm.policy.config)}|${vm.path.map((l) => l.name).join('>')}`),
      );
    return k;
  };
  const startRound = (active: Active[], now: number) => {
    if (round.now === now && round.n === active.length) return;
    const step = Math.round(now / FLEET_STEP_MS);
    const running = new Set(active.map((a) => a.vm));
    // Migrations that ended give back what they booked from now on.
    for (const [vm, b] of booked)
      if (!running.has(vm)) {
        calendar.book(vm.path, b.at, booking(b.option), -1, step);
        booked.delete(vm);
      }
    // A migration behind its prediction (squeezed for a moment, by another's stop-and-copy that
    // QEMU runs without its max-bandwidth) has its booking moved later by as much: the gaps the
    // calendar offers are where its migrations will really leave them.
    for (const a of active) {
      const b = booked.get(a.vm);
      if (!b || step <= b.at) continue;
      const lag = step - b.at - progressStep(b.option.predicted, a.run.m.transferred);
      if (lag < 2) continue;
      calendar.book(a.vm.path, b.at, booking(b.option), -1, step);
      b.at += lag;
      calendar.book(a.vm.path, b.at, booking(b.option), 1, step);
    }
    const overrun = new Map<SharedLink, number>();
    for (const [vm, b] of booked)
      if (b.at + b.option.predicted.profile.length <= step)
        for (const l of vm.path) overrun.set(l, (overrun.get(l) ?? 0) + b.option.bps);
    const perHost = new Map<string, number>();
    for (const a of active) perHost.set(a.vm.host, (perHost.get(a.vm.host) ?? 0) + 1);
    round = { now, n: active.length, overrun, full: new Set(), perHost };
  };
  const best = (vm: FleetVm) => plan.get(vm)!.options[0]!;
  const area = (o: PlanOption) => o.bps * o.predicted.totalTimeMs;
  return {
    name: 'planner',
    plan,
    order: (vms) =>
      [...vms].sort((a, b) =>
        opts.order === 'time'
          ? best(b).predicted.totalTimeMs - best(a).predicted.totalTimeMs
          : area(best(b)) - area(best(a)),
      ),
    admit: (vm, active, t) => {
      startRound(active, t);
      if ((round.perHost.get(vm.host) ?? 0) >= maxPerHost) return false;
      // VMs of one kind have the same options: if one fits nowhere this round, none does (bookings only add).
      const k = kind(vm);
      if (round.full.has(k) && active.length > 0) return false;
      const at = Math.round(t / FLEET_STEP_MS) + setupSteps;
      const extra = Math.max(0, ...vm.path.map((l) => round.overrun.get(l) ?? 0));
      const options = plan.get(vm)!.options;
      const limit = AREA_SLACK * area(options[0]!);
      let fit = options.find((o) => area(o) <= limit && calendar.fits(vm.path, at, booking(o), extra));
      // With nothing running, the first VM always starts (its full share fits an idle link).
      if (!fit && active.length === 0) fit = [...options].sort((a, b) => b.bps - a.bps)[0]!;
      if (!fit) {
        round.full.add(k);
        return false;
      }
      calendar.book(vm.path, at, booking(fit), 1);
      booked.set(vm, { option: fit, at });
      round.n++;
      round.perHost.set(vm.host, (round.perHost.get(vm.host) ?? 0) + 1);
      return true;
    },
    // Exactly its booking: a cap that grows while others set up and shrinks when they send
    // would leave QEMU's bandwidth estimate (≥100 ms old) too high at the stop, and overshoot.
    bandwidth: (vm) => {
      const mine = booked.get(vm)?.option.bps;
      return mine === undefined || mine >= cap ? undefined : mine;
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
    // Within the SLO with a margin, or no worse than the full share.
    const target =
      full.outcome === 'completed' && full.downtimeMs <= margin * slo ? margin * slo : full.downtimeMs * 1.1;
    const keeps = (r: Prediction) => r.outcome === 'completed' && r.downtimeMs <= target;
    const options = rates
      .map((bps) => ({ bps, predicted: bps === rates[0] ? full : predict(vm, bps) }))
      .filter((o, i) => i === 0 || keeps(o.predicted))
      .sort((a, b) => a.bps * a.predicted.totalTimeMs - b.bps * b.predicted.totalTimeMs);
    plan.set(vm, { vm: vm.name, options });
  }
  return plan;
}

/** The plan planEvacuation chose: the planner's options, or longest-first fixed concurrency. */
export interface ChosenPlan {
  kind: 'calendar' | 'fixed';
  sloMargin?: number;
  /** calendar: how it booked the link (planEvacuation books flat; see plannerStrategy). */
  booking?: 'flat' | 'profile';
  /** fixed: `time` = longest predicted first, `queue` = the fleet's own order. */
  order?: 'area' | 'time' | 'queue';
  /** fixed: migrations at a time per host. */
  perHost?: number;
}

/**
 * The planner checks its plans with the simulator and keeps the best: the calendar plan above
 * (booked flat) in both orders with an SLO margin of 90%, then 80% and 70% while more migrations break the SLO
 * than break it alone on the full share (unavoidable); and, as a fallback the calendar must beat,
 * 2, 3 and 4 migrations at a time per host without caps, longest-first and in the fleet's own
 * order (where it finds nothing better, the planner is fixed concurrency, and says so). Best = fewest SLO
 * violations — no more than the migrations that break it even alone on the full share, or than the
 * best plan tried — then the shortest makespan. Once a plan is within the unavoidable violations,
 * each later one is given up as soon as it runs past that plan's makespan (it could not be picked).
 * `chosen` says which plan it was.
 */
export function planEvacuation(fleet: Fleet): FleetResult & { chosen: ChosenPlan } {
  const predict = predictor(fleet);
  const slo = fleet.spec.downtimeSloMs;
  const plan = planOptions(fleet, SLO_MARGIN, predict);
  const unavoidable = [...plan.values()].filter((e) => {
    const full = [...e.options].sort((a, b) => b.bps - a.bps)[0]!.predicted;
    return full.outcome !== 'completed' || full.downtimeMs > slo;
  }).length;
  // Among the plans that break the SLO no more often than must (or than the best one found), the shortest.
  const tried: (FleetResult & { chosen: ChosenPlan })[] = [];
  const consider = (r: FleetResult, chosen: ChosenPlan) => tried.push({ ...r, chosen });
  const pick = () => {
    const allowed = Math.max(unavoidable, Math.min(...tried.map((r) => r.sloViolations)));
    return tried
      .filter((r) => r.sloViolations <= allowed)
      .sort((a, b) => a.makespanMs - b.makespanMs || a.sloViolations - b.sloViolations)[0]!;
  };
  // Once a plan breaks the SLO no more often than must, another could only be picked by being
  // shorter: each later one is given up once it runs past that plan's makespan.
  const limit = () => {
    const best = tried.length ? pick() : undefined;
    return best && best.sloViolations <= unavoidable ? best.makespanMs : Infinity;
  };
  const tryPlan = (s: Strategy, chosen: ChosenPlan) => {
    const r = evacuateWithin(fleet, s, limit());
    if (r) consider(r, chosen);
  };
  for (const sloMargin of MARGINS) {
    for (const order of ORDERS)
      tryPlan(plannerStrategy(fleet, { sloMargin, order, predict }), {
        kind: 'calendar',
        sloMargin,
        order,
        booking: 'flat',
      });
    if (pick().sloViolations <= unavoidable) break;
  }
  const cost = (vm: FleetVm) => plan.get(vm)!.options[0]!.predicted.totalTimeMs;
  for (const n of [2, 3, 4]) {
    const fixed = fixedConcurrency(n);
    tryPlan(
      { ...fixed, order: (vms) => [...vms].sort((a, b) => cost(b) - cost(a)) },
      { kind: 'fixed', perHost: n, order: 'time' },
    );
    tryPlan(fixed, { kind: 'fixed', perHost: n, order: 'queue' });
  }
  return { ...pick(), strategy: 'planner' };
}
