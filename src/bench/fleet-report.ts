import { quantile } from './stats.js';
import type { Block } from './tables.js';
import { UsageError } from '../util/errors.js';
import type { Fleet } from '../sim/fleet-spec.js';
import {
  evacuate,
  fixedConcurrency,
  kubevirtStrategy,
  novaStrategy,
  predictor,
  streamCap,
  type FleetResult,
  type Strategy,
} from '../sim/fleet.js';
import { planEvacuation, planOptions, type ChosenPlan } from '../sim/planner.js';
import type { SharedLink } from '../sim/link.js';

const GiB = 2 ** 30;

/** The fixed concurrencies `fixed` runs: the best of them is the planner's yardstick. */
export const FIXED_MAX = 12;

/** `nova`, `kubevirt`, `fixed:N`, `fixed` (= fixed:1…12) or `planner`, evacuated in turn. */
export function runStrategies(fleet: Fleet, names: string[]): FleetResult[] {
  const strategies: (() => Strategy | 'planner')[] = [];
  for (const name of names) {
    const fixed = /^fixed:(\d+)$/.exec(name);
    if (name === 'nova') strategies.push(novaStrategy);
    else if (name === 'kubevirt') strategies.push(kubevirtStrategy);
    else if (name === 'planner') strategies.push(() => 'planner');
    else if (name === 'fixed')
      for (let n = 1; n <= FIXED_MAX; n++) strategies.push(() => fixedConcurrency(n));
    else if (fixed && Number(fixed[1]) >= 1) strategies.push(() => fixedConcurrency(Number(fixed[1])));
    else throw new UsageError(`unknown strategy '${name}': use nova, kubevirt, fixed, fixed:N or planner`);
  }
  return strategies.map((make) => {
    const t0 = performance.now();
    const strategy = make();
    const r = strategy === 'planner' ? planEvacuation(fleet) : evacuate(fleet, strategy);
    // The planner's predictions and its own check of the plan count in its wall time.
    return { ...r, simWallMs: performance.now() - t0 };
  });
}

/**
 * A floor no strategy can beat: one set-up time, then every VM's data (as predicted alone at its
 * full share, the least it sends) over the capacity of its links — the busiest link decides.
 */
export function lowerBoundMs(fleet: Fleet): number {
  const predict = predictor(fleet);
  const cap = streamCap(fleet);
  const bytes = new Map<SharedLink, number>();
  for (const vm of fleet.vms) {
    const share = Math.min(cap, ...vm.path.map((l) => l.capacityBps));
    const sent = predict(vm, share).transferredBytes;
    for (const l of vm.path) bytes.set(l, (bytes.get(l) ?? 0) + sent);
  }
  return fleet.spec.setupS * 1000 + Math.max(0, ...[...bytes].map(([l, b]) => (b / l.capacityBps) * 1000));
}

/**
 * The planner's own floor: one set-up time, then, on the busiest link, the link × time of every
 * VM's cheapest option (the share that keeps its SLO for the least bandwidth × predicted time) over
 * the link's capacity. Booking each share flat for its run, no calendar plan can end sooner, however
 * it packs them; a strategy that lets migrations share the link uncapped can (at more violations).
 */
export function plannerFloorMs(fleet: Fleet): number {
  const plan = planOptions(fleet);
  const area = new Map<SharedLink, number>();
  for (const vm of fleet.vms) {
    const least = Math.min(...plan.get(vm)!.options.map((o) => (o.bps * o.predicted.totalTimeMs) / 1000));
    for (const l of vm.path) area.set(l, (area.get(l) ?? 0) + least);
  }
  return fleet.spec.setupS * 1000 + Math.max(0, ...[...area].map(([l, a]) => (a / l.capacityBps) * 1000));
}

/** What planEvacuation chose, in words. */
export function chosenText(c: ChosenPlan | undefined): string | undefined {
  if (!c) return undefined;
  if (c.kind === 'fixed')
    return `${c.perHost} at a time per host, ${c.order === 'queue' ? 'in the fleet’s order' : 'longest first'} (no calendar plan did better)`;
  return `the link calendar, ${c.order === 'time' ? 'longest' : 'most link × time'} first, downtimes planned within ${Math.round((c.sloMargin ?? 0) * 100)}% of the SLO`;
}

/** The planner against fixed concurrency: the fastest, and the fastest with no more SLO violations than the planner. */
export function plannerVerdict(
  results: FleetResult[],
  lowerMs?: number,
  floorMs?: number,
): string | undefined {
  const planner = results.find((r) => r.strategy === 'planner') as
    (FleetResult & { chosen?: ChosenPlan }) | undefined;
  const fixed = results.filter((r) => r.strategy !== 'planner');
  if (!planner || fixed.length === 0) return undefined;
  const shorter = (r: FleetResult) => {
    const x = Math.round((1 - planner.makespanMs / r.makespanMs) * 100);
    return x >= 0 ? `${x}% shorter` : `${-x}% longer`;
  };
  const fastest = [...fixed].sort((a, b) => a.makespanMs - b.makespanMs)[0]!;
  const fair = fixed
    .filter((r) => r.sloViolations <= planner.sloViolations)
    .sort((a, b) => a.makespanMs - b.makespanMs)[0];
  const parts = [
    `planner: makespan ${shorter(fastest)} than the fastest fixed strategy, ${fastest.strategy} (SLO violations ${planner.sloViolations} vs ${fastest.sloViolations})`,
  ];
  if (fair && fair !== fastest)
    parts.push(
      `${shorter(fair)} than the fastest fixed strategy with no more SLO violations than the planner, ${fair.strategy} (${fair.sloViolations})`,
    );
  else if (!fair) parts.push('every fixed strategy has more SLO violations than the planner');
  const chosen = chosenText(planner.chosen);
  if (chosen) parts.push(`its plan: ${chosen}`);
  if (lowerMs !== undefined)
    parts.push(
      `lower bound (set-up + data / link) ${s(lowerMs)} s: planner ${pct(planner.makespanMs, lowerMs)}, ${fastest.strategy} ${pct(fastest.makespanMs, lowerMs)} above it`,
    );
  if (floorMs !== undefined)
    parts.push(
      `the planner's floor (set-up + each VM's cheapest SLO-keeping share × time / link) ${s(floorMs)} s: planner ${pct(planner.makespanMs, floorMs)} above it`,
    );
  return parts.join('; ') + '.';
}

const s = (ms: number) => (ms / 1000).toFixed(1);
const pct = (x: number, floor: number) => `${Math.round((x / floor - 1) * 100)}%`;

export function summaryRows(results: FleetResult[]): string[][] {
  return results.map((r) => {
    const dt = r.vms.filter((v) => v.outcome === 'completed').map((v) => v.downtimeMs);
    return [
      r.strategy,
      s(r.makespanMs),
      String(r.maxConcurrent),
      `${r.completed}/${r.vms.length}`,
      String(r.failed),
      String(r.sloViolations),
      dt.length ? quantile(dt, 0.5).toFixed(0) : '–',
      dt.length ? quantile(dt, 0.95).toFixed(0) : '–',
      dt.length ? Math.max(...dt).toFixed(0) : '–',
      (r.transferredBytes / GiB).toFixed(0),
      r.simWallMs.toFixed(0),
    ];
  });
}

export const SUMMARY_HEAD = [
  'strategy',
  'makespan s',
  'max concurrent',
  'completed',
  'failed',
  'SLO violations',
  'downtime p50 ms',
  'p95 ms',
  'max ms',
  'data GiB',
  'sim wall ms',
];

/** The evacuation report as blocks (report.md and report.html from the same ones). */
export function fleetBlocks(fleet: Fleet, results: FleetResult[], file: string): Block[] {
  const spec = fleet.spec;
  const links = [...fleet.links.values()].map(
    (l) => `${l.name} ${((l.capacityBps * 8) / 1e9).toFixed(1)} Gbit/s`,
  );
  const blocks: Block[] = [
    { kind: 'heading', level: 1, text: `Evacuation what-if: ${file}` },
    {
      kind: 'paragraph',
      text:
        `${fleet.vms.length} VMs (${(fleet.vms.reduce((x, v) => x + v.ramMiB, 0) / 1024).toFixed(0)} GiB of RAM) over ${links.join(', ')}; ` +
        `policy ${spec.policy} unless a VM says otherwise; downtime SLO ${spec.downtimeSloMs} ms; deadline ${spec.deadlineS} s; ` +
        `setup ${spec.setupS} s per migration; ${spec.retries} retry per failed migration; seed ${spec.seed}. ` +
        'Every migration is the controller core over the simulator’s model; the migrations share their links max-min fairly, step by step.',
    },
    { kind: 'table', table: { head: SUMMARY_HEAD, rows: summaryRows(results) } },
  ];
  const verdict = plannerVerdict(results, lowerBoundMs(fleet), plannerFloorMs(fleet));
  if (verdict) blocks.push({ kind: 'paragraph', text: verdict });
  for (const r of results) {
    blocks.push({ kind: 'heading', level: 2, text: `${r.strategy}: per VM` });
    blocks.push({
      kind: 'table',
      table: {
        head: [
          'VM',
          'host',
          'RAM MiB',
          'workload',
          'start s',
          'end s',
          'outcome',
          'downtime ms',
          'data MiB',
          'SLO',
        ],
        rows: [...r.vms]
          .sort((a, b) => a.startedAtMs - b.startedAtMs)
          .map((v) => [
            v.vm,
            v.host,
            String(v.ramMiB),
            v.workload,
            s(v.startedAtMs),
            s(v.endedAtMs),
            v.outcome + (v.postcopy ? ' (post-copy)' : '') + (v.attempts > 1 ? ` (try ${v.attempts})` : ''),
            v.outcome === 'completed' ? v.downtimeMs.toFixed(0) : '–',
            (v.transferredBytes / 2 ** 20).toFixed(0),
            v.sloViolated ? 'violated' : 'ok',
          ]),
      },
    });
  }
  return blocks;
}
