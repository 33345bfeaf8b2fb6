import { run, runQuietly } from '../util/exec.js';
import { LabError } from '../util/errors.js';
import type { LinkSpec } from '../util/specs.js';

// The link spec is shared with the simulator and the bench: it lives in util/specs.
export { formatLink, parseLink, type LinkSpec } from '../util/specs.js';

/** Name prefix of every netns, veth and temp dir the lab makes; `lab clean` removes what carries it. */
export const LAB_PREFIX = 'kvmm';

/**
 * Lab ids start with $KVMIGRATE_LAB_TAG when set (a test run sets one), so a run can tell its own
 * leftovers from another run's on the same host. At most 2 characters: veth names are short.
 */
export function labIdPrefix(): string {
  return (process.env.KVMIGRATE_LAB_TAG ?? '').replace(/[^a-z0-9]/g, '').slice(0, 2);
}

/**
 * An emulated link: a network namespace for the destination, a veth pair into it, and a qdisc on
 * the source side shaping what the source sends (tbf for the rate, netem for delay and loss).
 * The kernel does the shaping because QEMU lifts its own max-bandwidth during stop-and-copy.
 */
export class EmulatedLink {
  private constructor(
    readonly id: string,
    readonly spec: LinkSpec,
    readonly netns: string,
    readonly hostIf: string,
    readonly hostAddr: string,
    readonly nsAddr: string,
  ) {}

  static async create(id: string, spec: LinkSpec): Promise<EmulatedLink> {
    const netns = `${LAB_PREFIX}-${id}`;
    const hostIf = `${LAB_PREFIX}${id}s`.slice(0, 15);
    const nsIf = `${LAB_PREFIX}${id}d`.slice(0, 15);
    const [hostAddr, nsAddr] = await freeSubnet(id);
    const link = new EmulatedLink(id, spec, netns, hostIf, hostAddr, nsAddr);
    try {
      await ip('netns', 'add', netns);
      await ip('link', 'add', hostIf, 'type', 'veth', 'peer', 'name', nsIf);
      await ip('link', 'set', nsIf, 'netns', netns);
      await ip('addr', 'add', `${hostAddr}/30`, 'dev', hostIf);
      await ip('link', 'set', hostIf, 'up');
      await ip('-n', netns, 'addr', 'add', `${nsAddr}/30`, 'dev', nsIf);
      await ip('-n', netns, 'link', 'set', nsIf, 'up');
      await ip('-n', netns, 'link', 'set', 'lo', 'up');
      await link.shape(spec);
    } catch (err) {
      await link.destroy();
      if (err instanceof LabError) throw err;
      throw new LabError(
        `cannot set up the emulated link (needs root and iproute2): ${(err as Error).message}`,
      );
    }
    return link;
  }

  private current: LinkSpec = {};

  /**
   * Changes (mid-migration too) the rate, delay and loss on the source → destination side. If the
   * new shaping cannot be applied, the previous one is put back and the error says why.
   */
  async shape(spec: LinkSpec): Promise<void> {
    try {
      await this.applyShape(spec);
      this.current = spec;
    } catch (err) {
      await this.applyShape(this.current).catch(() => undefined);
      const detail = (err as Error).message;
      const why = /qdisc kind is unknown/.test(detail)
        ? 'this kernel has no netem (sch_netem), so link delay and loss are unavailable'
        : detail;
      throw new LabError(`cannot shape the emulated link: ${why}`);
    }
  }

  /** Cuts the link (the source side goes down: nothing passes) until `restore`. */
  async cut(): Promise<void> {
    await ip('link', 'set', this.hostIf, 'down');
  }

  async restore(): Promise<void> {
    await ip('link', 'set', this.hostIf, 'up');
  }

  private async applyShape(spec: LinkSpec): Promise<void> {
    await runQuietly('tc', ['qdisc', 'del', 'dev', this.hostIf, 'root']);
    const tbf = (parent: string[]) =>
      spec.rateMbit === undefined
        ? undefined
        : ['qdisc', 'add', 'dev', this.hostIf, ...parent, 'tbf', 'rate', `${spec.rateMbit}mbit`,
           // A burst of ≥ rate/HZ keeps tbf accurate at Gbit rates.
           'burst', `${Math.max(32, Math.ceil((spec.rateMbit * 1e6) / 8 / 250 / 1024))}kb`, 'latency', '20ms']; // prettier-ignore
    if (spec.delayMs !== undefined || spec.lossPct !== undefined) {
      const netem = ['qdisc', 'add', 'dev', this.hostIf, 'root', 'handle', '1:', 'netem'];
      if (spec.delayMs !== undefined) netem.push('delay', `${spec.delayMs}ms`);
      if (spec.lossPct !== undefined) netem.push('loss', `${spec.lossPct}%`);
      await run('tc', netem);
      const child = tbf(['parent', '1:', 'handle', '2:']);
      if (child) await run('tc', child);
    } else {
      const root = tbf(['root', 'handle', '1:']);
      if (root) await run('tc', root);
    }
  }

  /** Bytes the source side has sent into the link (veth TX counter). */
  async txBytes(): Promise<number> {
    const { stdout } = await run('cat', [`/sys/class/net/${this.hostIf}/statistics/tx_bytes`]);
    return Number(stdout.trim());
  }

  async destroy(): Promise<void> {
    // Deleting one end of a veth removes the pair and its qdiscs.
    await runQuietly('ip', ['link', 'del', this.hostIf]);
    await runQuietly('ip', ['netns', 'del', this.netns]);
  }
}

async function ip(...args: string[]): Promise<void> {
  await run('ip', args);
}

/** A /30 in 10.200.0.0/16 that no interface on this host uses yet, derived from the lab id. */
async function freeSubnet(id: string): Promise<[string, string]> {
  const { stdout } = await run('ip', ['-o', '-4', 'addr', 'show']);
  let h = 0;
  for (const c of id) h = (h * 31 + c.charCodeAt(0)) >>> 0;
  for (let i = 0; i < 16384; i++) {
    const block = (h + i) % 16384;
    const base = block * 4;
    const host = `10.200.${base >> 8}.${(base & 255) + 1}`;
    if (!stdout.includes(` ${host}/`)) return [host, `10.200.${base >> 8}.${(base & 255) + 2}`];
  }
  throw new LabError('no free /30 left in 10.200.0.0/16 for the emulated link; run kvmigrate lab clean');
}
