import { randomBytes } from 'node:crypto';
import { rmSync } from 'node:fs';
import { makeLabDir } from './clean.js';
import { EmulatedLink, labIdPrefix, type LinkSpec } from './link.js';

/**
 * One emulated link several lab pairs migrate over at once: one netns holding every destination,
 * one veth pair into it, one qdisc shaping everything the sources send (Lab.start with
 * `sharedLink`; each pair listens on its own port). It has a lab id and a lab dir of its own, so
 * `lab clean` sees it as in use while its owner runs and `leaksOf(id)` finds what it left.
 */
export class SharedLabLink {
  private constructor(
    readonly id: string,
    readonly link: EmulatedLink,
    private readonly dir: string,
  ) {}

  static async create(spec: LinkSpec): Promise<SharedLabLink> {
    const id = labIdPrefix() + randomBytes(3).toString('hex');
    const dir = makeLabDir(id);
    try {
      return new SharedLabLink(id, await EmulatedLink.create(id, spec), dir);
    } catch (err) {
      rmSync(dir, { recursive: true, force: true });
      throw err;
    }
  }

  /** Removes the veth pair, the netns and the dir. Safe to call twice. */
  async destroy(): Promise<void> {
    await this.link.destroy();
    rmSync(this.dir, { recursive: true, force: true });
  }
}
