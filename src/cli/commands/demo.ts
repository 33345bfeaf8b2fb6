import type { Command } from 'commander';
import { reportMarkdown } from '../../bench/report.js';
import { runBench } from '../../bench/run.js';
import { positiveInt, positiveNumber } from '../options.js';
import { interruptSignal } from '../progress.js';

export function register(program: Command): void {
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
        // relaxed(L*) runs every rung: a short ladder keeps the demo short.
        ladder: [1000, 2000, 3000, 5000],
        downtimeBudgetMs: 300,
        deadlineS: o.deadline,
        out: o.out,
        signal: interruptSignal(),
        log: (l) => process.stderr.write(l + '\n'),
      });
      process.stdout.write(reportMarkdown(results) + '\n');
      process.stderr.write(`charts and details: ${o.out}/report.html\n`);
    });
}
