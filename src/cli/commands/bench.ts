import { InvalidArgumentError, type Command } from 'commander';
import { reportMarkdown } from '../../bench/report.js';
import { benchConfig } from '../../bench/config.js';
import { optionsFromConfig, parseDrivers, runBench, type BenchOptions } from '../../bench/run.js';
import { list, positiveInt, positiveNumber } from '../options.js';
import { interruptSignal } from '../progress.js';
import { register as registerController } from './controller.js';

export function register(program: Command): void {
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
    .option(
      '--allow-postcopy',
      "let the policies that can post-copy do so (mp, adaptive, nova; KubeVirt's rules with allowPostCopy on); relaxed and stock never do",
    )
    .option(
      '--driver <qmp|libvirt|both>',
      "how each run migrates: qmp (two QEMUs, kvmigrate owns the monitors; default), libvirt (a domain on the lab's libvirt pair), both (every run under each, interleaved; qmp is the reference)",
      (v: string) => {
        try {
          return parseDrivers(v);
        } catch (err) {
          throw new InvalidArgumentError((err as Error).message);
        }
      },
    )
    .option('--out <dir>', 'output directory', 'results')
    .option('--resume', 'keep the whole reps already in --out and run the rest')
    .option(
      '--config <name>',
      'a committed bench config (precopy, postcopy, validation, validation-postcopy): fixes every matrix option above',
    )
    .action(async (o) => {
      const signal = interruptSignal();
      const run = {
        out: o.out,
        ...(o.driver ? { drivers: o.driver } : {}),
        resume: Boolean(o.resume),
        signal,
        log: (l: string) => process.stderr.write(l + '\n'),
      };
      const options: BenchOptions = o.config
        ? optionsFromConfig(benchConfig(o.config), run)
        : {
            workloads: o.workloads,
            policies: o.policies,
            ramMiB: o.ram,
            link: o.link,
            reps: o.reps ?? (o.quick ? 3 : 5),
            downtimeBudgetMs: o.downtimeBudget,
            deadlineS: o.deadline,
            tap: Boolean(o.tap),
            postcopyPermitted: Boolean(o.allowPostcopy),
            ...run,
          };
      const results = await runBench(options);
      process.stdout.write(reportMarkdown(results) + '\n');
      process.stderr.write(
        `wrote ${o.out}/results.json, results.csv, report.md, report.html${signal.aborted ? ' (interrupted: partial)' : ''}\n`,
      );
    });
  registerController(bench);
}
