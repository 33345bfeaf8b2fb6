import type { Command } from 'commander';
import { resultExitCode } from '../../core/result.js';
import { LibvirtClient } from '../../libvirt/index.js';
import { LibvirtSession } from '../../libvirt/libvirt-session.js';
import { recoverLibvirt } from '../../libvirt/recover.js';
import { EXIT, UsageError } from '../../util/errors.js';
import { resolveDeadline } from '../deadline.js';
import { outcomeSummary } from '../format.js';
import { checkMigrationFlags, migrationOptions } from '../migration-flags.js';
import { interruptSignal, progressReporter } from '../progress.js';

/** The flags of `migrate --libvirt` and `attach`, as commander hands them over. */
interface LibvirtFlags {
  libvirt: string;
  domain?: string;
  to?: string;
  migrateUri?: string;
  listenAddress?: string;
  json?: boolean;
  quiet?: boolean;
}

/**
 * Steers a libvirt migration: `start` starts it (`migrate --libvirt … --to …`), otherwise it takes
 * over the job already running (`attach`). Both go through the same controller core as the QMP
 * driver; actions only through libvirt's own calls.
 */
export async function steerLibvirt(
  o: LibvirtFlags & Record<string, unknown>,
  policyGiven: boolean,
  start: boolean,
) {
  if (!o.domain) throw new UsageError('--libvirt needs --domain NAME');
  if (start && !o.to)
    throw new UsageError('migrate --libvirt needs --to DEST_URI (the destination libvirt URI)');
  const flags = checkMigrationFlags(o as never, policyGiven);
  const source = await LibvirtClient.open(o.libvirt);
  const destination = o.to ? await LibvirtClient.open(o.to).catch(() => undefined) : undefined;
  try {
    const info = await source.jobStats(o.domain).catch(() => undefined);
    const deadline = resolveDeadline({
      deadlineS: flags.deadlineS,
      perGiBS: flags.perGiBS,
      ramBytes: info?.ram?.total ?? 2 ** 30,
      bandwidthBps: flags.maxBandwidthBps,
    });
    const progress = progressReporter(Boolean(o.quiet || o.json), [`deadline ${deadline.why}`]);
    const result = await new LibvirtSession({
      source,
      destination,
      domain: o.domain,
      start: start
        ? {
            destUri: o.to!,
            migrateUri: o.migrateUri?.replace(/^tcp:(?!\/\/)/, 'tcp://'),
            listenAddress: o.listenAddress,
          }
        : undefined,
      policy: flags.policy,
      downtimeBudgetMs: flags.downtimeBudgetMs,
      deadlineMs: deadline.ms,
      onDeadline: flags.onDeadline,
      postcopyPermitted: flags.postcopyPermitted,
      signal: interruptSignal(),
      ...progress,
    }).run();
    progress.done();
    if (!o.json && !o.quiet) {
      process.stderr.write(outcomeSummary(result));
    }
    process.stdout.write(JSON.stringify(result, null, o.json ? 2 : undefined) + '\n');
    process.exitCode = resultExitCode(result);
  } finally {
    await source.close();
    await destination?.close();
  }
}

export function register(program: Command): void {
  migrationOptions(
    program
      .command('attach')
      .description(
        'take over a libvirt migration someone else started (virsh, an orchestrator) and steer it to the end',
      )
      .requiredOption(
        '--libvirt <uri>',
        "the source's libvirt URI, e.g. qemu:///system or qemu+unix:///system?socket=PATH",
      )
      .requiredOption('--domain <name>', 'the migrating domain')
      .option('--to <uri>', "the destination's libvirt URI: asked at the end where the guest is"),
  ).action(async (o, cmd: Command) => steerLibvirt(o, cmd.getOptionValueSource('policy') === 'cli', false));
}

/** `recover --libvirt URI --domain NAME [--to DEST_URI]`. */
export async function recoverThroughLibvirt(o: {
  libvirt: string;
  domain?: string;
  to?: string;
  json?: boolean;
}) {
  if (!o.domain) throw new UsageError('recover --libvirt needs --domain NAME');
  const source = await LibvirtClient.open(o.libvirt).catch(() => undefined);
  const destination = o.to ? await LibvirtClient.open(o.to).catch(() => undefined) : undefined;
  if (!source && !destination) throw new UsageError(`neither libvirt daemon answers: nothing to recover`);
  try {
    const report = await recoverLibvirt(source, destination, o.domain);
    process.stdout.write(
      o.json
        ? JSON.stringify(report) + '\n'
        : `found: ${report.found}\ndid: ${report.did}\nguest runs on: ${report.running}\n`,
    );
    process.exitCode = report.running === 'none' ? EXIT.operatorNeeded : EXIT.ok;
  } finally {
    await source?.close();
    await destination?.close();
  }
}
