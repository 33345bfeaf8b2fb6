import { Option, type Command } from 'commander';
import { buildGuestImage, defaultCacheDir } from '../../lab/image.js';
import { cleanLeftovers } from '../../lab/clean.js';
import { FAULT_CASES, faultTable, runFaultCase, type FaultRow } from '../../lab/faults.js';
import { Lab, migrateLab, type LabMigrationResult } from '../../lab/lab.js';
import { parseLink } from '../../lab/link.js';
import { parseLabWorkload } from '../../util/specs.js';
import { EXIT, UsageError } from '../../util/errors.js';
import { resolveDeadline } from '../deadline.js';
import { labSummary, passTimeline } from '../format.js';
import { checkMigrationFlags, migrationOptions, sessionFromFlags } from '../migration-flags.js';
import { accel, positiveInt, positiveNumber } from '../options.js';
import { interruptSignal, progressReporter } from '../progress.js';
import { RunOutputs, runOutputOptions } from '../run-outputs.js';
import { migrationExitCode } from './migrate.js';

function registerMigrate(lab: Command): void {
  migrationOptions(
    runOutputOptions(lab.command('migrate'))
      .description('start a lab pair, migrate it under a policy, verify the destination byte for byte')
      .option('--workload <spec>', 'guest workload, e.g. idle, random:200, hotcold:32:256:90', 'random:200')
      .option('--ram <MiB>', 'guest RAM, MiB', positiveInt('--ram'), 512)
      .option('--link <spec>', 'emulated link: 1gbit, 256mbit, none, …[,delay=1ms]', '1gbit')
      .addOption(new Option('--accel <accel>', 'tcg or kvm').argParser(accel).default('tcg'))
      .option('--port <port>', 'destination incoming port', positiveInt('--port'))
      .option('--tap', 'relay the migration through the tap (exact per-pass page sets for mp/adaptive)')
      .option('--cache-dir <dir>', 'guest image cache (default $KVMIGRATE_CACHE or ~/.cache/kvmigrate)'),
  )
    .addOption(
      new Option('--downtime <ms>', 'alias of --downtime-budget').argParser(positiveNumber('--downtime')),
    )
    .action(async (o, cmd: Command) => {
      const workload = parseLabWorkload(o.workload);
      const link = parseLink(o.link);
      const flags = checkMigrationFlags(
        { ...o, downtimeBudget: o.downtime ?? o.downtimeBudget },
        cmd.getOptionValueSource('policy') === 'cli',
      );
      // The lab knows its RAM and its link: the deadline needs no QMP query.
      const deadline = resolveDeadline({
        deadlineS: flags.deadlineS,
        perGiBS: flags.perGiBS,
        ramBytes: o.ram * 2 ** 20,
        bandwidthBps: flags.maxBandwidthBps ?? (link.rateMbit ? (link.rateMbit * 1e6) / 8 : undefined),
      });
      const signal = interruptSignal();
      const log = (l: string) => !o.quiet && process.stderr.write(l + '\n');
      const pair = await Lab.start({
        workload,
        ramMiB: o.ram,
        link,
        accel: o.accel,
        cacheDir: o.cacheDir,
        port: o.port,
        tap: Boolean(o.tap),
        log,
      });
      let result: LabMigrationResult;
      let outputs: RunOutputs | undefined;
      try {
        outputs = await RunOutputs.open(o, {
          policy: flags.policy.policy.name,
          source: pair.source.spec.qmpSocket,
          destination: pair.destination.spec.qmpSocket,
          migrateUri: pair.migrateUri,
        });
        if (outputs.metricsUrl) log(`kvmigrate: metrics on ${outputs.metricsUrl}`);
        const progress = progressReporter(o.quiet || o.json, [
          `deadline ${deadline.why}, then ${flags.onDeadline}`,
        ]);
        result = await migrateLab(pair, {
          ...sessionFromFlags(flags, deadline.ms),
          signal,
          ...progress,
          onEvent: outputs.onEvent,
        });
        progress.done();
      } finally {
        await outputs?.close();
        await pair.destroy();
      }
      if (!o.json && !o.quiet)
        process.stderr.write(`${passTimeline(result.migration)}\n${labSummary(result)}\n`);
      if (outputs.eventsError) log(`kvmigrate: --events stopped: ${outputs.eventsError}`);
      // With --events -, stdout is the event stream (its last line the migration's result).
      if (!outputs.eventsOnStdout)
        process.stdout.write(JSON.stringify(result, null, o.json ? 2 : undefined) + '\n');
      // In the lab, success also needs the byte-for-byte check and the guest running on.
      process.exitCode = migrationExitCode(result.migration, result.success);
    });
}

function registerImage(lab: Command): void {
  lab
    .command('image')
    .description('build (or reuse) the guest image and print where it is')
    .option('--cache-dir <dir>', 'image cache directory', defaultCacheDir())
    .action(async (o) => {
      const r = await buildGuestImage(o.cacheDir);
      process.stdout.write(
        `kernel ${r.image.kernel} (${r.kernelCached ? 'cached' : 'extracted'})\ninitrd ${r.image.initrd} (${
          r.initrdCached ? 'cached' : 'built'
        })\n${(r.ms / 1000).toFixed(2)} s\n`,
      );
    });
}

function registerFaults(lab: Command): void {
  lab
    .command('faults')
    .description('run the fault matrix on fresh lab pairs and print the table (every row must be ok)')
    .option('--only <text>', 'run only the cases whose name contains this')
    .option('--list', 'list the cases and exit')
    .option('--json', 'print the rows as JSON')
    .action(async (o) => {
      const cases = FAULT_CASES.filter((c) => !o.only || c.name.includes(o.only));
      if (o.list || cases.length === 0) {
        if (cases.length === 0 && !o.list)
          throw new UsageError(`no fault case matches '${o.only}'; see --list`);
        process.stdout.write(FAULT_CASES.map((c) => `${c.name} [${c.policy}]`).join('\n') + '\n');
        return;
      }
      const rows: FaultRow[] = [];
      for (const c of cases) {
        process.stderr.write(`${c.name} (${c.policy}) …\n`);
        const row = await runFaultCase(c);
        process.stderr.write(
          `  → ${row.ok ? 'ok' : 'FAIL'}: ${row.outcome}, guest on ${row.runsOn}; ${row.reason}\n`,
        );
        rows.push(row);
      }
      process.stdout.write((o.json ? JSON.stringify(rows, null, 1) : faultTable(rows)) + '\n');
      process.exitCode = rows.every((r) => r.ok) ? EXIT.ok : EXIT.migrationFailed;
    });
}

function registerClean(lab: Command): void {
  lab
    .command('clean')
    .description(
      'remove what crashed labs left (QEMU processes, netns, veth, temp dirs named kvmm-*); labs whose process still runs are left alone',
    )
    .option(
      '--all',
      "also remove labs whose owning process still runs (another run's lab: it breaks that run)",
    )
    .action(async (o: { all?: boolean }) => {
      const r = await cleanLeftovers({ all: o.all });
      process.stdout.write(
        `removed ${r.qemuPids.length} QEMU process(es), ${r.netns.length} netns, ${r.links.length} link(s), ${r.dirs.length} dir(s)` +
          (r.inUse.size
            ? `; left ${r.inUse.size} lab(s) in use (${[...r.inUse].map(([id, pid]) => `${id} by PID ${pid}`).join(', ')})`
            : '') +
          '\n',
      );
    });
}

export function register(program: Command): void {
  const lab = program
    .command('lab')
    .description('the built-in lab: guest image, VM pairs on an emulated link');
  registerMigrate(lab);
  registerImage(lab);
  registerFaults(lab);
  registerClean(lab);
}
