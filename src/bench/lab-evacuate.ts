import { setTimeout as sleep } from 'node:timers/promises';
import { leaksOf } from '../lab/clean.js';
import { BASELINE_MS, Lab, migrateLab, type LabMigrationResult } from '../lab/lab.js';
import { formatLink, type LinkSpec } from '../lab/link.js';
import { SharedLabLink } from '../lab/shared-link.js';
import { runQueue } from '../util/queue.js';
import { formatLabWorkload, type LabWorkloadSpec } from '../util/specs.js';
import { LabError } from '../util/errors.js';
import {
  finishReport,
  makespanMs,
  evacuatedRow,
  migrationFields,
  parsePlan,
  policyOf,
  scheduleFor,
  type EvacStrategy,
  type EvacuationPlan,
  type EvacuationReport,
} from './evacuate.js';

export interface LabEvacuationOptions {
  vms: number;
  ramMiB: number;
  workload: LabWorkloadSpec;
  /** The one link every pair's migration crosses. */
  link: LinkSpec;
  policy: string;
  policyOptions?: Record<string, string | number | boolean>;
  downtimeBudgetMs: number;
  deadlineS: number;
  accel?: 'tcg' | 'kvm';
  cacheDir?: string;
  signal?: AbortSignal;
  log?: (line: string) => void;
}

export interface LabEvacuationReport extends EvacuationReport {
  link: string;
  workload: string;
  ramMiB: number;
  /** Every pair's full lab result (verification, guest stall, passes). */
  runs: (LabMigrationResult | undefined)[];
  /** What the pairs and the shared link left behind (empty when all is gone). */
  leaks: string[];
}

/** The plan a lab evacuation stands for: what the simulator predicts from and the strategy resolves against. */
export function labPlan(o: LabEvacuationOptions, strategy: EvacStrategy): EvacuationPlan {
  return parsePlan(
    {
      strategy,
      link: formatLink(o.link),
      policy: o.policy,
      downtimeBudgetMs: o.downtimeBudgetMs,
      deadlineS: o.deadlineS,
      vms: Array.from({ length: o.vms }, (_, i) => ({
        name: `vm${i + 1}`,
        // Filled in by the lab pairs; the plan is only the simulator's view here.
        source: '-',
        destination: '-',
        uri: 'tcp:lab:4444',
        ramMiB: o.ramMiB,
        workload: formatLabWorkload(o.workload),
        ...(o.policyOptions ? { policyOptions: o.policyOptions } : {}),
      })),
    },
    'lab evacuation',
  );
}

/**
 * One evacuation in the lab: `vms` fresh pairs whose migrations share ONE emulated link (one
 * netns for every destination, one shaped veth), migrated under `strategy` through the QMP driver
 * with the schedule `kvmigrate evacuate` would run, each verified as `lab migrate` verifies
 * (destination held paused by -S, RAM compared byte for byte, then the guest's own check). The
 * verification of a finished VM waits until every migration is over, so it neither holds a
 * concurrency slot nor takes CPU from the migrations still running. Beside the measured makespan:
 * the simulator's prediction of the same evacuation.
 */
export async function labEvacuation(
  o: LabEvacuationOptions,
  strategy: EvacStrategy,
): Promise<LabEvacuationReport> {
  if (o.link.rateMbit === undefined)
    throw new LabError('a lab evacuation needs a shaped link (e.g. 1gbit): the migrations share it');
  const log = o.log ?? (() => undefined);
  const plan = labPlan(o, strategy);
  const schedule = scheduleFor(plan, strategy);
  const shared = await SharedLabLink.create(o.link);
  const labs: Lab[] = [];
  const pids: number[] = [];
  let report: LabEvacuationReport | undefined;
  try {
    for (let i = 0; i < o.vms; i++) {
      if (o.signal?.aborted) throw new LabError('interrupted while the lab pairs booted');
      const lab = await Lab.start({
        workload: o.workload,
        ramMiB: o.ramMiB,
        link: o.link,
        sharedLink: shared.link,
        port: 4444 + i,
        accel: o.accel,
        cacheDir: o.cacheDir,
        log,
      });
      labs.push(lab);
      pids.push(lab.source.pid, lab.destination.pid);
    }
    // Every guest beats long enough before its migration for its slowdown baseline (migrateLab
    // would otherwise hold the last-booted one back and stretch the makespan).
    await sleep(BASELINE_MS + 200);
    const byName = new Map(labs.map((l, i) => [`vm${i + 1}`, l]));
    const tasks = schedule.order.map((name) => ({
      name,
      lab: byName.get(name)!,
      notBeforeMs: schedule.startAtMs.get(name),
    }));
    let allOver!: () => void;
    const over = new Promise<void>((r) => (allOver = r));
    log(
      `${schedule.strategy}${schedule.chosen ? ` (${schedule.chosen})` : ''}: ${o.vms} × ${o.ramMiB} MiB ${formatLabWorkload(o.workload)} over one ${formatLink(o.link)} link, ${schedule.concurrency} at a time`,
    );
    const run = await runQueue(
      tasks,
      schedule.concurrency,
      async ({ name, lab }, release) => {
        const cap = schedule.capsBps.get(name);
        return migrateLab(
          lab,
          {
            policy: policyOf(
              plan,
              plan.vms.find((v) => v.name === name)!,
            ),
            downtimeBudgetMs: o.downtimeBudgetMs,
            deadlineMs: o.deadlineS * 1000,
            // The planner's reservation is QEMU's max-bandwidth (as simulated); else the link limits.
            ...(cap !== undefined ? { maxBandwidthBps: cap } : {}),
            signal: o.signal,
            // The migration is over once its outcome is known: free the slot, verify later.
            onEvent: (e) => {
              if (e.type !== 'outcome') return;
              release();
              log(`  ${name}: ${e.result.outcome} in ${(e.result.totalTimeMs / 1000).toFixed(2)} s`);
            },
          },
          { beforeVerify: () => over },
        );
      },
      { signal: o.signal, onAllOver: () => allOver() },
    );
    const rows = tasks.map(({ name }, i) => {
      const slot = run.slots[i]!;
      const r = slot.result;
      const verifiedSlot = r ? { ...slot, result: { migration: r.migration, verified: r.success } } : slot;
      return evacuatedRow(
        schedule,
        run,
        i,
        name,
        verifiedSlot,
        r && {
          ...migrationFields(r.migration, slot.startedAt!),
          stallMs: r.guestDowntimeMs,
          stallSource: 'guest heartbeat',
          verified: r.migration.outcome === 'completed' ? r.success : undefined,
        },
      );
    });
    report = {
      ...finishReport(schedule, makespanMs(run), rows),
      link: formatLink(o.link),
      workload: formatLabWorkload(o.workload),
      ramMiB: o.ramMiB,
      runs: run.slots.map((s) => s.result),
      leaks: [],
    };
  } finally {
    for (const lab of labs) await lab.destroy();
    await shared.destroy();
  }
  const leaks = (
    await Promise.all([shared.id, ...labs.map((l) => l.info.id)].map((id) => leaksOf(id, pids)))
  ).flat();
  return { ...report, leaks };
}
