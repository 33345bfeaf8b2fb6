import { z } from 'zod';
import { checkMigrationUri } from '../core/uri.js';
import { checkLibvirtMigrateUri, type LibvirtEvacuee } from '../libvirt/evacuate.js';
import { DomainName } from '../libvirt/checks.js';
import { parseLocalUri } from '../libvirt/index.js';
import { slotExitCode, type QmpEvacuee } from '../migration/evacuate.js';
import { makespanMs, worstExitCode, type QueueRun, type QueueSlot } from '../util/queue.js';
import type { MigrationResult } from '../migration/session.js';
import { resolvePolicy, type ResolvedPolicy } from '../policy/index.js';
import { buildFleet, type Fleet, type FleetVm } from '../sim/fleet-spec.js';
import { evacuate, fixedConcurrency, type FleetResult, type Strategy } from '../sim/fleet.js';
import { planEvacuation, plannerStrategy } from '../sim/planner.js';
import { readInputFile } from '../util/fs.js';
import { UsageError, type ExitCode } from '../util/errors.js';

/** A plan for hundreds of VMs is a few hundred KB. */
const MAX_PLAN_BYTES = 4 * 2 ** 20;

/** `fixed:N` / a number N (N at a time, in the plan's order), or `planner`. */
export type EvacStrategy = number | 'planner';

/** What every plan VM says, whichever driver migrates it. */
const vmFields = {
  name: z.string().min(1).max(200),
  ramMiB: z.number().int().positive(),
  /** What the simulator assumes the guest does (guest-program spec or trace:FILE), for the planner and the prediction. */
  workload: z.string().min(1).default('idle'),
  policy: z.string().min(1).optional(),
  policyOptions: z.record(z.string(), z.union([z.string(), z.number(), z.boolean()])).optional(),
};

/** A VM between two QEMU monitors we are handed (as `migrate --src --dst --uri [--incoming]`). */
const QmpVmSchema = z
  .object({
    ...vmFields,
    /** QMP socket path or HOST:PORT of the source and of the destination (started with -incoming defer -S). */
    source: z.string().min(1),
    destination: z.string().min(1),
    /** Where the source sends (tcp:, unix:, rdma:, fd:). */
    uri: z.string().min(1),
    /** If set, `migrate-incoming` on the destination first. */
    incoming: z.string().min(1).optional(),
  })
  .strict();

/** A libvirt domain (as `migrate --libvirt URI --domain NAME --to DEST_URI [--migrate-uri] [--listen-address]`). */
const LibvirtVmSchema = z
  .object({
    ...vmFields,
    /** The source daemon's URI on this host: qemu:///system or qemu+unix:///system?socket=PATH. */
    libvirt: z.string().min(1).max(1024),
    /** The domain's name on the source daemon (default: the VM's name). */
    domain: DomainName.optional(),
    /** The destination daemon's URI (the source daemon connects to it: peer-to-peer). */
    to: z.string().min(1).max(1024),
    /** Where QEMU sends the RAM, tcp:HOST:PORT (default: libvirt picks on the destination's host name). */
    migrateUri: z.string().min(1).optional(),
    /** The address the destination QEMU listens on. */
    listenAddress: z.string().min(1).max(256).optional(),
  })
  .strict();

const QMP_KEYS = ['source', 'destination', 'uri', 'incoming'];
const LIBVIRT_KEYS = ['libvirt', 'domain', 'to', 'migrateUri', 'listenAddress'];

/** A plan VM is one of two kinds, told apart by its fields: QMP monitors or a libvirt domain. */
const PlanVmSchema = z.unknown().transform((v, ctx) => {
  const has = (keys: string[]) =>
    typeof v === 'object' && v !== null && keys.some((k) => (v as Record<string, unknown>)[k] !== undefined);
  const [qmp, libvirt] = [has(QMP_KEYS), has(LIBVIRT_KEYS)];
  if (qmp === libvirt) {
    ctx.addIssue({
      code: 'custom',
      message: qmp
        ? 'either QMP monitors (source, destination, uri) or a libvirt domain (libvirt, domain, to), not both'
        : 'name its QMP monitors (source, destination, uri) or its libvirt domain (libvirt, domain, to)',
    });
    return z.NEVER;
  }
  const refuse = (issues: z.core.$ZodIssue[]) => {
    for (const issue of issues) ctx.addIssue({ ...issue });
    return z.NEVER;
  };
  if (libvirt) {
    const r = LibvirtVmSchema.safeParse(v);
    if (!r.success) return refuse(r.error.issues);
    return { kind: 'libvirt' as const, ...r.data, domain: r.data.domain ?? r.data.name };
  }
  const r = QmpVmSchema.safeParse(v);
  if (!r.success) return refuse(r.error.issues);
  return { kind: 'qmp' as const, ...r.data };
});

export const EvacuationPlanSchema = z
  .object({
    /** N migrations at a time in the listed order, or `planner` (the simulator's planner: order, concurrency, per-VM bandwidth). */
    strategy: z.union([z.number().int().min(1).max(256), z.literal('planner')]),
    /** The link the migrations share, e.g. 1gbit (the simulator's syntax): needed by `planner` and for the prediction. */
    link: z.string().min(1).optional(),
    policy: z.string().min(1).default('frs'),
    /** Each migration's downtime budget (its SLO), ms. */
    downtimeBudgetMs: z.number().positive().max(2_000_000).default(300),
    /** Each migration's deadline, s (default: as `migrate`'s, from its RAM and bandwidth). */
    deadlineS: z
      .number()
      .positive()
      .max(7 * 24 * 3600)
      .optional(),
    vms: z.array(PlanVmSchema).min(1).max(10_000),
  })
  .strict();
export type EvacuationPlan = z.infer<typeof EvacuationPlanSchema>;
/** One VM of a plan: `kind` says which driver it names (QMP monitors or a libvirt domain). */
export type PlanVm = EvacuationPlan['vms'][number];

/** Reads a plan (JSON, or YAML by extension) and checks it: any problem is one line naming the field. */
export async function readPlan(file: string): Promise<EvacuationPlan> {
  const text = readInputFile(file, MAX_PLAN_BYTES, 'plan file');
  let data: unknown;
  try {
    data = /\.ya?ml$/i.test(file) ? (await import('js-yaml')).load(text) : JSON.parse(text);
  } catch (e) {
    throw new UsageError(
      `${file}: not ${/\.ya?ml$/i.test(file) ? 'YAML' : 'JSON'}: ${(e as Error).message.split('\n')[0]}`,
    );
  }
  return parsePlan(data, file);
}

export function parsePlan(data: unknown, where = 'plan'): EvacuationPlan {
  const parsed = EvacuationPlanSchema.safeParse(data);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    throw new UsageError(`${where}: ${issue.path.join('.') || 'plan'}: ${issue.message}`);
  }
  const plan = parsed.data;
  const seen = new Set<string>();
  const domains = new Map<string, string>();
  plan.vms.forEach((vm, i) => {
    if (seen.has(vm.name)) throw new UsageError(`${where}: vms.${i}: the name ${vm.name} is used twice`);
    seen.add(vm.name);
    const first = plan.vms[0]!;
    const kind = (v: PlanVm) => (v.kind === 'qmp' ? 'names QMP monitors' : 'is a libvirt domain');
    if (vm.kind !== first.kind)
      throw new UsageError(
        `${where}: vms.${i} (${vm.name}) ${kind(vm)} but vms.0 (${first.name}) ${kind(first)}: one plan evacuates through one driver (split it in two)`,
      );
    try {
      if (vm.kind === 'qmp') {
        checkMigrationUri(vm.uri);
        if (vm.incoming) checkMigrationUri(vm.incoming, 'incoming URI');
      } else {
        const key = `${parseLocalUri(vm.libvirt).socketPath} ${vm.domain}`;
        const twice = domains.get(key);
        if (twice) throw new UsageError(`domain ${vm.domain} on ${vm.libvirt} is also ${twice}'s`);
        domains.set(key, vm.name);
        if (vm.migrateUri) checkLibvirtMigrateUri(vm.migrateUri);
      }
      policyOf(plan, vm);
    } catch (err) {
      throw new UsageError(`${where}: vms.${i} (${vm.name}): ${(err as Error).message}`);
    }
  });
  if (plan.strategy === 'planner' && !plan.link)
    throw new UsageError(`${where}: strategy planner needs the link the migrations share (link: e.g. 1gbit)`);
  // The simulator's view is built once here so that a bad link or workload is refused up front.
  if (plan.link) {
    try {
      predictionFleet(plan, where);
    } catch (err) {
      const msg = (err as Error).message;
      throw new UsageError(msg.startsWith(`${where}: `) ? msg : `${where}: ${msg}`);
    }
  }
  return plan;
}

/** A VM's policy: its own, else the plan's. */
export function policyOf(plan: EvacuationPlan, vm: PlanVm): ResolvedPolicy {
  return resolvePolicy(vm.policy ?? plan.policy, vm.policyOptions ?? {});
}

/**
 * The evacuation as the simulator sees it: one source host whose migrations all cross the plan's
 * link, each VM with its RAM, workload and policy, the downtime budget as the SLO, no set-up
 * time, no retries; the VMs in the plan's order.
 */
export function predictionFleet(plan: EvacuationPlan, where = 'plan'): Fleet {
  if (!plan.link) throw new UsageError(`${where}: the prediction needs the link the migrations share`);
  const fleet = buildFleet(
    {
      links: [{ name: 'shared', rate: plan.link }],
      hosts: [{ name: 'source', link: 'shared' }],
      vms: plan.vms.map((v) => ({
        name: v.name,
        host: 'source',
        ramMiB: v.ramMiB,
        workload: v.workload,
        policy: v.policy ?? plan.policy,
        ...(v.policyOptions ? { policyOptions: v.policyOptions } : {}),
      })),
      policy: plan.policy,
      downtimeSloMs: plan.downtimeBudgetMs,
      deadlineS: plan.deadlineS ?? 600,
      retries: 0,
    },
    where,
  );
  // buildFleet shuffles (an operator's instance list); ours runs in the plan's order.
  const at = new Map(plan.vms.map((v, i) => [v.name, i]));
  return { ...fleet, vms: [...fleet.vms].sort((a, b) => at.get(a.name)! - at.get(b.name)!) };
}

/** How the executor runs the plan: the order, how many at a time, each VM's wire cap (bytes/s). */
export interface Schedule {
  strategy: string;
  order: string[];
  concurrency: number;
  capsBps: Map<string, number>;
  /** Planned starts, ms from the first (the planner's calendar plans fill gaps in time, not slots). */
  startAtMs: Map<string, number>;
  /** What the planner chose, in words (planner only). */
  chosen?: string;
  /** The simulator's evacuation under the same strategy (when the plan names its link). */
  predicted?: FleetResult;
}

/**
 * The schedule for a strategy. Fixed N: the plan's order, N at a time, no caps, predicted by
 * simulating exactly that. Planner: `planEvacuation` chooses by simulation among its calendar
 * plans and fixed 2–4 at a time. A fixed choice runs as fixed N in its order. A calendar plan runs
 * in the order it started them, each VM at its planned start (or when a slot frees, the plan's
 * own concurrency being the most that ran at once), with the max-bandwidth the plan gave it
 * (recorded by re-simulating the chosen plan, which is deterministic).
 */
export function scheduleFor(plan: EvacuationPlan, strategy: EvacStrategy): Schedule {
  if (strategy !== 'planner') {
    const predicted = plan.link ? evacuate(predictionFleet(plan), fixedConcurrency(strategy)) : undefined;
    return {
      strategy: `fixed:${strategy}`,
      order: plan.vms.map((v) => v.name),
      concurrency: strategy,
      capsBps: new Map(),
      startAtMs: new Map(),
      predicted,
    };
  }
  const fleet = predictionFleet(plan);
  const best = planEvacuation(fleet);
  const { chosen, ...predicted } = best;
  const order = [...predicted.vms].sort((a, b) => a.startedAtMs - b.startedAtMs).map((v) => v.vm);
  const base = { strategy: 'planner', order, concurrency: predicted.maxConcurrent, predicted };
  if (chosen.kind === 'fixed')
    return {
      ...base,
      capsBps: new Map(),
      startAtMs: new Map(),
      chosen: `${chosen.perHost} at a time, ${chosen.order === 'time' ? 'longest predicted first' : 'in the plan order'}`,
    };
  const { strategy: s, caps } = recordingCaps(
    plannerStrategy(fleet, { sloMargin: chosen.sloMargin, order: chosen.order === 'time' ? 'time' : 'area' }),
  );
  const again = evacuate(fleet, s);
  const key = (r: FleetResult) =>
    r.vms
      .map((v) => `${v.vm}@${v.startedAtMs}`)
      .sort()
      .join(',');
  if (key(again) !== key(predicted))
    throw new Error(
      "the planner's chosen calendar plan did not replay the same: cannot tell its bandwidth caps",
    );
  return {
    ...base,
    capsBps: caps,
    startAtMs: new Map(predicted.vms.map((v) => [v.vm, v.startedAtMs])),
    chosen: `calendar plan (SLO margin ${chosen.sloMargin}, ${chosen.order === 'time' ? 'longest first' : 'most link × time first'})`,
  };
}

/** A strategy that also records the max-bandwidth it gave each VM when it started. */
function recordingCaps(s: Strategy): { strategy: Strategy; caps: Map<string, number> } {
  const caps = new Map<string, number>();
  return {
    caps,
    strategy: {
      ...s,
      bandwidth: (vm: FleetVm, active, queueEmpty) => {
        const b = s.bandwidth?.(vm, active, queueEmpty);
        if (!caps.has(vm.name) && b !== undefined) caps.set(vm.name, b);
        return b;
      },
    },
  };
}

/** The plan's VMs ready for their driver (a plan evacuates through one). */
export type PlanEvacuees =
  { driver: 'qmp'; vms: QmpEvacuee[] } | { driver: 'libvirt'; vms: LibvirtEvacuee[] };

/**
 * The plan's VMs in the schedule's order with their session options. `deadlineMs(ramMiB, capBps)`
 * sizes a deadline when the plan gives none. A cap the planner sets is QEMU's max-bandwidth (on
 * libvirt: the job's max speed) as the simulator modelled it (the planner's reservation), not a
 * wire cap shaved for QEMU's overshoot (`--bandwidth`): the shared link bounds the sum either way.
 */
export function evacuees(
  plan: EvacuationPlan,
  schedule: Schedule,
  deadlineMs: (ramMiB: number, capBps: number | undefined) => number,
): PlanEvacuees {
  const byName = new Map(plan.vms.map((v) => [v.name, v]));
  const vms = schedule.order.map((name) => {
    const v = byName.get(name)!;
    const cap = schedule.capsBps.get(name);
    const session = {
      name,
      policy: policyOf(plan, v),
      downtimeBudgetMs: plan.downtimeBudgetMs,
      deadlineMs: plan.deadlineS !== undefined ? plan.deadlineS * 1000 : deadlineMs(v.ramMiB, cap),
      ...(cap !== undefined ? { maxBandwidthBps: cap } : {}),
      ...(schedule.startAtMs.has(name) ? { notBeforeMs: schedule.startAtMs.get(name) } : {}),
    };
    return { v, session };
  });
  if (plan.vms[0]!.kind === 'libvirt')
    return {
      driver: 'libvirt',
      vms: vms.map(({ v, session }) => {
        if (v.kind !== 'libvirt') throw new Error('a plan mixes drivers');
        const { libvirt, domain, to, migrateUri, listenAddress } = v;
        return { ...session, libvirt, domain: domain ?? v.name, to, migrateUri, listenAddress };
      }),
    };
  return {
    driver: 'qmp',
    vms: vms.map(({ v, session }) => {
      if (v.kind !== 'qmp') throw new Error('a plan mixes drivers');
      return {
        ...session,
        source: v.source,
        destination: v.destination,
        migrateUri: v.uri,
        incomingUri: v.incoming,
      };
    }),
  };
}

/** One VM of an evacuation as reported: times relative to the evacuation's start, ms. */
export interface EvacuatedVm {
  vm: string;
  outcome: MigrationResult['outcome'] | 'not started' | 'error';
  guestRunsOn?: MigrationResult['guestRunsOn'];
  reason: string;
  startedAtMs?: number;
  endedAtMs?: number;
  /** From the slot's start to `migrate` (preflight, capabilities, parameters), ms. */
  setupMs?: number;
  totalTimeMs?: number;
  /** Guest-felt stall where it is measured (the lab's heartbeat), else QEMU's downtime, ms. */
  stallMs?: number;
  stallSource?: 'guest heartbeat' | 'qemu downtime';
  qemuDowntimeMs?: number;
  transferredBytes?: number;
  /** The wire cap the schedule gave it, bytes/s. */
  capBps?: number;
  /** The lab only: RAM compared byte for byte and the guest's check passed. */
  verified?: boolean;
  exitCode: ExitCode;
}

export interface EvacuationReport {
  strategy: string;
  /** What the planner chose (planner only). */
  chosen?: string;
  concurrency: number;
  makespanMs: number;
  predictedMakespanMs?: number;
  /** (measured − predicted) ÷ predicted, %. */
  predictionErrorPct?: number;
  vms: EvacuatedVm[];
  exitCode: ExitCode;
}

/** The measured makespan beside the prediction, %. */
export function predictionError(measuredMs: number, predictedMs: number | undefined): number | undefined {
  return predictedMs === undefined || predictedMs <= 0
    ? undefined
    : ((measuredMs - predictedMs) / predictedMs) * 100;
}

/** Per-VM times relative to the run's start, from the queue's slots. */
export function slotTimes(run: QueueRun<unknown>, i: number): Pick<EvacuatedVm, 'startedAtMs' | 'endedAtMs'> {
  const s = run.slots[i]!;
  return {
    ...(s.startedAt !== undefined ? { startedAtMs: s.startedAt - run.startedAt } : {}),
    ...(s.endedAt !== undefined ? { endedAtMs: s.endedAt - run.startedAt } : {}),
  };
}

export { makespanMs };

const sec = (ms: number | undefined) => (ms === undefined ? '–' : (ms / 1000).toFixed(2));

/** The per-VM table (stderr) and its closing line. */
export function evacuationTable(r: EvacuationReport): string[][] {
  const head = [
    'vm',
    'result',
    'guest on',
    'start s',
    'end s',
    'setup ms',
    'total s',
    'downtime ms',
    r.vms.some((v) => v.stallSource === 'guest heartbeat') ? 'guest stall ms' : 'stall ms',
    'sent MiB',
    'cap Mbit/s',
  ];
  return [
    head,
    ...r.vms.map((v) => [
      v.vm,
      v.outcome + (v.verified === false ? ' (NOT verified)' : v.verified ? ' (verified)' : ''),
      v.guestRunsOn ?? '–',
      sec(v.startedAtMs),
      sec(v.endedAtMs),
      v.setupMs === undefined ? '–' : v.setupMs.toFixed(0),
      sec(v.totalTimeMs),
      v.qemuDowntimeMs === undefined ? '–' : v.qemuDowntimeMs.toFixed(0),
      v.stallMs === undefined ? '–' : v.stallMs.toFixed(0),
      v.transferredBytes === undefined ? '–' : (v.transferredBytes / 2 ** 20).toFixed(1),
      v.capBps === undefined ? '–' : ((v.capBps * 8) / 1e6).toFixed(0),
    ]),
  ];
}

export function makespanLine(r: EvacuationReport): string {
  const pred =
    r.predictedMakespanMs === undefined
      ? ''
      : `; simulated ${sec(r.predictedMakespanMs)} s (${r.predictionErrorPct! >= 0 ? '+' : ''}${r.predictionErrorPct!.toFixed(1)}%)`;
  return `${r.strategy}${r.chosen ? ` (${r.chosen})` : ''}, ${r.concurrency} at a time: makespan ${sec(r.makespanMs)} s${pred}`;
}

/**
 * One VM's row: its slot's times, exit code and planned cap, then either what its migration did
 * (`done`) or why there is none (not started: interrupted before its turn; or an error).
 */
export function evacuatedRow(
  schedule: Schedule,
  run: QueueRun<unknown>,
  i: number,
  vm: string,
  slot: QueueSlot<{ migration: MigrationResult; verified?: boolean }>,
  done: Partial<EvacuatedVm> | undefined,
): EvacuatedVm {
  const cap = schedule.capsBps.get(vm);
  const base = { vm, ...slotTimes(run, i), exitCode: slotExitCode(slot), ...(cap ? { capBps: cap } : {}) };
  if (!done)
    return {
      ...base,
      outcome: slot.startedAt === undefined ? 'not started' : 'error',
      reason: slot.error?.message ?? 'interrupted before its turn; the source runs on',
    };
  return { ...base, ...done } as EvacuatedVm;
}

/**
 * The report of an evacuation run through a driver, QMP or libvirt (`kvmigrate evacuate`): the
 * stall is QEMU's downtime (libvirt's job statistics carry QEMU's).
 */
export function driverReport(
  schedule: Schedule,
  vms: readonly { name: string }[],
  run: QueueRun<{ migration: MigrationResult }>,
): EvacuationReport {
  const rows = vms.map((vm, i) => {
    const m = run.slots[i]!.result?.migration;
    return evacuatedRow(
      schedule,
      run,
      i,
      vm.name,
      run.slots[i]!,
      m && {
        ...migrationFields(m, run.slots[i]!.startedAt!),
        stallMs: m.qemuDowntimeMs,
        stallSource: 'qemu downtime',
      },
    );
  });
  return finishReport(schedule, makespanMs(run), rows);
}

/** What every row takes from a migration's result. */
export function migrationFields(m: MigrationResult, slotStartedAt: number) {
  return {
    outcome: m.outcome,
    guestRunsOn: m.guestRunsOn,
    reason: m.reason,
    setupMs: m.clock.startedAt - slotStartedAt,
    totalTimeMs: m.totalTimeMs,
    qemuDowntimeMs: m.qemuDowntimeMs,
    transferredBytes: m.transferredBytes,
  };
}

export function finishReport(schedule: Schedule, makespan: number, vms: EvacuatedVm[]): EvacuationReport {
  const predicted = schedule.predicted?.makespanMs;
  return {
    strategy: schedule.strategy,
    ...(schedule.chosen ? { chosen: schedule.chosen } : {}),
    concurrency: schedule.concurrency,
    makespanMs: makespan,
    ...(predicted !== undefined
      ? { predictedMakespanMs: predicted, predictionErrorPct: predictionError(makespan, predicted) }
      : {}),
    vms,
    exitCode: worstExitCode(vms.map((v) => v.exitCode)),
  };
}
