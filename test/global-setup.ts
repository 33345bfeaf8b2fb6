import { execFileSync } from 'node:child_process';
import { buildGuestImage, defaultCacheDir } from '../src/lab/image.js';
import { cleanLeftovers, findLeftovers } from '../src/lab/clean.js';

// Builds the CLI and the guest image once, and fails the run if any test left lab state behind.
export default async function setup(): Promise<() => Promise<void>> {
  execFileSync('npx', ['tsc', '-p', 'tsconfig.json'], { stdio: 'inherit' });
  const before = await findLeftovers();
  const r = await buildGuestImage(defaultCacheDir());
  console.log(
    `guest image: ${r.kernelCached && r.initrdCached ? 'cached' : 'built'} in ${(r.ms / 1000).toFixed(1)} s`,
  );
  return async () => {
    const after = await findLeftovers();
    const leaked = {
      qemuPids: after.qemuPids.filter((p) => !before.qemuPids.includes(p)),
      netns: after.netns.filter((n) => !before.netns.includes(n)),
      links: after.links.filter((l) => !before.links.includes(l)),
      dirs: after.dirs.filter((d) => !before.dirs.includes(d)),
    };
    if (Object.values(leaked).some((v) => v.length > 0)) {
      await cleanLeftovers();
      throw new Error(`tests leaked lab state: ${JSON.stringify(leaked)}`);
    }
  };
}
