import { Option, type Command } from 'commander';
import {
  MAX_DOWNTIME_LIMIT_MS,
  POLICIES,
  parsePolicyOptions,
  resolvePolicy,
  type ResolvedPolicy,
} from '../policy/index.js';
import { UsageError } from '../util/errors.js';
import { MAX_DEADLINE_S } from './deadline.js';
import { collect, positiveInt, positiveNumber } from './options.js';
import { qemuRateForWireCap, RATE_HELP, rateOption } from './rate.js';

/** The flags `migrate` and `lab migrate` share: policy, budget, deadlines, bandwidth, output. */
export function migrationOptions(cmd: Command): Command {
  return cmd
    .addOption(
      new Option(
        '--policy <name>',
        `convergence policy: ${Object.keys(POLICIES).join(', ')} (see kvmigrate policies)`,
      ).default('stock'),
    )
    .option(
      '--policy-opt <key=value>',
      'policy option (repeatable; kvmigrate policies NAME lists them)',
      collect,
      [],
    )
    .addOption(
      new Option('--objective <what>', 'what adaptive minimises').choices([
        'downtime',
        'total',
        'data',
        'balanced',
      ]),
    )
    .option(
      '--allow-postcopy',
      'let the policy switch to post-copy (the guest is lost if the destination or link fails during it)',
    )
    .option(
      '--switch-at-pass <k>',
      'force switchover when pass K begins (policy switch-at-pass)',
      positiveInt('--switch-at-pass'),
    )
    .option(
      '--downtime-budget <ms>',
      'downtime budget (the starting downtime-limit), ms',
      positiveNumber('--downtime-budget'),
      300,
    )
    .option(
      '--deadline <s>',
      'overall deadline, s (default: max(120, 60 + 3 × RAM ÷ bandwidth)); then --on-deadline',
      positiveNumber('--deadline'),
    )
    .option(
      '--completion-timeout-per-gib <s>',
      'deadline = this × guest RAM in GiB (KubeVirt/Nova style), instead of the default',
      positiveNumber('--completion-timeout-per-gib'),
    )
    .addOption(
      new Option('--on-deadline <action>', 'what to do at the deadline (postcopy needs --allow-postcopy)')
        .choices(['abort', 'switchover', 'postcopy'])
        .default('abort'),
    )
    .option(
      '--bandwidth <rate>',
      `QEMU's max-bandwidth for this migration, ${RATE_HELP} (default: leave QEMU's as it is)`,
      rateOption('--bandwidth'),
    )
    .option(
      '--postcopy-bandwidth <rate>',
      "QEMU's max-postcopy-bandwidth for the post-copy phase (default: leave QEMU's as it is)",
      rateOption('--postcopy-bandwidth'),
    )
    .option('--json', 'print only the JSON result on stdout (errors too, as {"error":{…}})')
    .option('--quiet', 'no progress output');
}

/** What `migrationOptions` parse into (commander's untyped options object). */
export interface MigrationFlagValues {
  policy: string;
  policyOpt?: string[];
  objective?: string;
  allowPostcopy?: boolean;
  switchAtPass?: number;
  downtimeBudget: number;
  deadline?: number;
  completionTimeoutPerGib?: number;
  onDeadline: 'abort' | 'switchover' | 'postcopy';
  bandwidth?: number;
  postcopyBandwidth?: number;
}

export interface MigrationFlags {
  policy: ResolvedPolicy;
  downtimeBudgetMs: number;
  deadlineS?: number;
  perGiBS?: number;
  onDeadline: 'abort' | 'switchover' | 'postcopy';
  postcopyPermitted: boolean;
  maxBandwidthBps?: number;
  postcopyBandwidthBps?: number;
}

function policyFrom(o: MigrationFlagValues, policyGiven: boolean): ResolvedPolicy {
  if (o.objective !== undefined) {
    if (o.policy !== 'adaptive')
      throw new UsageError(`--objective applies to --policy adaptive, not '${o.policy}'`);
    return resolvePolicy('adaptive', { ...parsePolicyOptions(o.policyOpt ?? []), objective: o.objective });
  }
  if (o.switchAtPass !== undefined) {
    if (policyGiven && o.policy !== 'switch-at-pass')
      throw new UsageError(`--switch-at-pass is the policy switch-at-pass: drop --policy ${o.policy}`);
    if (o.switchAtPass < 2)
      throw new UsageError('--switch-at-pass must be 2 or more (pass 1 is the bulk copy)');
    return resolvePolicy('switch-at-pass', { pass: o.switchAtPass });
  }
  return resolvePolicy(o.policy, parsePolicyOptions(o.policyOpt ?? []));
}

/**
 * Checks the migration flags together, before anything is touched: every invalid combination is
 * one UsageError (exit 2). `policyGiven`: --policy was on the command line (not the default).
 */
export function checkMigrationFlags(o: MigrationFlagValues, policyGiven = true): MigrationFlags {
  const policy = policyFrom(o, policyGiven);
  const postcopyPermitted = Boolean(o.allowPostcopy);
  if (o.downtimeBudget > MAX_DOWNTIME_LIMIT_MS)
    throw new UsageError(
      `--downtime-budget ${o.downtimeBudget}: QEMU's downtime-limit goes up to ${MAX_DOWNTIME_LIMIT_MS} ms`,
    );
  if (o.deadline !== undefined && o.completionTimeoutPerGib !== undefined)
    throw new UsageError('--deadline and --completion-timeout-per-gib both set the deadline: give one');
  if (o.deadline !== undefined && o.deadline > MAX_DEADLINE_S)
    throw new UsageError(`--deadline ${o.deadline}: at most ${MAX_DEADLINE_S} s (a week)`);
  if (o.completionTimeoutPerGib !== undefined && o.completionTimeoutPerGib > 86_400)
    throw new UsageError(
      `--completion-timeout-per-gib ${o.completionTimeoutPerGib}: at most 86400 s per GiB`,
    );
  // Whether post-copy can happen at all: the capability is on only when the policy's setup asks for it.
  const postcopyOn = policy.policy.setup(policy.config, {
    downtimeBudgetMs: o.downtimeBudget,
    postcopyPermitted,
  }).postcopy;
  if (o.onDeadline === 'postcopy') {
    if (!postcopyPermitted)
      throw new UsageError(
        '--on-deadline postcopy needs --allow-postcopy (post-copy loses the guest if the destination or the link fails during it)',
      );
    if (!postcopyOn)
      throw new UsageError(
        `--on-deadline postcopy: policy ${policy.policy.name} does not turn post-copy on, so the deadline could not post-copy; choose a policy that can (kvmigrate policies)`,
      );
  }
  if (o.postcopyBandwidth !== undefined && !postcopyOn)
    throw new UsageError(
      `--postcopy-bandwidth: policy ${policy.policy.name} never post-copies here${postcopyPermitted ? '' : ' (no --allow-postcopy)'}, so it would do nothing`,
    );
  return {
    policy,
    downtimeBudgetMs: o.downtimeBudget,
    deadlineS: o.deadline,
    perGiBS: o.completionTimeoutPerGib,
    onDeadline: o.onDeadline,
    postcopyPermitted,
    // --bandwidth caps the wire; QEMU is given a little less (see qemuRateForWireCap).
    maxBandwidthBps: o.bandwidth === undefined ? undefined : qemuRateForWireCap(o.bandwidth),
    postcopyBandwidthBps:
      o.postcopyBandwidth === undefined ? undefined : qemuRateForWireCap(o.postcopyBandwidth),
  };
}

/**
 * A warning when the policy wants per-region dirty sets and this run has no source for them;
 * `why` says why not (no --tap, and the source QEMU's RAM cannot be sampled).
 */
export function regionWarning(
  policy: ResolvedPolicy,
  downtimeBudgetMs: number,
  postcopyPermitted: boolean,
  why = 'no --tap and no sampling of the source QEMU',
): string | undefined {
  const setup = policy.policy.setup(policy.config, { downtimeBudgetMs, postcopyPermitted });
  if (!setup.wantsRegions) return undefined;
  const name = policy.policy.name;
  return `policy ${name} wants per-region dirty sets and has none (${why}): ${
    name === 'mp' ? 'mp runs as frs (its fallback)' : `${name} decides without them`
  }`;
}

/** The session options every migrating command takes from the shared flags and its deadline. */
export function sessionFromFlags(flags: MigrationFlags, deadlineMs: number) {
  return {
    policy: flags.policy,
    downtimeBudgetMs: flags.downtimeBudgetMs,
    deadlineMs,
    onDeadline: flags.onDeadline,
    postcopyPermitted: flags.postcopyPermitted,
    maxBandwidthBps: flags.maxBandwidthBps,
    postcopyBandwidthBps: flags.postcopyBandwidthBps,
  };
}
