import { InvalidArgumentError, Option, type Command } from 'commander';
import {
  evacuationTable,
  evacuees,
  makespanLine,
  driverReport,
  readPlan,
  scheduleFor,
  type EvacStrategy,
  type EvacuationReport,
} from '../../bench/evacuate.js';
import { labEvacuation, type LabEvacuationReport } from '../../bench/lab-evacuate.js';
import { parseLink } from '../../lab/link.js';
import type { MigrationResult } from '../../core/result.js';
import { evacuateLibvirt } from '../../libvirt/evacuate.js';
import { evacuateQmp } from '../../migration/evacuate.js';
import { worstExitCode } from '../../util/queue.js';
import { parsePolicyOptions } from '../../policy/index.js';
import { parseLabWorkload } from '../../util/specs.js';
import { UsageError } from '../../util/errors.js';
import { resolveDeadline } from '../deadline.js';
import { table } from '../format.js';
import { accel, collect, list, positiveInt, positiveNumber } from '../options.js';
import { interruptSignal } from '../progress.js';

/** `2`, `fixed:2` or `planner`. */
function strategyArg(v: string): EvacStrategy {
  if (v === 'planner') return 'planner';
  const n = Number(/^(?:fixed:)?(\d+)$/.exec(v)?.[1]);
  if (!Number.isInteger(n) || n < 1 || n > 256)
    throw new InvalidArgumentError(
      `strategy '${v}': use a number of migrations at a time (1…256) or planner`,
    );
  return n;
}

function printReport(r: EvacuationReport, json: boolean | undefined): void {
  process.stderr.write(`${table(evacuationTable(r))}\n${makespanLine(r)}\n`);
  process.stdout.write(JSON.stringify(r, null, json ? 2 : undefined) + '\n');
}

function registerEvacuate(program: Command): void {
  program
    .command('evacuate')
    .argument(
      '<plan>',
      'plan file (JSON or YAML): strategy, link, policy, vms (source, destination, uri or libvirt, domain, to; ramMiB, …)',
    )
    .description(
      "migrate a plan's VMs off their host (QMP monitors or libvirt domains), N at a time or as the simulator's planner orders",
    )
    .option('--strategy <s>', "override the plan's strategy: N at a time (fixed:N) or planner", strategyArg)
    .option('--json', 'indent the JSON report on stdout')
    .action(async (file: string, o: { strategy?: EvacStrategy; json?: boolean }) => {
      const plan = await readPlan(file);
      const strategy = o.strategy ?? plan.strategy;
      if (strategy === 'planner' && !plan.link)
        throw new UsageError(
          `${file}: strategy planner needs the link the migrations share (link: e.g. 1gbit)`,
        );
      const schedule = scheduleFor(plan, strategy);
      const evac = evacuees(
        plan,
        schedule,
        (ramMiB, cap) =>
          resolveDeadline({ ramBytes: ramMiB * 2 ** 20, bandwidthBps: cap ?? linkRate(plan.link) }).ms,
      );
      const signal = interruptSignal();
      // Said once every daemon or monitor answered, so a refusal before that stays the one line on stderr.
      const announce = `evacuating ${evac.vms.length} VM(s) through ${evac.driver === 'qmp' ? 'QMP' : 'libvirt'}: ${schedule.strategy}${schedule.chosen ? ` (${schedule.chosen})` : ''}, ${schedule.concurrency} at a time, order ${schedule.order.join(' ')}\n`;
      let started = 0;
      const hooks = <V extends { name: string }>(to: (vm: V) => string) => ({
        signal,
        onStart: (vm: V) =>
          process.stderr.write(`${started++ ? '' : announce}${vm.name}: migrating to ${to(vm)}\n`),
        onEnd: (vm: V, r: MigrationResult | undefined, err?: Error) =>
          process.stderr.write(
            `${vm.name}: ${r ? `${r.outcome}, guest runs on ${r.guestRunsOn}` : `error: ${err?.message}`}\n`,
          ),
      });
      const run =
        evac.driver === 'qmp'
          ? await evacuateQmp(
              evac.vms,
              schedule.concurrency,
              hooks((vm) => vm.migrateUri),
            )
          : await evacuateLibvirt(
              evac.vms,
              schedule.concurrency,
              hooks((vm) => vm.to),
            );
      const report = driverReport(schedule, evac.vms, run);
      printReport(report, o.json);
      process.exitCode = report.exitCode;
    });
}

/** The plan's shared link rate (bytes/s), for sizing default deadlines. */
function linkRate(link: string | undefined): number | undefined {
  const mbit = link ? parseLink(link).rateMbit : undefined;
  return mbit === undefined ? undefined : (mbit * 1e6) / 8;
}

function registerLabEvacuate(lab: Command): void {
  lab
    .command('evacuate')
    .description(
      'boot N lab pairs whose migrations share one emulated link, evacuate them under each strategy, print measured vs simulated makespan',
    )
    .option('--vms <n>', 'lab pairs (VMs to evacuate)', positiveInt('--vms'), 4)
    .option('--ram <MiB>', 'guest RAM, MiB', positiveInt('--ram'), 128)
    .option('--workload <spec>', 'guest workload, e.g. idle, rate:24:2000', 'rate:24:2000')
    .option('--link <spec>', 'the one emulated link they share', '1gbit')
    .option('--strategy <list>', 'strategies in turn: N at a time and/or planner', list, [
      '1',
      '2',
      '4',
      'planner',
    ])
    .option('--policy <name>', 'convergence policy of every migration', 'frs')
    .option('--policy-opt <key=value>', 'policy option (repeatable)', collect, [])
    .option(
      '--downtime-budget <ms>',
      'downtime budget (the SLO), ms',
      positiveNumber('--downtime-budget'),
      300,
    )
    .option('--deadline <s>', 'each migration’s deadline, s', positiveNumber('--deadline'), 60)
    .addOption(new Option('--accel <accel>', 'tcg or kvm').argParser(accel).default('tcg'))
    .option('--cache-dir <dir>', 'guest image cache (default $KVMIGRATE_CACHE or ~/.cache/kvmigrate)')
    .option('--json', 'indent the JSON reports on stdout')
    .action(async (o) => {
      const strategies = (o.strategy as string[]).map((s) => {
        try {
          return strategyArg(s);
        } catch (err) {
          throw new UsageError((err as Error).message);
        }
      });
      if (strategies.length === 0) throw new UsageError('--strategy needs at least one strategy');
      const workload = parseLabWorkload(o.workload);
      const link = parseLink(o.link);
      const signal = interruptSignal();
      const reports: LabEvacuationReport[] = [];
      for (const strategy of strategies) {
        if (signal.aborted) break;
        const r = await labEvacuation(
          {
            vms: o.vms,
            ramMiB: o.ram,
            workload,
            link,
            policy: o.policy,
            policyOptions: parsePolicyOptions(o.policyOpt),
            downtimeBudgetMs: o.downtimeBudget,
            deadlineS: o.deadline,
            accel: o.accel,
            cacheDir: o.cacheDir,
            signal,
            log: (l) => process.stderr.write(l + '\n'),
          },
          strategy,
        );
        reports.push(r);
        const { runs: _runs, ...summary } = r;
        printReport(summary, o.json);
        if (r.leaks.length) process.stderr.write(`LEAKED: ${r.leaks.join(', ')}\n`);
      }
      process.stderr.write(`\n${table(labSummaryRows(reports))}\n`);
      process.exitCode = worstExitCode(reports.map((r) => r.exitCode));
    });
}

/** One line per strategy: measured beside simulated. */
function labSummaryRows(reports: LabEvacuationReport[]): string[][] {
  const s = (ms: number | undefined) => (ms === undefined ? '–' : (ms / 1000).toFixed(2));
  return [
    ['strategy', 'at a time', 'completed', 'verified', 'measured s', 'simulated s', 'difference'],
    ...reports.map((r) => [
      r.strategy,
      String(r.concurrency),
      `${r.vms.filter((v) => v.outcome === 'completed').length}/${r.vms.length}`,
      `${r.vms.filter((v) => v.verified).length}/${r.vms.length}`,
      s(r.makespanMs),
      s(r.predictedMakespanMs),
      r.predictionErrorPct === undefined
        ? '–'
        : `${r.predictionErrorPct >= 0 ? '+' : ''}${r.predictionErrorPct.toFixed(1)}%`,
    ]),
  ];
}

/**
 * `kvmigrate evacuate PLAN` and `kvmigrate lab evacuate` (added to the `lab` command, which
 * main.ts registers first).
 */
export function register(program: Command): void {
  registerEvacuate(program);
  const lab = program.commands.find((c) => c.name() === 'lab');
  if (!lab) throw new Error('the lab command must be registered before evacuate');
  registerLabEvacuate(lab);
}
