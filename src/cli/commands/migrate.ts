import type { Command } from 'commander';
import { z } from 'zod';
import { resultExitCode } from '../../core/result.js';
import { MigrationSession, type MigrationResult } from '../../migration/session.js';
import { QmpClient } from '../../qmp/index.js';
import { MigrationTap } from '../../tap/index.js';
import { EXIT, MigrationSetupError, UsageError, type ExitCode } from '../../util/errors.js';
import { resolveDeadline } from '../deadline.js';
import { QmpUnreachableError } from '../errors.js';
import { checkMigrationFlags, migrationOptions, sessionFromFlags } from '../migration-flags.js';
import { formatRate } from '../rate.js';
import {
  qmpRegionPlan,
  qmpSourcePid,
  checkRegionFlags,
  regionLine,
  wantsRegions,
  type RegionFlags,
  type RegionPlan,
} from '../region-sources.js';
import { RunOutputs, runOutputOptions } from '../run-outputs.js';
import { announce, steer, steerOptions, type SteerValues } from '../steer.js';
import { startTap, tapUpstream } from '../tap.js';
import { steerLibvirt } from './libvirt.js';

/** `--tap` relays to where `--uri` points. */

/**
 * Exit code of a migration's result, from where the guest runs: 0 completed and running on the
 * destination (and, in the lab, `verified`); 1 not completed and the source runs on; 3 anything
 * else — no side runs it, or a completed migration whose destination failed its checks (a lost
 * guest), or one the controller cannot place: the operator decides.
 */
export function migrationExitCode(
  r: Pick<MigrationResult, 'outcome' | 'guestRunsOn'>,
  verified = true,
): ExitCode {
  return r.outcome === 'completed' && !verified ? EXIT.operatorNeeded : resultExitCode(r);
}

/** Connects to a QMP socket named on the command line; failing to is bad input (exit 2). */
async function connect(spec: string): Promise<QmpClient> {
  try {
    return await QmpClient.connect(spec);
  } catch (err) {
    throw new QmpUnreachableError((err as Error).message);
  }
}

const RamSummarySchema = z
  .object({
    'base-memory': z
      .number()
      .int()
      .positive()
      .max(2 ** 50),
  })
  .loose();
const BandwidthSchema = z.object({ 'max-bandwidth': z.number().nonnegative().optional() }).loose();

/** Reads what the deadline needs from the source: its RAM and the max-bandwidth QEMU holds to. */
async function sourceFacts(source: QmpClient): Promise<{ ramBytes: number; maxBandwidthBps?: number }> {
  let ramBytes: number;
  try {
    ramBytes = RamSummarySchema.parse(await source.execute('query-memory-size-summary'))['base-memory'];
  } catch (err) {
    const why = err instanceof z.ZodError ? 'an answer without a sane base-memory' : (err as Error).message;
    throw new MigrationSetupError(`the source does not say its RAM size (query-memory-size-summary): ${why}`);
  }
  // Only for the default deadline: without it, 1 Gbit/s is assumed.
  const params = BandwidthSchema.safeParse(
    await source.execute('query-migrate-parameters').catch(() => undefined),
  );
  return { ramBytes, maxBandwidthBps: params.success ? params.data['max-bandwidth'] : undefined };
}

function migrateOptions(cmd: Command): Command {
  return cmd
    .description('control a migration between two QEMU instances you run (QMP unix socket or HOST:PORT each)')
    .option('--src <qmp>', "source's QMP socket path or HOST:PORT")
    .option('--dst <qmp>', "destination's QMP socket path or HOST:PORT")
    .option('--uri <uri>', 'where the source sends, e.g. tcp:10.0.0.2:4444 (tcp:, unix:, rdma:, fd:)')
    .option('--libvirt <uri>', "instead of QMP sockets: the source's libvirt URI (with --domain, --to)")
    .option('--domain <name>', 'with --libvirt: the domain to migrate')
    .option('--to <uri>', "with --libvirt: the destination's libvirt URI")
    .option('--migrate-uri <uri>', 'with --libvirt: where QEMU sends the RAM, tcp:HOST:PORT')
    .option('--listen-address <addr>', 'with --libvirt: the address the destination QEMU listens on')
    .option('--incoming <uri>', 'issue migrate-incoming on the destination first (for -incoming defer)')
    .option(
      '--tap [addr:port]',
      'relay through the tap, listening here (default 127.0.0.1, any port); needs a tcp: --uri',
    );
}

export function register(program: Command): void {
  migrationOptions(steerOptions(migrateOptions(runOutputOptions(program.command('migrate'))))).action(
    async (o, cmd: Command) => {
      const policyGiven = cmd.getOptionValueSource('policy') === 'cli';
      if (o.libvirt) return steerLibvirt(o, policyGiven, true);
      for (const f of ['src', 'dst', 'uri'] as const)
        if (!o[f])
          throw new UsageError(`migrate needs --${f} (or --libvirt URI --domain NAME --to DEST_URI)`);
      await migrateQmp(o, checkMigrationFlags(o, policyGiven));
    },
  );
}

type MigrateFlags = ReturnType<typeof checkMigrationFlags>;

/** `migrate`'s own options on the QMP path, as commander hands them over. */
interface QmpMigrateValues extends SteerValues, RegionFlags {
  src: string;
  dst: string;
  uri: string;
  incoming?: string;
  tap?: string | true;
  events?: string;
  metrics?: string;
  metricsLinger?: string;
}

/**
 * `migrate` on two QMP sockets: connect, size the deadline, start the tap or the sampling of the
 * source's RAM (region sets), the control socket, run, report.
 */
async function migrateQmp(o: QmpMigrateValues, flags: MigrateFlags): Promise<void> {
  checkRegionFlags(o);
  const upstream = o.tap ? tapUpstream(o.uri) : undefined;
  // Without the tap, region sets come from sampling the source QEMU's RAM when it runs here.
  const found = !upstream && wantsRegions(flags) ? await qmpSourcePid(o, o.src) : undefined;
  const warn = (plan: RegionPlan) => process.stderr.write(`kvmigrate: ${regionLine(flags, plan)}\n`);
  const outputs = await RunOutputs.open(o, {
    policy: flags.policy.policy.name,
    source: o.src,
    destination: o.dst,
    migrateUri: o.uri,
  });
  announce(o, outputs);
  const source = await connect(o.src).catch(async (e) => {
    await outputs.close();
    throw e;
  });
  const destination = await connect(o.dst).catch(async (e) => {
    source.close();
    await outputs.close();
    throw e;
  });
  let tap: MigrationTap | undefined;
  try {
    const facts = await sourceFacts(source);
    const deadline = resolveDeadline({
      deadlineS: flags.deadlineS,
      perGiBS: flags.perGiBS,
      ramBytes: facts.ramBytes,
      bandwidthBps: flags.maxBandwidthBps ?? facts.maxBandwidthBps,
    });
    if (upstream) tap = await startTap(o.tap ?? true, upstream, facts.ramBytes);
    // Said once both monitors answered, so a refusal before that stays the only line on stderr.
    const regions = found && 'pid' in found ? await qmpRegionPlan(found.pid, source, facts.ramBytes) : found;
    if (regions && !regions.sampler) warn(regions);
    await steer(
      o,
      outputs,
      [
        `deadline ${deadline.why}, then ${flags.onDeadline}`,
        ...(flags.maxBandwidthBps !== undefined
          ? [`max-bandwidth ${formatRate(flags.maxBandwidthBps)}`]
          : []),
        ...(regions?.sampler ? [regions.note] : []),
      ],
      (hooks) =>
        new MigrationSession({
          source,
          destination,
          migrateUri: tap?.uri ?? o.uri,
          regionSource: tap,
          regionSampler: regions?.sampler,
          regionsUnavailable: regions?.sampler ? undefined : regions?.note,
          incomingUri: o.incoming,
          ...sessionFromFlags(flags, deadline.ms),
          // In post-copy the guest must run on the destination: one started with -S (as the README
          // says) is started when post-copy begins (a policy's switch or kvmigrate ctl postcopy).
          startDestinationOnPostcopy: true,
          ...hooks,
        }),
    );
  } catch (err) {
    outputs.failed(err);
    throw err;
  } finally {
    await outputs.close();
    await tap?.close();
    source.close();
    destination.close();
  }
}
