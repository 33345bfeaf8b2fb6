import type { Command } from 'commander';
import { measureControllerCost } from '../../bench/controller-cost.js';
import { parseLink } from '../../lab/link.js';
import { parseWorkload } from '../../util/specs.js';
import { positiveInt } from '../options.js';

/** `bench controller`: registered under `bench`. */
export function register(bench: Command): void {
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
}
