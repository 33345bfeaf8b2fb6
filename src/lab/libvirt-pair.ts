import { randomBytes } from 'node:crypto';
import { rmSync } from 'node:fs';
import { makeLabDir } from './clean.js';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { LibvirtClient } from '../libvirt/index.js';
import { LabError } from '../util/errors.js';
import { buildGuestImage, defaultCacheDir } from './image.js';
import { LabDaemon } from './libvirt-daemon.js';
import { LAB_EMULATOR, labDomainXml, serialSocketInside } from './libvirt-guest.js';
import { GuestRamFile, compareRamFiles } from './libvirt-ram.js';
import { EmulatedLink, LAB_PREFIX, labIdPrefix, type LinkSpec } from './link.js';
import type { RamComparison } from './ram-compare.js';
import { SerialConsole } from './serial.js';
import { formatWorkload, workloadFootprintMib, type WorkloadSpec } from './workload.js';

export interface LibvirtPairOptions {
  link: LinkSpec;
  cacheDir?: string;
  log?: (line: string) => void;
}

/** The destination QEMU's incoming port, inside the destination's own network namespace. */
export const LAB_MIGRATION_PORT = 49152;

/**
 * A lab pair of libvirt daemons on this machine: the source in its own mount + UTS namespace,
 * the destination in its own mount + UTS + network namespace, joined by the lab's emulated link
 * (EmulatedLink: veth + tc, shaping what the source sends). The source stays in the host's
 * network namespace because that is where EmulatedLink shapes, counts and cuts the link; libvirt
 * tells the two daemons apart by host UUID and hostname, which each has its own.
 * Everything carries the kvmm-<id> tag; `destroy` (and `kvmigrate lab clean`) removes it all.
 */
export class LibvirtPair {
  private readonly undo: (() => Promise<void>)[] = [];
  private guests = 0;

  private constructor(
    readonly id: string,
    readonly dir: string,
    private readonly cacheDir: string,
    private readonly log: (line: string) => void,
  ) {}

  source!: LabDaemon;
  destination!: LabDaemon;
  link!: EmulatedLink;

  static async start(opts: LibvirtPairOptions): Promise<LibvirtPair> {
    const id = labIdPrefix() + randomBytes(3).toString('hex');
    const dir = makeLabDir(id);
    const cacheDir = opts.cacheDir ?? defaultCacheDir();
    const pair = new LibvirtPair(id, dir, cacheDir, opts.log ?? (() => undefined));
    pair.undo.push(async () => rmSync(dir, { recursive: true, force: true }));
    try {
      const t0 = performance.now();
      pair.link = await EmulatedLink.create(id, opts.link);
      pair.undo.push(() => pair.link.destroy());
      const name = (role: string) => `${LAB_PREFIX}-${id}-${role}`;
      const [source, destination] = await Promise.all([
        LabDaemon.start({ name: name('src'), root: path.join(dir, 'src') }),
        LabDaemon.start({ name: name('dst'), root: path.join(dir, 'dst'), netns: pair.link.netns }),
      ]);
      pair.source = source;
      pair.destination = destination;
      pair.undo.push(
        () => source.stop(),
        () => destination.stop(),
      );
      // Both probe QEMU now, not the destination during the first migration's Prepare phase.
      const probed = await Promise.all([source, destination].map((d) => d.probeQemu(LAB_EMULATOR)));
      pair.log(
        `libvirt pair ${id}: daemons ${source.pid}/${destination.pid} up in ${Math.round(performance.now() - t0)} ms` +
          (probed.every((ms) => ms !== undefined) ? '' : ' (QEMU not probed ahead: on first use)'),
      );
      return pair;
    } catch (err) {
      await pair.destroy();
      throw err;
    }
  }

  /** Where the source's QEMU sends RAM, and where the destination's listens. */
  get migrateUri(): string {
    return `tcp://${this.link.nsAddr}:${LAB_MIGRATION_PORT}`;
  }
  get listenAddress(): string {
    return this.link.nsAddr;
  }

  /** Starts the lab guest on the source daemon and waits until its workload beats. */
  async startGuest(opts: {
    workload: WorkloadSpec;
    ramMiB: number;
    vcpus?: number;
  }): Promise<LibvirtLabGuest> {
    if (workloadFootprintMib(opts.workload) > opts.ramMiB - 96) {
      throw new LabError(`workload ${formatWorkload(opts.workload)} needs more RAM than ${opts.ramMiB} MiB`);
    }
    const { image } = await buildGuestImage(this.cacheDir);
    const name = `${LAB_PREFIX}-${this.id}-g${++this.guests}`;
    const xml = labDomainXml({
      name,
      ramMiB: opts.ramMiB,
      vcpus: opts.vcpus ?? 1,
      image,
      workload: opts.workload,
    });
    const admin = await LibvirtClient.open(this.source.uri);
    try {
      const t0 = performance.now();
      await admin.createDomain(xml);
      const pid = await admin.qemuPid(name);
      const guest = await LibvirtLabGuest.attach(this, name, opts.ramMiB * 2 ** 20, pid);
      this.undo.push(() => guest.close());
      await guest.waitForBeats(3, 90_000);
      this.log(
        `guest ${name}: ${formatWorkload(opts.workload)} on ${opts.ramMiB} MiB, beating after ${Math.round(performance.now() - t0)} ms`,
      );
      return guest;
    } finally {
      await admin.close();
    }
  }

  /** Stops QEMUs and daemons by PID, removes the link, netns and temp dir. Safe to call twice. */
  async destroy(): Promise<void> {
    const steps = this.undo.splice(0).reverse();
    for (const step of steps) await step().catch(() => undefined);
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.destroy();
  }
}

export interface DestinationCheck {
  ram: RamComparison;
  heartbeatResumed: boolean;
  guestCheck: { ok: boolean; line: string };
}

/** The lab guest: its source RAM held open (memfd) and its console, on either side. */
export class LibvirtLabGuest {
  destinationConsole: SerialConsole | undefined;
  private destinationRam: GuestRamFile | undefined;

  private constructor(
    readonly pair: LibvirtPair,
    readonly name: string,
    readonly ramBytes: number,
    readonly sourcePid: number,
    readonly sourceRam: GuestRamFile,
    readonly sourceConsole: SerialConsole,
  ) {}

  static async attach(
    pair: LibvirtPair,
    name: string,
    ramBytes: number,
    pid: number,
  ): Promise<LibvirtLabGuest> {
    const ram = await GuestRamFile.open(pid, ramBytes);
    try {
      const console = await SerialConsole.connect(pair.source.hostPath(serialSocketInside(name)));
      return new LibvirtLabGuest(pair, name, ramBytes, pid, ram, console);
    } catch (err) {
      await ram.close();
      throw err;
    }
  }

  async waitForBeats(
    n: number,
    timeoutMs: number,
    console = this.sourceConsole,
    since = 0,
  ): Promise<boolean> {
    const deadline = performance.now() + timeoutMs;
    while (console.beatsAfter(since).length < n) {
      const err = console.lines.find((l) => l.text.startsWith('ERROR'));
      if (err) throw new LabError(`the guest workload failed: ${err.text.slice(6)}`);
      if (performance.now() > deadline) return false;
      await sleep(20);
    }
    return true;
  }

  /**
   * After a completed migration that left the destination paused: compares the destination's
   * RAM with the source's at switchover, then `resume`s it (through the driver under test) and
   * checks that the guest beats and passes its own integrity check there.
   */
  async verifyOnDestination(
    destinationPid: number,
    resume: () => Promise<void>,
    /** Runs once the destination beats again, before the integrity check (which pauses the workload). */
    beforeCheck?: (resumedAt: number) => Promise<void>,
  ): Promise<DestinationCheck> {
    this.destinationRam = await GuestRamFile.open(destinationPid, this.ramBytes);
    const ram = await compareRamFiles(this.sourceRam, this.destinationRam);
    const console = await this.connectDestinationConsole();
    const resumedAt = performance.now();
    await resume();
    const heartbeatResumed = await this.waitForBeats(1, 10_000, console, resumedAt);
    await beforeCheck?.(resumedAt);
    const guestCheck = heartbeatResumed
      ? await console.integrityCheck()
      : { ok: false, line: 'no heartbeat from the destination after resume' };
    return { ram, heartbeatResumed, guestCheck };
  }

  /** The guest's console on the destination daemon (its QEMU must be running there). */
  async connectDestinationConsole(): Promise<SerialConsole> {
    this.destinationConsole ??= await SerialConsole.connect(
      this.pair.destination.hostPath(serialSocketInside(this.name)),
    );
    return this.destinationConsole;
  }

  /** Destroys the domain wherever it is (source, destination or both), then closes what the lab holds. */
  async remove(source: LibvirtClient, destination: LibvirtClient): Promise<void> {
    await destination.destroyDomain(this.name).catch(() => undefined);
    await source.destroyDomain(this.name).catch(() => undefined);
    await this.close();
  }

  async close(): Promise<void> {
    this.sourceConsole.close();
    this.destinationConsole?.close();
    await this.sourceRam.close();
    await this.destinationRam?.close();
  }
}
