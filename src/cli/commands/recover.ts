import type { Command } from 'commander';
import { recoverAt, type RecoveryReport } from '../../migration/recover.js';
import { EXIT, UsageError, type ExitCode } from '../../util/errors.js';
import { recoverThroughLibvirt } from './libvirt.js';

/** `none`: neither side runs the guest, or it cannot be told which may: the operator decides. */
export function recoveryExitCode(r: Pick<RecoveryReport, 'running'>): ExitCode {
  return r.running === 'none' ? EXIT.operatorNeeded : EXIT.ok;
}

export function register(program: Command): void {
  program
    .command('recover')
    .description(
      'after a controller died mid-migration: inspect both sides and leave exactly one guest running',
    )
    .option('--src <qmp>', "source's QMP socket path or HOST:PORT")
    .option('--dst <qmp>', "destination's QMP socket path or HOST:PORT")
    .option(
      '--libvirt <uri>',
      "instead: the source's libvirt URI (with --domain, and --to for the destination)",
    )
    .option('--domain <name>', 'with --libvirt: the domain')
    .option('--to <uri>', "with --libvirt: the destination's libvirt URI")
    .option('--json', 'print the report as JSON')
    .action(async (o) => {
      if (o.libvirt) return recoverThroughLibvirt(o);
      if (!o.src || !o.dst)
        throw new UsageError('recover needs --src and --dst (or --libvirt URI --domain NAME)');
      // Either side may be gone; recover with what answers.
      const report = await recoverAt(o.src, o.dst);
      if (!report) throw new UsageError(`neither ${o.src} nor ${o.dst} answers QMP: nothing to recover`);
      process.stdout.write(
        o.json
          ? JSON.stringify(report) + '\n'
          : `found: ${report.found}\ndid: ${report.did}\nguest runs on: ${report.running}${
              report.running === 'none' ? ' — the operator decides' : ''
            }\n`,
      );
      process.exitCode = recoveryExitCode(report);
    });
}
