import { readFileSync } from 'node:fs';
import { Command, CommanderError } from 'commander';
import { EXIT } from '../util/errors.js';
import { register as registerBench } from './commands/bench.js';
import { register as registerCtl } from './commands/ctl.js';
import { register as registerDemo } from './commands/demo.js';
import { register as registerEvacuate } from './commands/evacuate.js';
import { register as registerLab } from './commands/lab.js';
import { register as registerAttach } from './commands/libvirt.js';
import { register as registerMigrate } from './commands/migrate.js';
import { register as registerPolicies } from './commands/policies.js';
import { register as registerRecord } from './commands/record.js';
import { register as registerRecover } from './commands/recover.js';
import { register as registerReport } from './commands/report.js';
import { register as registerSim } from './commands/sim.js';
import { reportError } from './errors.js';

/** The version in package.json (two levels up from src/cli and from dist/cli alike). */
export function version(): string {
  const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as {
    version: string;
  };
  return pkg.version;
}

/**
 * The program with every command. Usage errors come back as CommanderError (exitOverride) and are
 * printed by `main`, in the same one-line form as ours (or as JSON with --json).
 */
export function buildProgram(): Command {
  const program = new Command('kvmigrate')
    .description('Make QEMU live migration converge: observe every pass over QMP, decide with a policy, act.')
    .version(version(), '-V, --version', 'print the version')
    .option('--debug', 'print a short stack trace on errors')
    .exitOverride()
    // Inherited by the subcommands made with .command(): main prints usage errors itself.
    .configureOutput({ outputError: () => undefined });
  registerLab(program);
  registerMigrate(program);
  registerAttach(program);
  registerCtl(program);
  registerBench(program);
  registerReport(program);
  registerSim(program);
  registerRecord(program);
  registerRecover(program);
  registerPolicies(program);
  registerDemo(program);
  registerEvacuate(program);
  return program;
}

/** Runs the CLI; sets process.exitCode from the table in src/util/errors.ts (EXIT). */
export async function main(argv: string[]): Promise<void> {
  const debug = argv.includes('--debug');
  const json = argv.includes('--json');
  try {
    await buildProgram().parseAsync(argv);
  } catch (err) {
    // Help and --version end with a CommanderError of exit code 0 once printed.
    if (err instanceof CommanderError && (err.exitCode === 0 || err.code === 'commander.help')) {
      // A command without its subcommand printed its help on stderr: a usage error.
      process.exitCode = err.exitCode === 0 ? EXIT.ok : EXIT.usage;
      return;
    }
    process.exitCode = reportError(err, { debug, json });
  }
}
