import type { Command } from 'commander';
import { z } from 'zod';
import { ControlServer } from '../../migration/control-socket.js';
import { resultExitCode } from '../../core/result.js';
import { MigrationSession, type MigrationResult } from '../../migration/session.js';
import { QmpClient } from '../../qmp/index.js';
import { MigrationTap } from '../../tap/index.js';
import { EXIT, MigrationSetupError, UsageError, type ExitCode } from '../../util/errors.js';
import { resolveDeadline } from '../deadline.js';
import { QmpUnreachableError } from '../errors.js';
import { outcomeSummary } from '../format.js';
import {
  checkMigrationFlags,
  migrationOptions,
  regionWarning,
  sessionFromFlags,
} from '../migration-flags.js';
import { interruptSignal, progressReporter } from '../progress.js';
import { formatRate } from '../rate.js';
import { RunOutputs, runOutputOptions } from '../run-outputs.js';
import { steerLibvirt } from './libvirt.js';

/** `--tap` relays to where `--uri` points. */
function tapUpstream(uri: string): { upstreamHost: string; upstreamPort: number } {
  const m = /^tcp:(\[[^\]]+\]|[^:]+):(\d+)$/.exec(uri);
  if (!m) throw new UsageError(`--tap needs a tcp:HOST:PORT --uri, not '${uri}'`);
  return { upstreamHost: m[1]!.replace(/^\[|\]$/g, ''), upstreamPort: Number(m[2]) };
}

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
    )
    .option(
      '--control-socket <path>',
      'listen for kvmigrate ctl here (default $XDG_RUNTIME_DIR/kvmigrate/PID.sock, /run/kvmigrate/ or TMPDIR)',
    )
    .option('--no-control-socket', 'no control socket');
}

export function register(program: Command): void {
  migrationOptions(migrateOptions(runOutputOptions(program.command('migrate')))).action(
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
interface QmpMigrateValues {
  src: string;
  dst: string;
  uri: string;
  incoming?: string;
  tap?: string | true;
  controlSocket?: string | false;
  json?: boolean;
  quiet?: boolean;
  events?: string;
  metrics?: string;
  metricsLinger?: string;
}

/** `migrate` on two QMP sockets: connect, size the deadline, start the tap and control socket, run, report. */
async function migrateQmp(o: QmpMigrateValues, flags: MigrateFlags): Promise<void> {
  const upstream = o.tap ? tapUpstream(o.uri) : undefined;
  if (!upstream) {
    const warning = regionWarning(flags.policy, flags.downtimeBudgetMs, flags.postcopyPermitted);
    if (warning) process.stderr.write(`kvmigrate: ${warning}\n`);
  }
  const outputs = await RunOutputs.open(o, {
    policy: flags.policy.policy.name,
    source: o.src,
    destination: o.dst,
    migrateUri: o.uri,
  });
  if (outputs.metricsUrl && !o.quiet) process.stderr.write(`kvmigrate: metrics on ${outputs.metricsUrl}\n`);
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
  let control: ControlServer | undefined;
  let announce: (() => void) | undefined;
  try {
    const facts = await sourceFacts(source);
    const deadline = resolveDeadline({
      deadlineS: flags.deadlineS,
      perGiBS: flags.perGiBS,
      ramBytes: facts.ramBytes,
      bandwidthBps: flags.maxBandwidthBps ?? facts.maxBandwidthBps,
    });
    if (upstream) tap = await startTap(o.tap ?? true, upstream, facts.ramBytes);
    const progress = progressReporter(Boolean(o.quiet || o.json), [
      `deadline ${deadline.why}, then ${flags.onDeadline}`,
      ...(flags.maxBandwidthBps !== undefined ? [`max-bandwidth ${formatRate(flags.maxBandwidthBps)}`] : []),
    ]);
    const session = new MigrationSession({
      source,
      destination,
      migrateUri: tap?.uri ?? o.uri,
      regionSource: tap,
      incomingUri: o.incoming,
      ...sessionFromFlags(flags, deadline.ms),
      // In post-copy the guest must run on the destination: one started with -S (as the README
      // says) is started when post-copy begins (a policy's switch or kvmigrate ctl postcopy).
      startDestinationOnPostcopy: true,
      signal: interruptSignal(),
      ...progress,
      onEvent: outputs.onEvent,
      onStarted: () => announce?.(),
    });
    // Said once the migration started, so a refusal before it stays the only line on stderr.
    if (o.controlSocket !== false) ({ control, announce } = await openControl(session, o, outputs));
    const result = await session.run();
    progress.done();
    if (!o.json && !o.quiet) process.stderr.write(outcomeSummary(result));
    if (outputs.eventsError) process.stderr.write(`kvmigrate: --events stopped: ${outputs.eventsError}\n`);
    // With --events -, stdout is the event stream and the result its last line.
    if (!outputs.eventsOnStdout)
      process.stdout.write(JSON.stringify(result, null, o.json ? 2 : undefined) + '\n');
    process.exitCode = migrationExitCode(result);
  } catch (err) {
    outputs.failed(err);
    throw err;
  } finally {
    await control?.close();
    await outputs.close();
    await tap?.close();
    source.close();
    destination.close();
  }
}

async function startTap(
  at: string | true,
  upstream: ReturnType<typeof tapUpstream>,
  ramBytes: number,
): Promise<MigrationTap> {
  const [listenHost, listenPort] = typeof at === 'string' ? at.split(':') : ['127.0.0.1', '0'];
  return MigrationTap.start({ ...upstream, listenHost, listenPort: Number(listenPort), ramBytes });
}

async function openControl(session: MigrationSession, o: QmpMigrateValues, outputs: RunOutputs) {
  const control = await ControlServer.listen(session, o.controlSocket || undefined);
  outputs.listen(control.observe);
  const announce = () => {
    if (!o.quiet)
      process.stderr.write(
        `kvmigrate: control socket ${control.path} (kvmigrate ctl ${control.path} status|force-complete|postcopy|abort|set-downtime MS)\n`,
      );
  };
  return { control, announce };
}
