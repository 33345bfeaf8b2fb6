import type { Command } from 'commander';
import { LibvirtClient, UNLIMITED_SPEED_MIBPS } from '../../libvirt/index.js';
import { LibvirtSession, speedMiBps } from '../../libvirt/libvirt-session.js';
import { recoverLibvirt } from '../../libvirt/recover.js';
import { EXIT, UsageError } from '../../util/errors.js';
import { resolveDeadline } from '../deadline.js';
import { checkMigrationFlags, migrationOptions, sessionFromFlags } from '../migration-flags.js';
import { formatRate } from '../rate.js';
import {
  checkRegionFlags,
  libvirtRegionPlan,
  regionLine,
  wantsRegions,
  type RegionFlags,
} from '../region-sources.js';
import { RunOutputs, runOutputOptions } from '../run-outputs.js';
import { announce, steer, steerOptions, type SteerValues } from '../steer.js';
import { startTap, tapUpstream } from '../tap.js';
import type { MigrationTap } from '../../tap/index.js';

/** The flags of `migrate --libvirt` and `attach`, as commander hands them over. */
interface LibvirtFlags extends SteerValues, RegionFlags {
  libvirt: string;
  domain?: string;
  to?: string;
  migrateUri?: string;
  listenAddress?: string;
  events?: string;
  metrics?: string;
  metricsLinger?: string;
  tap?: string | boolean;
}

/**
 * `--tap` under libvirt: libvirt gives the destination QEMU and the source QEMU one migration URI
 * (the destination listens at --listen-address on its port, the source connects to its host), so
 * the relay listens on this host's loopback at that same port and passes the stream on to
 * HOST:PORT. Only for a migration kvmigrate starts.
 */
function libvirtTapUpstream(o: LibvirtFlags, start: boolean) {
  if (!start) throw new UsageError('--tap relays a migration kvmigrate starts: not with attach');
  if (typeof o.tap === 'string')
    throw new UsageError(
      "--tap takes no address under libvirt: the relay listens on 127.0.0.1 at --migrate-uri's port",
    );
  if (!o.migrateUri || !o.listenAddress)
    throw new UsageError(
      '--tap under libvirt needs --migrate-uri tcp:HOST:PORT and --listen-address HOST (the destination listens there; the source QEMU is pointed at the relay on this host)',
    );
  return tapUpstream(o.migrateUri.replace(/^tcp:\/\//, 'tcp:'));
}

/**
 * Steers a libvirt migration: `start` starts it (`migrate --libvirt … --to …`), otherwise it takes
 * over the job already running (`attach`). Both go through the same controller core as the QMP
 * driver, with the same operator contract (--bandwidth, --events, --metrics, the control socket,
 * region sets by sampling the source QEMU's RAM when it runs on this host); actions only through
 * libvirt's own calls.
 */
export async function steerLibvirt(
  o: LibvirtFlags & Record<string, unknown>,
  policyGiven: boolean,
  start: boolean,
) {
  if (!o.domain) throw new UsageError('--libvirt needs --domain NAME');
  const domain = o.domain;
  if (start && !o.to)
    throw new UsageError('migrate --libvirt needs --to DEST_URI (the destination libvirt URI)');
  const flags = checkMigrationFlags(o as never, policyGiven);
  checkRegionFlags(o);
  const upstream = o.tap ? libvirtTapUpstream(o, start) : undefined;
  const outputs = await RunOutputs.open(o, {
    policy: flags.policy.policy.name,
    source: `${o.libvirt} domain ${domain}`,
    destination: o.to ?? 'unknown',
    migrateUri: o.migrateUri ?? 'libvirt',
  });
  announce(o, outputs);
  let source: LibvirtClient | undefined;
  let destination: LibvirtClient | undefined;
  let tap: MigrationTap | undefined;
  try {
    source = await LibvirtClient.open(o.libvirt);
    destination = o.to ? await LibvirtClient.open(o.to).catch(() => undefined) : undefined;
    const src = source;
    // The deadline from the domain's memory and the speed libvirt holds it to (as QMP's max-bandwidth).
    const ramBytes = await src.memoryBytes(domain).catch(() => undefined);
    const speed = await src.maxSpeed(domain).catch(() => undefined);
    const deadline = resolveDeadline({
      deadlineS: flags.deadlineS,
      perGiBS: flags.perGiBS,
      ramBytes: ramBytes ?? 2 ** 30,
      bandwidthBps:
        flags.maxBandwidthBps ?? (speed && speed < UNLIMITED_SPEED_MIBPS ? speed * 2 ** 20 : undefined),
    });
    // With the tap, the source QEMU sends to the relay on this host, which passes the stream on
    // to where the destination listens and reads exact region sets from it.
    if (upstream) tap = await startTap(`127.0.0.1:${upstream.upstreamPort}`, upstream, ramBytes ?? 0);
    const regions = tap
      ? undefined
      : wantsRegions(flags)
        ? await libvirtRegionPlan(o, src, domain)
        : undefined;
    await steer(
      o,
      outputs,
      [
        `deadline ${deadline.why}, then ${flags.onDeadline}`,
        ...(flags.maxBandwidthBps !== undefined
          ? [`max speed ${formatRate(speedMiBps(flags.maxBandwidthBps) * 2 ** 20)}`]
          : []),
        ...(regions ? [regionLine(flags, regions)] : []),
      ],
      (hooks) =>
        new LibvirtSession({
          source: src,
          destination,
          domain,
          start: start
            ? {
                destUri: o.to!,
                migrateUri: (tap?.uri ?? o.migrateUri)?.replace(/^tcp:(?!\/\/)/, 'tcp://'),
                listenAddress: o.listenAddress,
              }
            : undefined,
          ...sessionFromFlags(flags, deadline.ms),
          regionSampler: tap ? async () => tap! : regions?.sampler,
          regionsUnavailable: regions?.sampler ? undefined : regions?.note,
          ...hooks,
        }),
    );
  } catch (err) {
    outputs.failed(err);
    throw err;
  } finally {
    await outputs.close();
    await tap?.close();
    await source?.close();
    await destination?.close();
  }
}

export function register(program: Command): void {
  migrationOptions(
    steerOptions(
      runOutputOptions(
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
      ),
    ),
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
