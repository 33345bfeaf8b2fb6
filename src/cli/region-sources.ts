import type { Command } from 'commander';
import type { LibvirtClient } from '../libvirt/index.js';
import { RegionSampler, type RegionSource } from '../migration/region-sampler.js';
import { guestRamRanges, type RamRange } from '../qemu/guest-ram.js';
import {
  checkMemReadable,
  checkQemuPid,
  guestRamFromMaps,
  qemuPidForDomain,
  qemuPidForQmpSocket,
  qemuPidsForDomain,
  QemuPidError,
  rangesMapped,
  readMaps,
} from '../qemu/qemu-pid.js';
import { parseQmpTarget, type QmpClient } from '../qmp/index.js';
import { KvmigrateError, UsageError } from '../util/errors.js';
import { regionWarning, type MigrationFlags } from './migration-flags.js';
import { positiveInt } from './options.js';

/** `--no-regions` and `--qemu-pid`, for `migrate` (both paths) and `attach`. */
export function regionOptions(cmd: Command): Command {
  return cmd
    .option(
      '--qemu-pid <pid>',
      "the source QEMU's PID, for region sampling (default: the process behind the unix QMP socket, or libvirt's)",
      positiveInt('--qemu-pid'),
    )
    .option('--no-regions', "do not sample the source QEMU's RAM for region sets (mp then runs as frs)");
}

export interface RegionFlags {
  /** false with --no-regions. */
  regions?: boolean;
  qemuPid?: number;
}

/**
 * Region sets for a run: a sampler of the source QEMU's RAM, or why there is none. Sampling
 * reads 8 pages of every 2 MiB region through /proc/PID/mem every 250 ms and at every pass end
 * (root, same host as the source QEMU).
 */
export interface RegionPlan {
  sampler?: () => Promise<RegionSource>;
  /** One line for stderr and the run's notes: where the sets come from, or why there are none. */
  note: string;
}

/** Does the run's policy want region sets (mp)? */
export function wantsRegions(flags: MigrationFlags): boolean {
  return (
    flags.policy.policy.setup(flags.policy.config, {
      downtimeBudgetMs: flags.downtimeBudgetMs,
      postcopyPermitted: flags.postcopyPermitted,
    }).wantsRegions === true
  );
}

/** The line the operator reads: where the region sets come from, or why there are none and what that costs. */
export function regionLine(flags: MigrationFlags, plan: RegionPlan): string {
  if (plan.sampler) return plan.note;
  return regionWarning(flags.policy, flags.downtimeBudgetMs, flags.postcopyPermitted, plan.note) ?? plan.note;
}

function sampling(pid: number, ranges: RamRange[]): RegionPlan {
  const bytes = ranges.reduce((s, r) => s + r.length, 0);
  return {
    sampler: async () => new RegionSampler(pid, ranges),
    note: `region sets by sampling QEMU ${pid}'s guest RAM (${Math.round(bytes / 2 ** 20)} MiB, /proc/${pid}/mem)`,
  };
}

/**
 * The region flags, checked before anything is touched (one line each): a --qemu-pid that is no
 * QEMU process, or that contradicts --no-regions / --tap, is bad input whatever the policy.
 */
export function checkRegionFlags(o: RegionFlags & { tap?: unknown }): void {
  if (o.qemuPid === undefined) return;
  if (o.regions === false)
    throw new UsageError('--qemu-pid names a process to sample, --no-regions turns sampling off: give one');
  if (o.tap)
    throw new UsageError(
      "--qemu-pid is for sampling the source QEMU's RAM; with --tap the region sets come from the tap: give one",
    );
  try {
    checkQemuPid(o.qemuPid);
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
}

/** Under libvirt a given --qemu-pid must be the domain's QEMU (else mp would read another VM's memory). */
function checkDomainPid(pid: number, domain: string): void {
  if (!qemuPidsForDomain(domain).includes(pid))
    throw new UsageError(
      `--qemu-pid ${pid} is not the QEMU of domain '${domain}' (its -name is not guest=${domain},…)`,
    );
}

/** Why there are no region sets, when `find` says (not found, not permitted, libvirt cannot tell). */
async function attempt<T>(find: () => T | Promise<T>): Promise<T | { note: string }> {
  try {
    return await find();
  } catch (err) {
    if (err instanceof KvmigrateError) return { note: err.message };
    throw err;
  }
}

const OFF: RegionPlan = { note: 'region sampling off (--no-regions)' };

/**
 * The QMP path, before connecting: the source QEMU is the process listening on the unix QMP
 * socket `src` (or --qemu-pid), and this user may read its memory. Otherwise a plan saying why not.
 */
export async function qmpSourcePid(o: RegionFlags, src: string): Promise<{ pid: number } | RegionPlan> {
  if (o.regions === false) return OFF;
  return attempt(() => {
    const target = parseQmpTarget(src);
    let pid: number;
    if (o.qemuPid !== undefined) pid = o.qemuPid;
    else if (target.kind === 'unix') pid = qemuPidForQmpSocket(target.path);
    else
      throw new QemuPidError(
        "the source's QMP is a TCP address, so its QEMU's PID is unknown (give --qemu-pid when it runs on this host)",
      );
    checkMemReadable(pid);
    return { pid };
  });
}

/**
 * The QMP path, once connected: the guest RAM of QEMU `pid` located through the monitor we hold
 * (HMP gpa2hva, as the lab does), checked to lie in that process's address map.
 */
export async function qmpRegionPlan(pid: number, source: QmpClient, ramBytes: number): Promise<RegionPlan> {
  return attempt(async () => {
    const ranges = await guestRamRanges(source, ramBytes).catch((err: Error) => {
      throw new QemuPidError(`cannot locate guest RAM through the monitor: ${err.message}`);
    });
    if (!rangesMapped(readMaps(pid), ranges))
      throw new QemuPidError(`QEMU ${pid} does not map the guest RAM its monitor names: is it the source?`);
    return sampling(pid, ranges);
  });
}

/**
 * The libvirt path: the domain's QEMU from libvirt's pidfile (libvirt records it), else the one
 * QEMU on this host started for the domain (or --qemu-pid); its guest RAM is the mapping of the
 * domain's memory size in its address map (no monitor command behind libvirt's back).
 */
export async function libvirtRegionPlan(
  o: RegionFlags,
  source: LibvirtClient,
  domain: string,
): Promise<RegionPlan> {
  if (o.regions === false) return OFF;
  if (o.qemuPid !== undefined) checkDomainPid(o.qemuPid, domain);
  return attempt(async () => {
    const pid = o.qemuPid ?? (await source.qemuPid(domain).catch(() => qemuPidForDomain(domain)));
    checkMemReadable(pid);
    const ramBytes = await source.memoryBytes(domain);
    return sampling(pid, guestRamFromMaps(readMaps(pid), ramBytes));
  });
}
