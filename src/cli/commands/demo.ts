import type { Command } from 'commander';
import { demoStory } from '../../bench/demo-story.js';
import { runBench } from '../../bench/run.js';
import { positiveInt, positiveNumber } from '../options.js';
import { interruptSignal } from '../progress.js';

export function register(program: Command): void {
  program
    .command('demo')
    .description(
      'one memory-intensive lab guest under stock, relaxed, frs, mp, adaptive and the strongest production rules, pre-copy only and with post-copy permitted; prints what each did',
    )
    .option('--workload <spec>', 'guest workload', 'random:200')
    .option('--ram <MiB>', 'guest RAM, MiB', positiveInt('--ram'), 512)
    .option('--link <spec>', 'emulated link', '1gbit')
    .option(
      '--deadline <s>',
      'deadline per migration, s (long enough for the production rules to act: KubeVirt needs 40 s)',
      positiveNumber('--deadline'),
      50,
    )
    .option('--out <dir>', 'where to keep the results and reports', 'results/demo')
    .action(async (o) => {
      const signal = interruptSignal();
      const log = (l: string) => process.stderr.write(l + '\n');
      const common = {
        workloads: [o.workload],
        ramMiB: o.ram,
        link: o.link,
        reps: 1,
        downtimeBudgetMs: 300,
        deadlineS: o.deadline,
        signal,
        log,
      };
      // Pre-copy only: stock, relaxed(L*) (a short ladder keeps the demo short), the study's
      // policies and adaptive, and the strongest production rules (KubeVirt's stall detector,
      // Proxmox's doubling).
      const precopy = await runBench({
        ...common,
        policies: ['stock', 'relaxed', 'frs', 'mp', 'adaptive', 'kubevirt-stall', 'proxmox'],
        ladder: [1000, 2000, 3000, 5000],
        out: o.out,
      });
      // With post-copy permitted: adaptive against KubeVirt's rule, which may post-copy too.
      const postcopy = signal.aborted
        ? undefined
        : await runBench({
            ...common,
            policies: ['adaptive', 'kubevirt-stall'],
            postcopyPermitted: true,
            out: `${o.out}/postcopy`,
          });
      process.stdout.write(demoStory(precopy, postcopy) + '\n');
      process.stderr.write(`reports and charts: ${o.out}/report.html, ${o.out}/postcopy/report.html\n`);
    });
}
