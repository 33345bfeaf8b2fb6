import { mkdirSync } from 'node:fs';
import { writeFileAtomic } from '../../util/fs.js';
import type { Command } from 'commander';
import { readResults } from '../../bench/results.js';
import { writeReports } from '../../bench/report.js';
import { runSweep, simRunLine, type SweepOptions } from '../../sim/sweep.js';
import { sweepResults, validate, validationTable } from '../../bench/sim-results.js';
import { table } from '../format.js';
import { runFleetCommand } from './fleet.js';
import { collect, list, positiveInt, positiveNumber } from '../options.js';

export function register(program: Command): void {
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
    .option('--policy-opt <k=v>', 'an option of the policy (repeatable; one --policy)', collect, [])
    .option('--downtime-budget <ms>', 'downtime budget, ms', positiveNumber('--downtime-budget'), 300)
    .option('--deadline <s>', 'deadline, s', positiveNumber('--deadline'), 120)
    .option('--allow-postcopy', 'let the policies that can post-copy do so')
    .option('--multifd <n>', 'multifd channels (default 1: one migration stream)', positiveInt('--multifd'))
    .option(
      '--channel-gbit <rate>',
      'what one stream carries at most, Gbit/s (default 10)',
      positiveNumber('--channel-gbit'),
    )
    .option('--out <dir>', 'also write results.json, results.csv, report.md, report.html like bench')
    .option('--validate <dir>', "compare with a real bench run's results.json in DIR: error table")
    .option('--fleet <file>', 'evacuate a fleet (JSON/YAML: links, hosts, VMs) under each --strategies')
    .option('--strategies <list>', 'with --fleet: nova, kubevirt, fixed (1…12), fixed:N, planner', list, [
      'nova',
      'kubevirt',
      'fixed',
      'planner',
    ])
    .option('--json', 'one JSON object per run')
    .action(async (o) => {
      if (o.fleet) return runFleetCommand(o);
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
        policyOptions: o.policyOpt,
        params: {
          ...(o.multifd ? { channels: o.multifd as number } : {}),
          ...(o.channelGbit ? { channelBps: ((o.channelGbit as number) * 1e9) / 8 } : {}),
        },
      };
      const t0 = performance.now();
      const runs = runSweep(opts);
      const ms = performance.now() - t0;
      if (o.json) {
        // The names migrate --json uses (docs/schema/sim-run.schema.json).
        for (const r of runs) process.stdout.write(JSON.stringify(simRunLine(opts, r)) + '\n');
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
        writeFileAtomic(`${o.out}/results.json`, JSON.stringify(results, null, 1));
        await writeReports(results, o.out);
        process.stderr.write(`wrote ${o.out}/results.json, results.csv, report.md, report.html\n`);
      }
    });
}
