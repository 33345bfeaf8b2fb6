import { UsageError } from '../util/errors.js';

/** Transports QEMU migrates over without running anything: `exec:` would run a shell as root. */
const ALLOWED = ['tcp:', 'unix:', 'rdma:', 'fd:'];

/** Refuses any migration URI but tcp:, unix:, rdma: and fd:, with one line saying why. */
export function checkMigrationUri(uri: string, what = 'migration URI'): string {
  if (uri.length > 1024 || /[\0\r\n]/.test(uri))
    throw new UsageError(`the ${what} is not a URI (too long or with control characters)`);
  if (!ALLOWED.some((p) => uri.startsWith(p) && uri.length > p.length)) {
    const scheme = uri.includes(':') ? `'${uri.slice(0, uri.indexOf(':') + 1)}'` : 'no scheme';
    throw new UsageError(
      `the ${what} '${uri.slice(0, 80)}' has ${scheme}: use tcp:HOST:PORT, unix:PATH, rdma:HOST:PORT or fd:NAME` +
        (uri.startsWith('exec:') ? ' (exec: runs a shell command as root and is refused)' : ''),
    );
  }
  return uri;
}
