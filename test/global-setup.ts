import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { buildGuestImage, defaultCacheDir } from '../src/lab/image.js';
import { findLeftovers, type Leftovers } from '../src/lab/clean.js';
import { LAB_PREFIX } from '../src/lab/link.js';

// Builds the CLI and the guest image once, and fails the run if any test left lab state behind.
// Labs of this run carry a tag in their names, so another run on the same host is neither blamed
// nor touched.
export default async function setup(): Promise<() => Promise<void>> {
  const tag = randomBytes(1).toString('hex');
  process.env.KVMIGRATE_LAB_TAG = tag;
  execFileSync('npx', ['tsc', '-p', 'tsconfig.json'], { stdio: 'inherit' });
  const r = await buildGuestImage(defaultCacheDir());
  console.log(
    `guest image: ${r.kernelCached && r.initrdCached ? 'cached' : 'built'} in ${(r.ms / 1000).toFixed(1)} s`,
  );
  return async () => {
    const mine = (name: string) =>
      name.includes(`${LAB_PREFIX}-${tag}`) || name.includes(`${LAB_PREFIX}${tag}`);
    const after = await findLeftovers();
    const leaked: Leftovers = {
      qemuPids: after.qemuPids.filter((pid) => mine(qemuName(pid))),
      netns: after.netns.filter(mine),
      links: after.links.filter(mine),
      dirs: after.dirs.filter(mine),
    };
    if (Object.values(leaked).some((v) => v.length > 0)) {
      for (const pid of leaked.qemuPids) process.kill(pid, 'SIGKILL');
      throw new Error(`tests leaked lab state: ${JSON.stringify(leaked)}`);
    }
  };
}

function qemuName(pid: number): string {
  try {
    const argv = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
    return argv[argv.indexOf('-name') + 1] ?? '';
  } catch {
    return '';
  }
}
