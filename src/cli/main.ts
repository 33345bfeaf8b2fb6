import { mkdirSync, writeFileSync } from 'node:fs';
import { Command, CommanderError, Option } from 'commander';
import { measureControllerCost } from '../bench/controller-cost.js';
import { readResults } from '../bench/results.js';
import { reportMarkdown, writeReports } from '../bench/report.js';
import { runBench } from '../bench/run.js';
import { buildGuestImage, defaultCacheDir } from '../lab/image.js';
import { cleanLeftovers } from '../lab/clean.js';
import { FAULT_CASES, faultTable, runFaultCase, type FaultRow } from '../lab/faults.js';
import { Lab, migrateLab, type LabMigrationResult } from '../lab/lab.js';
import { parseLink } from '../lab/link.js';
import { parseWorkload } from '../lab/workload.js';
import { recoverAt } from '../migration/recover.js';
import { MigrationSession, type Decision, type Progress } from '../migration/session.js';
import { POLICIES, parsePolicyOptions, resolvePolicy, type ResolvedPolicy } from '../policy/index.js';
import { QmpClient } from '../qmp/index.js';
import { MigrationTap } from '../tap/index.js';
import { runSweep, sweepResults, validate, validationTable, type SweepOptions } from '../sim/sweep.js';
import { traceFromMigration, writeTrace } from '../sim/trace.js';
import { probeQemuVersion } from '../qemu/index.js';
import { UsageError } from '../util/errors.js';
import { reportError } from './errors.js';
import { decisionLine, labSummary, passTimeline, progressLine, mib, table } from './format.js';
import { accel, collect, positiveInt, positiveNumber } from './options.js';

/** Ctrl-C / SIGTERM cancel the migration under way; the finally blocks restore and tear down. */
function interruptSignal(): AbortSignal {
  const ctl = new AbortController();
  const onSignal = (sig: NodeJS.Signals) => {
    if (ctl.signal.aborted) return;
    process.stderr.write(`\n${sig}: cancelling the migration and cleaning up…\n`);
    ctl.abort();
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  return ctl.signal;
}

function progressReporter(quiet: boolean) {
  const tty = process.stderr.isTTY;
  let lastPass = 0;
  let lastDraw = 0;
  return {
    onProgress(p: Progress) {
      if (quiet) return;
      if (tty) {
        if (performance.now() - lastDraw < 200) return;
        lastDraw = performance.now();
        process.stderr.write(`\r\x1b[2K${progressLine(p)}`.slice(0, (process.stderr.columns ?? 160) + 10));
      } else if (p.pass !== lastPass) {
        lastPass = p.pass;
        process.stderr.write(progressLine(p) + '\n');
      }
    },
    onDecision(d: Decision) {
      if (quiet) return;
      process.stderr.write(`${tty ? '\r\x1b[2K' : ''}${decisionLine(d)}\n`);
    },
    done() {
      if (tty && !quiet) process.stderr.write('\r\x1b[2K');
    },
  };
}

function policyFrom(opts: {
  policy: string;
  policyOpt?: string[];
  switchAtPass?: number;
  objective?: string;
}): ResolvedPolicy {
  if (opts.objective !== undefined) {
    if (opts.policy !== 'adaptive')
      throw new UsageError(`--objective applies to --policy adaptive, not '${opts.policy}'`);
    return resolvePolicy('adaptive', {
      ...parsePolicyOptions(opts.policyOpt ?? []),
      objective: opts.objective,
    });
  }
  if (opts.switchAtPass !== undefined) {
    if (opts.switchAtPass < 2)
      throw new UsageError('--switch-at-pass must be 2 or more (pass 1 is the bulk copy)');
    return resolvePolicy('switch-at-pass', { pass: opts.switchAtPass });
  }
  return resolvePolicy(opts.policy, parsePolicyOptions(opts.policyOpt ?? []));
}

/** `--tap` relays to where `--uri` points. */
function tapUpstream(uri: string): { upstreamHost: string; upstreamPort: number } {
  const m = /^tcp:(\[[^\]]+\]|[^:]+):(\d+)$/.exec(uri);
  if (!m) throw new UsageError(`--tap needs a tcp:HOST:PORT --uri, not '${uri}'`);
  return { upstreamHost: m[1]!.replace(/^\[|\]$/g, ''), upstreamPort: Number(m[2]) };
}

const program = new Command('kvmigrate')
  .description('Make QEMU live migration converge: observe every pass over QMP, decide with a policy, act.')
  .option('--debug', 'print stack traces on errors')
  // Usage errors in the same one-line form as ours, exit code 2 (inherited by subcommands).
  .exitOverride()
  .configureOutput({ outputError: (str, write) => write(`kvmigrate: ${str.replace(/^error: /, '')}`) });

const policyOptions = (cmd: Command) =>
  cmd
    .addOption(
      new Option('--policy <name>', `convergence policy: ${Object.keys(POLICIES).join(', ')}`).default(
        'stock',
      ),
    )
    .option('--policy-opt <key=value>', 'policy option (repeatable)', collect, [])
    .addOption(
      new Option('--objective <what>', 'what adaptive minimises').choices([
        'downtime',
        'total',
        'data',
        'balanced',
      ]),
    )
    .option(
      '--allow-postcopy',
      'let the policy switch to post-copy (the guest is lost if the destination or link fails during it)',
    )
    .option(
      '--switch-at-pass <k>',
      'force switchover when pass K begins (policy switch-at-pass)',
      positiveInt('--switch-at-pass'),
    )
    .option(
      '--downtime-budget <ms>',
      'downtime budget (the starting downtime-limit), ms',
      positiveNumber('--downtime-budget'),
      300,
    )
    .option(
      '--deadline <s>',
      'give up (cancel, source keeps running) after this many seconds',
      positiveNumber('--deadline'),
      120,
    )
    .addOption(
      new Option('--on-deadline <action>', 'what to do at the deadline')
        .choices(['abort', 'switchover', 'postcopy'])
        .default('abort'),
    )
    .option('--json', 'print only the JSON result on stdout')
    .option('--quiet', 'no progress output');

const lab = program.command('lab').description('the built-in lab: guest image, VM pairs on an emulated link');

policyOptions(
  lab
    .command('migrate')
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
  .action(async (o) => {
    const workload = parseWorkload(o.workload);
    const link = parseLink(o.link);
    const policy = policyFrom(o);
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
    try {
      const progress = progressReporter(o.quiet || o.json);
      result = await migrateLab(pair, {
        policy,
        downtimeBudgetMs: o.downtime ?? o.downtimeBudget,
        deadlineMs: o.deadline * 1000,
        onDeadline: o.onDeadline,
        postcopyPermitted: Boolean(o.allowPostcopy),
        signal,
        ...progress,
      });
      progress.done();
    } finally {
      await pair.destroy();
    }
    if (!o.json && !o.quiet)
      process.stderr.write(`${passTimeline(result.migration)}\n${labSummary(result)}\n`);
    process.stdout.write(JSON.stringify(result, null, o.json ? 2 : undefined) + '\n');
    process.exitCode = result.success ? 0 : 1;
  });

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
    process.exitCode = rows.every((r) => r.ok) ? 0 : 1;
  });

lab
  .command('clean')
  .description('remove lab leftovers (QEMU processes, netns, veth, temp dirs named kvmm-*) after a crash')
  .action(async () => {
    const r = await cleanLeftovers();
    process.stdout.write(
      `removed ${r.qemuPids.length} QEMU process(es), ${r.netns.length} netns, ${r.links.length} link(s), ${r.dirs.length} dir(s)\n`,
    );
  });

policyOptions(
  program
    .command('migrate')
    .description('control a migration between two QEMU instances you run (QMP unix socket or HOST:PORT each)')
    .requiredOption('--src <qmp>', "source's QMP socket path or HOST:PORT")
    .requiredOption('--dst <qmp>', "destination's QMP socket path or HOST:PORT")
    .requiredOption('--uri <uri>', 'where the source sends, e.g. tcp:10.0.0.2:4444')
    .option('--incoming <uri>', 'issue migrate-incoming on the destination first (for -incoming defer)')
    .option(
      '--tap [addr:port]',
      'relay through the tap, listening here (default 127.0.0.1, any port); needs a tcp: --uri',
    ),
).action(async (o) => {
  const policy = policyFrom(o);
  const upstream = o.tap ? tapUpstream(o.uri) : undefined;
  const source = await QmpClient.connect(o.src);
  const destination = await QmpClient.connect(o.dst).catch((e) => {
    source.close();
    throw e;
  });
  let tap: MigrationTap | undefined;
  try {
    if (upstream) {
      const ram = await source.execute<{ 'base-memory': number }>('query-memory-size-summary');
      const [listenHost, listenPort] = typeof o.tap === 'string' ? o.tap.split(':') : ['127.0.0.1', '0'];
      tap = await MigrationTap.start({
        ...upstream,
        listenHost,
        listenPort: Number(listenPort),
        ramBytes: ram['base-memory'],
      });
    }
    const progress = progressReporter(o.quiet || o.json);
    const result = await new MigrationSession({
      source,
      destination,
      migrateUri: tap?.uri ?? o.uri,
      regionSource: tap,
      incomingUri: o.incoming,
      policy,
      downtimeBudgetMs: o.downtimeBudget,
      deadlineMs: o.deadline * 1000,
      onDeadline: o.onDeadline,
      postcopyPermitted: Boolean(o.allowPostcopy),
      signal: interruptSignal(),
      ...progress,
    }).run();
    progress.done();
    if (!o.json && !o.quiet) {
      process.stderr.write(
        `${passTimeline(result)}\n${result.outcome}: ${result.reason}; total ${(result.totalTimeMs / 1000).toFixed(2)} s, downtime ${
          result.qemuDowntimeMs
        } ms, sent ${mib(result.transferredBytes)}\n`,
      );
    }
    process.stdout.write(JSON.stringify(result, null, o.json ? 2 : undefined) + '\n');
    process.exitCode = result.outcome === 'completed' ? 0 : 1;
  } finally {
    await tap?.close();
    source.close();
    destination.close();
  }
});

const list = (v: string) =>
  v
    .split(',')
    .map((x) => x.trim())
    .filter(Boolean);

const bench = program
  .command('bench')
  .description('run the experiment matrix on the lab: results.json, results.csv, report.md, report.html')
  .option('--workloads <list>', 'comma-separated workloads', list, [
    'random:200',
    'hotcold:32:256:90',
    'sweep:256:400',
  ])
  .option(
    '--policies <list>',
    'comma-separated policies (relaxed = relaxed(L*), oracle = best fixed choice)',
    list,
    ['stock', 'relaxed', 'frs', 'mp', 'adaptive'],
  ) // prettier-ignore
  .option('--ram <MiB>', 'guest RAM, MiB', positiveInt('--ram'), 512)
  .option('--link <spec>', 'emulated link', '1gbit')
  .option('--reps <n>', 'repetitions per cell (default 5, --quick 3)', positiveInt('--reps'))
  .option('--quick', 'fewer reps')
  .option('--downtime-budget <ms>', 'downtime budget, ms', positiveNumber('--downtime-budget'), 300)
  .option('--deadline <s>', 'deadline per migration, s', positiveNumber('--deadline'), 30)
  .option('--tap', 'relay every migration through the tap')
  .option('--allow-postcopy', 'let mp, adaptive, nova and kubevirt post-copy (relaxed and stock never do)')
  .option('--out <dir>', 'output directory', 'results')
  .option('--resume', 'keep the runs already in --out and do the rest')
  .action(async (o) => {
    const signal = interruptSignal();
    const results = await runBench({
      workloads: o.workloads,
      policies: o.policies,
      ramMiB: o.ram,
      link: o.link,
      reps: o.reps ?? (o.quick ? 3 : 5),
      downtimeBudgetMs: o.downtimeBudget,
      deadlineS: o.deadline,
      out: o.out,
      resume: Boolean(o.resume),
      tap: Boolean(o.tap),
      postcopyPermitted: Boolean(o.allowPostcopy),
      signal,
      log: (l) => process.stderr.write(l + '\n'),
    });
    process.stdout.write(reportMarkdown(results) + '\n');
    process.stderr.write(
      `wrote ${o.out}/results.json, results.csv, report.md, report.html${signal.aborted ? ' (interrupted: partial)' : ''}\n`,
    );
  });

program
  .command('report')
  .description('regenerate results.csv, report.md and report.html from DIR/results.json')
  .argument('<dir>', 'a bench output directory')
  .action(async (dir: string) => {
    const results = readResults(`${dir}/results.json`);
    await writeReports(results, dir);
    process.stdout.write(reportMarkdown(results) + '\n');
  });

bench
  .command('controller')
  .description("the controller's own cost: forced-switchover latency and CPU, over N lab migrations")
  .option('--runs <n>', 'number of forced switchovers', positiveInt('--runs'), 20)
  .option('--workload <spec>', 'guest workload', 'random:100')
  .option('--ram <MiB>', 'guest RAM, MiB', positiveInt('--ram'), 256)
  .option('--link <spec>', 'emulated link', '1gbit')
  .action(async (o) => {
    const r = await measureControllerCost({
      runs: o.runs,
      workload: parseWorkload(o.workload),
      ramMiB: o.ram,
      link: parseLink(o.link),
      log: (l) => process.stderr.write(l + '\n'),
    });
    process.stdout.write(JSON.stringify(r, null, 2) + '\n');
  });

program
  .command('sim')
  .description('simulate migrations (same policy code, a model of QEMU and the link); lists sweep')
  .option('--workloads <list>', 'comma-separated workloads (guest-program specs)', list, ['random:200'])
  .option('--workload <spec>', 'one workload (same as --workloads with one entry)')
  .option('--trace <file>', 'a recorded trace (kvmigrate record) instead of a synthetic workload')
  .option('--ram <list>', 'comma-separated guest RAM sizes, MiB', list, ['512'])
  .option('--links <list>', 'comma-separated link rates', list, ['1gbit'])
  .option('--link <rate>', 'one link rate')
  .option('--policies <list>', 'comma-separated policies (relaxed = relaxed(L*))', list, [
    'stock',
    'frs',
    'mp',
    'adaptive',
  ])
  .option('--policy <name>', 'one policy')
  .option('--downtime-budget <ms>', 'downtime budget, ms', positiveNumber('--downtime-budget'), 300)
  .option('--deadline <s>', 'deadline, s', positiveNumber('--deadline'), 120)
  .option('--allow-postcopy', 'let the policies that can post-copy do so')
  .option('--out <dir>', 'also write results.json, results.csv, report.md, report.html like bench')
  .option('--validate <dir>', "compare with a real bench run's results.json in DIR: error table")
  .option('--json', 'one JSON object per run')
  .action(async (o) => {
    if (o.validate) {
      const v = validate(readResults(`${o.validate}/results.json`));
      process.stdout.write(validationTable(v) + '\n');
      return;
    }
    const opts: SweepOptions = {
      workloads: o.trace ? [`trace:${o.trace}`] : o.workload ? [o.workload] : o.workloads,
      ramMiB: (o.ram as string[]).map((r) => positiveInt('--ram')(r)),
      links: o.link ? [o.link] : o.links,
      policies: o.policy ? [o.policy] : o.policies,
      downtimeBudgetMs: o.downtimeBudget,
      deadlineS: o.deadline,
      postcopyPermitted: Boolean(o.allowPostcopy),
    };
    const t0 = performance.now();
    const runs = runSweep(opts);
    const ms = performance.now() - t0;
    if (o.json) {
      for (const r of runs)
        process.stdout.write(
          JSON.stringify({ ...r, result: { ...r.result, passes: r.result.passes.length } }) + '\n',
        );
    } else {
      const rows = [
        ['workload', 'RAM', 'link', 'policy', 'outcome', 'total s', 'downtime ms', 'sent MiB', 'passes'],
      ];
      for (const { workload, ramMiB, link, policy, result: r } of runs)
        rows.push([
          workload,
          `${ramMiB} MiB`,
          link,
          policy,
          r.outcome + (r.postcopy ? ' (post-copy)' : ''),
          (r.totalTimeMs / 1000).toFixed(2),
          r.outcome === 'completed' ? r.downtimeMs.toFixed(0) : '-',
          (r.transferredBytes / 2 ** 20).toFixed(0),
          String(r.passes.length),
        ]);
      process.stdout.write(`${table(rows)}\n${runs.length} simulated migrations in ${ms.toFixed(0)} ms\n`);
    }
    if (o.out) {
      mkdirSync(o.out, { recursive: true });
      const results = sweepResults(opts, runs);
      writeFileSync(`${o.out}/results.json`, JSON.stringify(results, null, 1));
      await writeReports(results, o.out);
      process.stderr.write(`wrote ${o.out}/results.json, results.csv, report.md, report.html\n`);
    }
  });

program
  .command('record')
  .description(
    "record a lab workload's dirty behaviour (passes and calc-dirty-rate samples) as a trace for sim --trace",
  )
  .option('--workload <spec>', 'guest workload', 'random:200')
  .option('--ram <MiB>', 'guest RAM, MiB', positiveInt('--ram'), 512)
  .option('--link <spec>', 'emulated link', '1gbit')
  .option(
    '--duration <s>',
    'how long to watch (the migration is cancelled then), s',
    positiveNumber('--duration'),
    15,
  )
  .requiredOption('--out <file>', 'trace file to write (JSON lines)')
  .option('--cache-dir <dir>', 'guest image cache')
  .action(async (o) => {
    const workload = parseWorkload(o.workload);
    const link = parseLink(o.link);
    const signal = interruptSignal();
    const log = (l: string) => process.stderr.write(l + '\n');
    const pair = await Lab.start({ workload, ramMiB: o.ram, link, cacheDir: o.cacheDir, log });
    let result: LabMigrationResult;
    try {
      // Stock pre-copy into the lab's destination: QEMU's own passes, and calc-dirty-rate windows
      // sampled throughout; cancelled at the end, so the source runs on untouched.
      result = await migrateLab(pair, {
        policy: resolvePolicy('stock'),
        downtimeBudgetMs: 300,
        deadlineMs: o.duration * 1000,
        workingSetWindowsMs: [125, 500],
        signal,
      });
    } finally {
      await pair.destroy();
    }
    const version = await probeQemuVersion();
    const trace = traceFromMigration(result.migration, {
      workload: o.workload,
      qemu: version.text,
      linkBps: link.rateMbit ? (link.rateMbit * 1e6) / 8 : undefined,
    });
    writeTrace(o.out, trace);
    process.stderr.write(
      `wrote ${o.out}: ${trace.records.filter((r) => r.type === 'sample').length} dirty-rate samples, ${result.migration.passes.length} passes (${result.migration.outcome})\n`,
    );
  });

program
  .command('recover')
  .description(
    'after a controller died mid-migration: inspect both sides and leave exactly one guest running',
  )
  .requiredOption('--src <qmp>', "source's QMP socket path or HOST:PORT")
  .requiredOption('--dst <qmp>', "destination's QMP socket path or HOST:PORT")
  .option('--json', 'print the report as JSON')
  .action(async (o) => {
    // Either side may be gone; recover with what answers.
    const report = await recoverAt(o.src, o.dst);
    if (!report) throw new UsageError(`neither ${o.src} nor ${o.dst} answers QMP: nothing to recover`);
    process.stdout.write(
      o.json ? JSON.stringify(report) + '\n' : `found: ${report.found}\ndid: ${report.did}\n`,
    );
    process.exitCode = report.running === 'none' ? 1 : 0;
  });

program
  .command('demo')
  .description(
    'stock vs relaxed vs frs vs mp vs adaptive on one memory-intensive lab guest; prints the table',
  )
  .option('--workload <spec>', 'guest workload', 'random:200')
  .option('--ram <MiB>', 'guest RAM, MiB', positiveInt('--ram'), 512)
  .option('--link <spec>', 'emulated link', '1gbit')
  .option('--deadline <s>', 'deadline per migration, s', positiveNumber('--deadline'), 20)
  .option('--out <dir>', 'where to keep the results and reports', 'results/demo')
  .action(async (o) => {
    const results = await runBench({
      workloads: [o.workload],
      policies: ['stock', 'relaxed', 'frs', 'mp', 'adaptive'],
      ramMiB: o.ram,
      link: o.link,
      reps: 1,
      downtimeBudgetMs: 300,
      deadlineS: o.deadline,
      out: o.out,
      signal: interruptSignal(),
      log: (l) => process.stderr.write(l + '\n'),
    });
    process.stdout.write(reportMarkdown(results) + '\n');
    process.stderr.write(`charts and details: ${o.out}/report.html\n`);
  });

export async function main(argv: string[]): Promise<void> {
  const debug = argv.includes('--debug');
  try {
    await program.parseAsync(argv);
  } catch (err) {
    if (err instanceof CommanderError) {
      // Commander already printed its message (or the help text).
      process.exitCode = err.exitCode === 0 ? 0 : 2;
      return;
    }
    process.exitCode = reportError(err, debug);
  }
}
