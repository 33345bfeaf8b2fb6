import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { CommandFailedError, CommandNotFoundError, run } from '../util/exec.js';
import { LabError } from '../util/errors.js';
import { APP_INIT_SCRIPT, appGuestEntries } from './app-image.js';
import { buildCpio, type CpioEntry } from './cpio.js';

export interface GuestImage {
  kernel: string;
  initrd: string;
  /** Hash of every input; changes exactly when a rebuild was needed. */
  key: string;
  kernelPackage: string;
}

export interface ImageBuildReport {
  image: GuestImage;
  kernelCached: boolean;
  initrdCached: boolean;
  ms: number;
}

const KERNEL_META_PACKAGE = 'linux-image-cloud-amd64';
const BUSYBOX = '/bin/busybox';

/** The guest's /init: mounts the basics and hands the console to the workload. */
export const INIT_SCRIPT = `#!/bin/busybox sh
/bin/busybox mount -t proc proc /proc
/bin/busybox mount -t sysfs sys /sys
/bin/busybox mount -t devtmpfs dev /dev
exec /bin/workload </dev/ttyS0 >/dev/ttyS0 2>&1
`;

export function defaultCacheDir(): string {
  return process.env.KVMIGRATE_CACHE || path.join(os.homedir(), '.cache', 'kvmigrate');
}

export function repoRoot(): string {
  // dist/lab/image.js or src/lab/image.ts → two levels up.
  return path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
}

function sha256(...parts: (string | Buffer)[]): string {
  const h = createHash('sha256');
  for (const p of parts) h.update(p);
  return h.digest('hex');
}

/**
 * Which initramfs: `base` (busybox + the synthetic workload) or `apps` (also PostgreSQL, pgbench,
 * memcached and their load; for the `app:` workloads, see src/lab/app-image.ts).
 */
export type GuestImageVariant = 'base' | 'apps';

/**
 * Builds (or reuses) the guest image in `cacheDir`: the kernel extracted from Debian's cloud
 * kernel .deb (downloaded with apt-get, never installed), and an initramfs of busybox-static plus
 * the static C workload. Each part is rebuilt only when one of its inputs changed.
 */
export async function buildGuestImage(
  cacheDir = defaultCacheDir(),
  variant: GuestImageVariant = 'base',
): Promise<ImageBuildReport> {
  const t0 = performance.now();
  mkdirSync(cacheDir, { recursive: true });
  const kernel = await ensureKernel(cacheDir);
  const initrd = variant === 'apps' ? await ensureAppInitrd(cacheDir) : await ensureInitrd(cacheDir);
  return {
    image: {
      kernel: kernel.path,
      initrd: initrd.path,
      key: sha256(kernel.pkg, initrd.key),
      kernelPackage: kernel.pkg,
    },
    kernelCached: kernel.cached,
    initrdCached: initrd.cached,
    ms: performance.now() - t0,
  };
}

async function kernelPackageName(): Promise<string | undefined> {
  try {
    const { stdout } = await run('apt-cache', ['depends', KERNEL_META_PACKAGE]);
    return /Depends:\s*(linux-image-\S+-cloud-amd64)/.exec(stdout)?.[1];
  } catch {
    return undefined;
  }
}

async function ensureKernel(cacheDir: string): Promise<{ path: string; pkg: string; cached: boolean }> {
  const kernelDir = path.join(cacheDir, 'kernel');
  let pkg = await kernelPackageName();
  if (!pkg) {
    // apt's lists may be missing on a fresh machine.
    await run('apt-get', ['update', '-qq'], { timeoutMs: 300_000 }).catch(() => undefined);
    pkg = await kernelPackageName();
  }
  const cachedPkgs = existsSync(kernelDir)
    ? readdirSync(kernelDir).filter((d) => d.startsWith('linux-image-'))
    : [];
  if (!pkg) {
    const fallback = cachedPkgs.sort().at(-1);
    if (fallback) return { path: path.join(kernelDir, fallback, 'vmlinuz'), pkg: fallback, cached: true };
    throw new LabError(
      `cannot find Debian's ${KERNEL_META_PACKAGE} package (apt-cache has no entry); run 'apt-get update' and retry`,
    );
  }
  const vmlinuz = path.join(kernelDir, pkg, 'vmlinuz');
  if (existsSync(vmlinuz)) return { path: vmlinuz, pkg, cached: true };

  const work = path.join(kernelDir, `.work-${process.pid}`);
  rmSync(work, { recursive: true, force: true });
  mkdirSync(work, { recursive: true });
  try {
    try {
      await run('apt-get', ['download', pkg], { cwd: work, timeoutMs: 600_000 });
    } catch (err) {
      throw new LabError(`cannot download the guest kernel ${pkg} with apt-get: ${(err as Error).message}`);
    }
    const deb = readdirSync(work).find((f) => f.endsWith('.deb'));
    if (!deb) throw new LabError(`apt-get download ${pkg} produced no .deb`);
    await run('dpkg-deb', ['-x', deb, 'root'], { cwd: work });
    const boot = path.join(work, 'root', 'boot');
    const image = readdirSync(boot).find((f) => f.startsWith('vmlinuz-'));
    if (!image) throw new LabError(`${deb} has no boot/vmlinuz-*`);
    mkdirSync(path.dirname(vmlinuz), { recursive: true });
    renameSync(path.join(boot, image), vmlinuz);
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
  return { path: vmlinuz, pkg, cached: false };
}

async function ensureInitrd(cacheDir: string): Promise<{ path: string; key: string; cached: boolean }> {
  if (!existsSync(BUSYBOX)) {
    throw new LabError(`${BUSYBOX} not found: install busybox-static (sudo bash scripts/setup-host.sh)`);
  }
  const source = path.join(repoRoot(), 'guest', 'workload.c');
  const src = readFileSync(source);
  const busybox = readFileSync(BUSYBOX);
  let gccVersion: string;
  try {
    gccVersion = (await run('gcc', ['--version'])).stdout.split('\n')[0] ?? '';
  } catch (err) {
    if (err instanceof CommandNotFoundError)
      throw new LabError('gcc is not installed: run sudo bash scripts/setup-host.sh');
    throw err;
  }
  const key = sha256(src, busybox, INIT_SCRIPT, gccVersion, 'initrd-v1').slice(0, 16);
  const out = path.join(cacheDir, `initrd-${key}.cpio`);
  if (existsSync(out)) return { path: out, key, cached: true };

  const workloadBin = path.join(cacheDir, `.workload-${process.pid}`);
  try {
    await run('gcc', ['-O2', '-static', '-Wall', '-o', workloadBin, source]);
  } catch (err) {
    if (err instanceof CommandFailedError && /cannot find -lc/.test(err.detail)) {
      throw new LabError('gcc cannot link statically: install libc6-dev (sudo bash scripts/setup-host.sh)');
    }
    throw new LabError(`cannot compile the guest workload: ${(err as Error).message}`);
  }
  const entries: CpioEntry[] = [
    ...['bin', 'dev', 'proc', 'sys', 'tmp'].map((d): CpioEntry => ({ kind: 'dir', path: d })),
    { kind: 'chardev', path: 'dev/console', major: 5, minor: 1 },
    { kind: 'file', path: 'bin/busybox', data: busybox, mode: 0o755 },
    { kind: 'symlink', path: 'bin/sh', target: 'busybox' },
    { kind: 'file', path: 'bin/workload', data: readFileSync(workloadBin), mode: 0o755 },
    { kind: 'file', path: 'init', data: Buffer.from(INIT_SCRIPT), mode: 0o755 },
  ];
  rmSync(workloadBin, { force: true });
  const tmp = `${out}.tmp-${process.pid}`;
  writeFileSync(tmp, buildCpio(entries));
  renameSync(tmp, out);
  return { path: out, key, cached: false };
}

/** Compiles a static guest program from guest/<name>.c into `out`. */
async function compileGuest(name: string, out: string, extra: string[] = []): Promise<void> {
  try {
    await run('gcc', [
      '-O2',
      '-static',
      '-Wall',
      '-o',
      out,
      path.join(repoRoot(), 'guest', `${name}.c`),
      ...extra,
    ]);
  } catch (err) {
    if (err instanceof CommandFailedError && /cannot find -lc/.test(err.detail)) {
      throw new LabError('gcc cannot link statically: install libc6-dev (sudo bash scripts/setup-host.sh)');
    }
    if (err instanceof CommandNotFoundError)
      throw new LabError('gcc is not installed: run sudo bash scripts/setup-host.sh');
    throw new LabError(`cannot compile the guest program ${name}: ${(err as Error).message}`);
  }
}

/**
 * The app guest's initramfs: the base image's contents with the app /init, plus PostgreSQL,
 * memcached and their libraries (app-image.ts) and the load helper (guest/appload.c). Cached by
 * the hash of every input, the host's binaries included, so a package upgrade rebuilds it.
 */
async function ensureAppInitrd(cacheDir: string): Promise<{ path: string; key: string; cached: boolean }> {
  if (!existsSync(BUSYBOX)) {
    throw new LabError(`${BUSYBOX} not found: install busybox-static (sudo bash scripts/setup-host.sh)`);
  }
  const guestDir = path.join(repoRoot(), 'guest');
  const sources = ['workload.c', 'appload.c', 'app-start.sh'].map((f) =>
    readFileSync(path.join(guestDir, f)),
  );
  const busybox = readFileSync(BUSYBOX);
  const gccVersion =
    (await run('gcc', ['--version']).catch(() => ({ stdout: '' }))).stdout.split('\n')[0] ?? '';
  const appEntries = await appGuestEntries();
  const h = createHash('sha256');
  for (const part of [...sources, busybox, APP_INIT_SCRIPT, gccVersion, 'app-initrd-v1']) h.update(part);
  for (const e of appEntries) {
    h.update(e.path);
    if (e.kind === 'file') h.update(e.data);
  }
  const key = h.digest('hex').slice(0, 16);
  const out = path.join(cacheDir, `initrd-apps-${key}.cpio`);
  if (existsSync(out)) return { path: out, key, cached: true };

  const workloadBin = path.join(cacheDir, `.workload-${process.pid}`);
  const apploadBin = path.join(cacheDir, `.appload-${process.pid}`);
  try {
    await compileGuest('workload', workloadBin);
    await compileGuest('appload', apploadBin, ['-lpthread']);
    const entries: CpioEntry[] = [
      ...['bin', 'dev', 'proc', 'sys', 'tmp'].map((d): CpioEntry => ({ kind: 'dir', path: d })),
      { kind: 'chardev', path: 'dev/console', major: 5, minor: 1 },
      { kind: 'file', path: 'bin/busybox', data: busybox, mode: 0o755 },
      { kind: 'symlink', path: 'bin/sh', target: 'busybox' },
      { kind: 'file', path: 'bin/workload', data: readFileSync(workloadBin), mode: 0o755 },
      { kind: 'file', path: 'bin/appload', data: readFileSync(apploadBin), mode: 0o755 },
      { kind: 'file', path: 'bin/app-start', data: sources[2]!, mode: 0o755 },
      { kind: 'file', path: 'init', data: Buffer.from(APP_INIT_SCRIPT), mode: 0o755 },
      ...appEntries,
    ];
    const tmp = `${out}.tmp-${process.pid}`;
    writeFileSync(tmp, buildCpio(entries));
    renameSync(tmp, out);
  } finally {
    rmSync(workloadBin, { force: true });
    rmSync(apploadBin, { force: true });
  }
  return { path: out, key, cached: false };
}
