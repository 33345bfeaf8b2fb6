import type { Command } from 'commander';
import { readResults } from '../../bench/results.js';
import { reportMarkdown, writeReports } from '../../bench/report.js';

export function register(program: Command): void {
  program
    .command('report')
    .description('regenerate results.csv, report.md and report.html from DIR/results.json')
    .argument('<dir>', 'a bench output directory')
    .action(async (dir: string) => {
      const results = readResults(`${dir}/results.json`);
      await writeReports(results, dir);
      process.stdout.write(reportMarkdown(results) + '\n');
    });
}
