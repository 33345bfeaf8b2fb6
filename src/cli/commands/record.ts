import type { Command } from 'commander';
import { Lab, migrateLab, type LabMigrationResult } from '../../lab/lab.js';
import { parseLink } from '../../lab/link.js';
import { parseLabWorkload } from '../../util/specs.js';
import { resolvePolicy } from '../../policy/index.js';
import { probeQemuVersion } from '../../qemu/index.js';
import { traceFromMigration, writeTrace } from '../../sim/trace.js';
import { positiveInt, positiveNumber } from '../options.js';
import { interruptSignal } from '../progress.js';

export function register(program: Command): void {
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
      const workload = parseLabWorkload(o.workload);
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
}
