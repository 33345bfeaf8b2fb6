import { setTimeout as sleep } from 'node:timers/promises';
import {
  Controller,
  type Command,
  type DeadlineAction,
  type Decision,
  type OperatorRequest,
} from '../core/controller.js';
import type { DestinationVerdict, Ending } from '../core/ending.js';
import { RegionReads, type RegionSource } from '../core/regions.js';
import { carryOutRequest, type RequestReply } from '../core/operator.js';
import {
  buildResult,
  controlStatus,
  progressOf,
  type ControlStatus,
  type MigrationResult,
  type Progress,
  type RunEvent,
} from '../core/result.js';
import { TERMINAL_STATUSES, type MigrationInfo } from '../core/sample.js';
import type { ResolvedPolicy } from '../policy/registry.js';
import type { LibvirtClient, MigrationHandle, MigrationOutcome } from './client.js';
import { UNLIMITED_SPEED_MIBPS } from './checks.js';
import { LibvirtError, LibvirtUnreachableError, UnknownDomainError } from './errors.js';
import type { LibvirtEvent } from './events.js';

export interface LibvirtSessionOptions {
  /** The source daemon's connection; the domain's migration job runs there. */
  source: LibvirtClient;
  /** The destination daemon's connection: asked at the end where the guest is (recommended). */
  destination?: LibvirtClient;
  domain: string;
  /** Start the migration (`migrate --libvirt`); without it, take over a running job (`attach`). */
  start?: {
    destUri: string;
    migrateUri?: string;
    listenAddress?: string;
    paused?: boolean;
    persistent?: boolean;
  };
  policy: ResolvedPolicy;
  downtimeBudgetMs: number;
  deadlineMs: number;
  onDeadline?: DeadlineAction;
  postcopyPermitted?: boolean;
  pollMs?: number;
  stallTimeoutMs?: number;
  /** Region sets, e.g. sampling the source QEMU's RAM when it runs on this host (libvirt records its PID). */
  regionSampler?: () => Promise<RegionSource>;
  /**
   * Why there is no `regionSampler` (e.g. the source QEMU runs on another host): noted in the
   * decision log when the policy wants region sets.
   */
  regionsUnavailable?: string;
  /** How often the region source is read while a pass runs, besides every pass end (default 250 ms, as the QMP driver). */
  regionSampleMs?: number;
  /**
   * The job's speed limit (virDomainMigrateSetMaxSpeed; libvirt takes whole MiB/s, so it is
   * rounded down), bytes/s. Unset: left as it is. The domain's own limit is put back at the end.
   */
  maxBandwidthBps?: number;
  /** The post-copy phase's speed limit, bytes/s (VIR_DOMAIN_MIGRATE_MAX_SPEED_POSTCOPY); put back at the end. */
  postcopyBandwidthBps?: number;
  /**
   * How often the job's downtime limit and speed limit are read back to notice another party
   * (an orchestrator, virsh) changing them (default 1000 ms).
   */
  foreignCheckMs?: number;
  /** `resume` the destination domain after completion when it was left paused (default true). */
  resumeDestination?: boolean;
  signal?: AbortSignal;
  onProgress?: (p: Progress) => void;
  onDecision?: (d: Decision) => void;
  onEvent?: (e: RunEvent) => void;
  /** Called once the job was started or adopted: a good moment to say where to reach us. */
  onStarted?: () => void;
}

/** bytes/s → libvirt's whole MiB/s, rounded down (never above the cap), at least 1. */
export function speedMiBps(bytesPerSecond: number): number {
  return Math.min(UNLIMITED_SPEED_MIBPS, Math.max(1, Math.floor(bytesPerSecond / 2 ** 20)));
}

/** How often the job's downtime and speed limits are read back to notice an orchestrator changing them. */
const LIMIT_CHECK_MS = 1000;

type SpeedKind = 'precopy' | 'postcopy';

/** A libvirt speed limit as people read it: MiB/s (libvirt's unit) and Mbit/s, or unlimited. */
export function describeSpeed(mib: number): string {
  if (mib >= UNLIMITED_SPEED_MIBPS) return 'unlimited';
  return `${mib} MiB/s (${Math.round((mib * 2 ** 20 * 8) / 1e6)} Mbit/s)`;
}

/**
 * The libvirt driver: a domain whose QEMU monitor libvirt owns (Nova, KubeVirt, virsh). It feeds
 * the same controller core as the QMP driver — job statistics as `query-migrate` samples,
 * libvirt's events as status changes — and carries out its commands through libvirt's own calls
 * (never raw QMP behind libvirt's back): set max downtime, start post-copy, suspend, abort job.
 * Post-copy recovery is not driven through libvirt here (it needs a new migrate call with
 * VIR_MIGRATE_POSTCOPY_RESUME): a paused post-copy ends with the guest on neither side, said so.
 */
export class LibvirtSession {
  private core!: Controller;
  private handle: MigrationHandle | undefined;
  private ended: MigrationOutcome | undefined;
  private startedAt = 0;
  private startedWallMs = 0;
  private cpu0: NodeJS.CpuUsage | undefined;
  private sourceWasRunning = true;
  private originalLimitMs: number | undefined;
  /** The downtime limit kvmigrate itself set last (ms): put the original back only while it is in force. */
  private ourLimitMs: number | undefined;
  /** The domain's speed limits before we set ours (MiB/s), to put back. */
  private originalSpeed: Partial<Record<SpeedKind, number>> = {};
  /** The speed limits kvmigrate set (MiB/s). */
  private ourSpeed: Partial<Record<SpeedKind, number>> = {};
  /**
   * The speed limits in force as far as we know (MiB/s): ours, the domain's own, or another
   * party's once noticed. The post-copy one is watched only when kvmigrate set it.
   */
  private knownSpeed: Partial<Record<SpeedKind, number>> = {};
  private lastLimitCheck = 0;
  private regionSource: RegionSource | undefined;
  private regionReads: RegionReads | undefined;
  private wake: (() => void) | undefined;
  private error: string | undefined;
  /** The job's final statistics from libvirt's job-completed event. */
  private completedEvent: MigrationInfo | undefined;
  /** performance.now() when libvirt's job-completed event arrived (the result's clock.sourceCompletedAt). */
  private sourceCompletedAt: number | undefined;
  private sawJob = false;
  private cancelSent = false;
  private readonly pollMs: number;

  constructor(private readonly opts: LibvirtSessionOptions) {
    this.pollMs = opts.pollMs ?? 50;
  }

  async run(): Promise<MigrationResult> {
    const { source, domain } = this.opts;
    const state = await source.domainState(domain);
    this.sourceWasRunning = state.state === 'running';
    if (!this.opts.start) await source.assertMigrating(domain);
    this.core = new Controller({
      policy: this.opts.policy,
      downtimeBudgetMs: this.opts.downtimeBudgetMs,
      deadlineMs: this.opts.deadlineMs,
      onDeadline: this.opts.onDeadline,
      postcopyPermitted: this.opts.postcopyPermitted ?? false,
      stallTimeoutMs: this.opts.stallTimeoutMs,
      ramBytes: 0,
      onDecision: this.opts.onDecision,
      onEvent: this.opts.onEvent,
      recovery: { timeoutMs: 0 },
    });
    this.originalLimitMs = await source.maxDowntime(domain).catch(() => undefined);
    const onEvent = (e: LibvirtEvent) => this.onLibvirtEvent(e);
    source.on('event', onEvent);
    try {
      await this.begin();
      await this.loop();
      return await this.end();
    } finally {
      source.off('event', onEvent);
      this.regionSource?.close();
      await this.restoreLimit();
      await this.restoreSpeeds();
    }
  }

  /**
   * An operator's request while the migration runs (control socket): through the core's action
   * rules, carried out at once through libvirt. Resolves with what was done or why it was refused.
   */
  async request(req: OperatorRequest): Promise<RequestReply> {
    const reply = await carryOutRequest(
      this.core,
      this.startedAt !== 0,
      req,
      () => this.elapsed(),
      (commands) => this.execute(commands),
    );
    if (reply.accepted) this.wake?.();
    return reply;
  }

  /** The controller's view right now (control socket `status`). */
  get status(): ControlStatus | undefined {
    return controlStatus(this.core);
  }

  /**
   * Sets the job's speed limits asked for, after reading the domain's own to put back; without
   * --bandwidth, reads the one in force, to notice another party changing it.
   */
  private async setSpeeds(): Promise<void> {
    const { source, domain, maxBandwidthBps, postcopyBandwidthBps } = this.opts;
    const set = async (bps: number | undefined, which: SpeedKind) => {
      if (bps === undefined) return;
      const postcopy = which === 'postcopy';
      this.originalSpeed[which] = await source.maxSpeed(domain, { postcopy });
      const mib = speedMiBps(bps);
      await source.setMaxSpeed(domain, mib, { postcopy });
      this.ourSpeed[which] = mib;
      this.knownSpeed[which] = mib;
    };
    await set(maxBandwidthBps, 'precopy');
    await set(postcopyBandwidthBps, 'postcopy');
    this.knownSpeed.precopy ??= await source.maxSpeed(domain).catch(() => undefined);
  }

  /**
   * Puts the domain's own speed limits back (every way out), but only those kvmigrate set and
   * that are still in force: a limit another party set since is theirs, and stays. A domain that
   * left the source with its migration takes nothing of ours along: libvirt starts it on the
   * destination with that daemon's default.
   */
  private async restoreSpeeds(): Promise<void> {
    const { source, domain } = this.opts;
    for (const which of ['precopy', 'postcopy'] as const) {
      const mib = this.originalSpeed[which];
      const ours = this.ourSpeed[which];
      // 0 is a real post-copy limit (QEMU's default: none of its own) and must be put back too.
      if (mib === undefined || (mib < 1 && which === 'precopy') || ours === undefined) continue;
      const postcopy = which === 'postcopy';
      const now = await source.maxSpeed(domain, { postcopy }).catch(() => this.knownSpeed[which]);
      if (now !== ours) continue;
      await source
        .setMaxSpeed(domain, Math.min(mib, UNLIMITED_SPEED_MIBPS), { postcopy })
        .catch(() => undefined);
    }
  }

  /**
   * libvirt keeps a max downtime set for later migrations of the domain: put the old one back,
   * unless the limit in force is another party's (set after kvmigrate's last).
   */
  private async restoreLimit(): Promise<void> {
    const { source, domain } = this.opts;
    if (this.originalLimitMs === undefined || this.originalLimitMs < 1) return;
    const now = await source.maxDowntime(domain).catch(() => undefined);
    if (now !== undefined && this.ourLimitMs !== undefined && now !== this.ourLimitMs) return;
    await source.setMaxDowntime(domain, this.originalLimitMs).catch(() => undefined);
  }

  /** Sets the policy's starting limit and starts (or adopts) the job. */
  private async begin(): Promise<void> {
    const { source, domain, start } = this.opts;
    const setup = this.core.setup;
    const unsupported = [setup.autoConverge && 'auto-converge', setup.xbzrle && 'xbzrle'].filter(Boolean);
    if (unsupported.length)
      this.core.note(
        `the libvirt driver does not set ${unsupported.join(' or ')}: the policy runs without`,
        0,
      );
    const limitMs = Math.max(1, Math.round(setup.downtimeLimitMs));
    await source.setMaxDowntime(domain, limitMs);
    this.ourLimitMs = limitMs;
    await this.setSpeeds();
    this.startedAt = performance.now();
    this.startedWallMs = Date.now();
    this.cpu0 = process.cpuUsage();
    if (start) {
      this.handle = await source.startMigration(domain, start.destUri, {
        migrateUri: start.migrateUri,
        listenAddress: start.listenAddress,
        postcopy: setup.postcopy,
        paused: start.paused,
        persistent: start.persistent,
      });
      void this.handle.done.then((o) => {
        this.ended = o;
        this.wake?.();
      });
    }
    if (setup.wantsRegions) await this.openRegionSource();
    this.opts.onStarted?.();
  }

  /** The policy wants region sets: open the sampler, or say in the decision log why there are none. */
  private async openRegionSource(): Promise<void> {
    let why = this.opts.regionsUnavailable ?? 'no region source given';
    if (this.opts.regionSampler) {
      try {
        this.regionSource = await this.opts.regionSampler();
      } catch (err) {
        why = (err as Error).message;
      }
    }
    const rs = this.regionSource;
    if (rs) {
      this.core.attachRegions(rs);
      this.regionReads = new RegionReads(rs, this.opts.regionSampleMs);
    } else this.core.note(`no region sets (${why}): the policy decides without them`, this.elapsed());
  }

  /** Reads the region source at every pass end and every `regionSampleMs` in between (as the QMP driver). */
  private readRegions(info: MigrationInfo): void {
    if (info.ram)
      this.regionReads?.read(this.core, info.ram['dirty-sync-count'], performance.now(), this.elapsed());
  }

  private elapsed(): number {
    return performance.now() - this.startedAt;
  }

  private onLibvirtEvent(e: LibvirtEvent): void {
    if (e.domain !== this.opts.domain || !this.core) return;
    const at = e.at - this.startedAt;
    if (e.kind === 'lifecycle' && e.detail === 'postcopy') this.core.statusChanged('postcopy-active', at);
    if (e.kind === 'lifecycle' && e.detail === 'postcopy-failed')
      this.core.statusChanged('postcopy-paused', at);
    if (e.kind === 'job-completed') {
      this.completedEvent = e.info;
      if (this.startedAt > 0 && e.at >= this.startedAt) this.sourceCompletedAt ??= e.at;
      this.core.statusChanged('completed', at);
    }
    this.wake?.();
  }

  private async loop(): Promise<void> {
    for (;;) {
      const woke = new Promise<void>((r) => (this.wake = r));
      try {
        if (this.opts.signal?.aborted) this.core.interrupt();
        let info = await this.sample();
        // libvirt forgets a job once it ends: the last job's statistics say how it ended.
        if (info.status === 'none' && (this.sawJob || this.ended)) info = await this.finalSample();
        if (info.status !== 'none' && info.status !== 'setup') this.sawJob = true;
        this.readRegions(info);
        const step = this.core.observe(info, this.elapsed());
        await this.execute(step.commands);
        await this.noticeForeignLimits(info.status);
        this.progress(info);
        if (step.done) return;
      } catch (err) {
        if (!(err instanceof LibvirtUnreachableError) && !(err instanceof UnknownDomainError)) throw err;
        this.error = err.message;
        await this.execute(this.core.contactLost(err.message, this.elapsed())).catch(() => undefined);
        return;
      }
      await Promise.race([sleep(this.pollMs), woke]);
    }
  }

  private async sample(): Promise<MigrationInfo> {
    try {
      return this.ourCancel(await this.opts.source.jobStats(this.opts.domain));
    } catch (err) {
      // When its migration completes, the domain stops on the source ("domain is not running"),
      // and a transient one disappears: the job's end says how it went.
      const left = err instanceof LibvirtError && !(err instanceof LibvirtUnreachableError);
      if (left && (this.handle || this.sawJob)) return this.finalSample();
      throw err;
    }
  }

  private async finalSample(): Promise<MigrationInfo> {
    const done = this.ended ?? (this.handle ? await this.handle.done : undefined);
    // attach: no call of ours to return; libvirt's job-completed event carries the final stats.
    for (let i = 0; i < 40 && !done && !this.completedEvent; i++) await sleep(50);
    const last = await this.opts.source
      .jobStats(this.opts.domain, { completed: true })
      .catch(() => undefined);
    const final = done?.final ?? this.completedEvent ?? last ?? {};
    let status = done && done.outcome !== 'unknown' ? done.outcome : final.status;
    if (!status || !TERMINAL_STATUSES.has(status)) status = this.completedEvent ? 'completed' : 'failed';
    return this.ourCancel({ ...final, status, ...(done?.error ? { 'error-desc': done.error } : {}) });
  }

  /** libvirt may report a job we aborted as "failed" ("operation aborted"): it was cancelled. */
  private ourCancel(info: MigrationInfo): MigrationInfo {
    return info.status === 'failed' && this.cancelSent ? { ...info, status: 'cancelled' } : info;
  }

  /** Carries out the core's commands through libvirt's own calls. */
  private async execute(commands: Command[]): Promise<void> {
    const { source, domain } = this.opts;
    for (const cmd of commands) {
      try {
        switch (cmd.kind) {
          case 'setDowntimeLimit':
            await source.setMaxDowntime(domain, cmd.downtimeLimitMs);
            this.ourLimitMs = cmd.downtimeLimitMs;
            break;
          case 'startPostcopy':
            await source.startPostCopy(domain);
            break;
          case 'stopSource':
            await source.suspend(domain);
            break;
          case 'cancel':
            await source.abortJob(domain);
            this.cancelSent = true;
            break;
          case 'pausePostcopy':
          case 'recoverPostcopy':
            // Recovery is off for this driver (see the class comment); nothing to send.
            break;
          case 'setThrottle':
            // libvirt sets auto-converge's steps only when a migration starts; not steerable here.
            this.core.note(
              'the libvirt driver cannot change the vCPU throttle during a migration: ignored',
              this.elapsed(),
            );
            break;
          default: {
            const never: never = cmd;
            throw new Error(`unhandled command ${JSON.stringify(never)}`);
          }
        }
        this.core.commandDone(cmd);
      } catch (err) {
        const refused = err instanceof LibvirtError && !(err instanceof LibvirtUnreachableError);
        this.core.commandFailed(cmd, refused);
        if (!refused) throw err;
        this.core.note(`libvirt refused ${cmd.kind}: ${(err as Error).message}`, this.elapsed());
      }
    }
  }

  /**
   * Reads the job's downtime and speed limits back now and then: Nova's downtime steps change
   * the one under us, an operator's `virsh migrate-setspeed` the other. Another party's value is
   * said in the log and kept (the policy sees the new downtime limit), never set back.
   */
  private async noticeForeignLimits(status: string | undefined): Promise<void> {
    // Only while the job runs: at its end libvirt puts back QEMU's pre-job parameters itself.
    if (status !== 'active' && status !== 'postcopy-active') return;
    const now = performance.now();
    if (now - this.lastLimitCheck < (this.opts.foreignCheckMs ?? LIMIT_CHECK_MS)) return;
    this.lastLimitCheck = now;
    const { source, domain } = this.opts;
    const ms = await source.maxDowntime(domain).catch(() => undefined);
    if (ms !== undefined && ms >= 1) this.core.adoptDowntimeLimit(ms, this.elapsed());
    for (const which of ['precopy', 'postcopy'] as const) {
      const known = this.knownSpeed[which];
      if (known === undefined) continue;
      const mib = await source.maxSpeed(domain, { postcopy: which === 'postcopy' }).catch(() => undefined);
      if (mib === undefined || mib === known) continue;
      this.knownSpeed[which] = mib;
      const phase = which === 'postcopy' ? "post-copy phase's " : '';
      this.core.note(
        `another party set the ${phase}bandwidth to ${describeSpeed(mib)}: was ${describeSpeed(known)}; ` +
          'kvmigrate keeps it (does not set it back; an orchestrator? see the README on running beside Nova/KubeVirt)',
        this.elapsed(),
      );
    }
  }

  private progress(info: MigrationInfo): void {
    const progress = progressOf(this.core, info);
    if (!progress) return;
    this.opts.onProgress?.(progress);
    this.opts.onEvent?.({ type: 'progress', progress });
  }

  /** Where is the guest? The destination daemon's word on its domain, when we can ask it. */
  private async destinationVerdict(): Promise<{ verdict: DestinationVerdict; detail: string }> {
    if (this.ended?.outcome === 'completed')
      return { verdict: 'completed', detail: 'libvirt finished the migration on the destination' };
    const dst = this.opts.destination;
    if (!dst) return { verdict: 'unknown', detail: 'no connection to the destination daemon (--to-libvirt)' };
    try {
      const s = await dst.domainState(this.opts.domain);
      if (s.reason === 'postcopy-failed' || s.reason === 'postcopy')
        return { verdict: 'unknown', detail: `the destination domain is ${s.state}/${s.reason}` };
      if (s.state === 'running' || s.state === 'paused')
        return { verdict: 'completed', detail: `the destination domain is ${s.state}/${s.reason}` };
      return { verdict: 'failed', detail: `the destination domain is ${s.state}` };
    } catch (err) {
      if (err instanceof UnknownDomainError)
        return { verdict: 'gone', detail: 'no such domain on the destination' };
      return { verdict: 'unknown', detail: (err as Error).message };
    }
  }

  private async end(): Promise<MigrationResult> {
    const { source, domain } = this.opts;
    this.core.finish(undefined, this.elapsed());
    const destination = this.core.guestMayHaveMoved ? await this.destinationVerdict() : undefined;
    const state = await source.domainState(domain).catch(() => undefined);
    // libvirt reports a domain that left as shut off/migrated: not a run state to resume.
    const sourceRunState = state ? (state.state === 'shutoff' ? 'postmigrate' : state.state) : undefined;
    const ending = this.core.conclude({
      sourceRunState,
      sourceWasRunning: this.sourceWasRunning,
      destination,
    });
    await this.carryOut(ending);
    return this.result(ending);
  }

  private async carryOut(ending: Ending): Promise<void> {
    const { source, destination, domain } = this.opts;
    if (ending.resume === 'source') await source.resume(domain).catch(() => undefined);
    if (ending.resume === 'destination' && destination && (this.opts.resumeDestination ?? true)) {
      const s = await destination.domainState(domain).catch(() => undefined);
      if (s?.state === 'paused') await destination.resume(domain).catch(() => undefined);
    }
  }

  /** Controller CPU time ÷ wall time, % of one core. */
  private cpuPct(wallMs: number): number {
    const cpu = process.cpuUsage(this.cpu0);
    return wallMs > 0 ? ((cpu.user + cpu.system) / 1000 / wallMs) * 100 : 0;
  }

  private result(ending: Ending): MigrationResult {
    const endedAt = performance.now();
    const result = buildResult(this.core, ending, {
      policy: this.opts.policy,
      downtimeBudgetMs: this.opts.downtimeBudgetMs,
      deadlineMs: this.opts.deadlineMs,
      ramBytes: this.core.lastSample.ram?.total ?? 0,
      endpoints: {
        source: `${this.opts.source.uri} domain ${this.opts.domain}`,
        destination: this.opts.start?.destUri ?? this.opts.destination?.uri ?? 'unknown',
        migrateUri: this.opts.start?.migrateUri ?? 'libvirt',
      },
      startedAt: this.startedAt,
      startedWallMs: this.startedWallMs,
      endedAt,
      controllerCpuPct: this.cpuPct(endedAt - this.startedAt),
      clock: { sourceCompletedAt: this.sourceCompletedAt },
      error: this.error ?? this.ended?.error,
    });
    this.opts.onEvent?.({ type: 'outcome', result });
    return result;
  }
}
