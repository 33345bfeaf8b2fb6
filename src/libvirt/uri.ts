import path from 'node:path';
import { LibvirtUsageError } from './errors.js';

/** libvirtd's system socket when the URI names none. */
export const DEFAULT_SOCKET = '/run/libvirt/libvirt-sock';

export interface LocalUri {
  /** What the caller passed. */
  uri: string;
  socketPath: string;
  /** The name sent in CONNECT_OPEN: the URI without transport and socket (as libvirt's remote driver does). */
  openName: string;
}

/**
 * This driver talks to the libvirtd on this host, over its unix socket: `qemu:///system` or
 * `qemu+unix:///system?socket=PATH`. Remote transports (ssh, tls, tcp) need libvirt's own
 * client stack; kvmigrate runs beside the source QEMU anyway (it reads the guest's RAM).
 */
export function parseLocalUri(uri: string): LocalUri {
  const m = /^qemu(\+unix)?:\/\/(\/system)(?:\?(.*))?$/.exec(uri.trim());
  if (!m) {
    throw new LibvirtUsageError(
      `unsupported libvirt URI '${uri}': use qemu:///system or qemu+unix:///system?socket=PATH (the daemon on this host)`,
    );
  }
  const params = new URLSearchParams(m[3] ?? '');
  for (const key of params.keys()) {
    if (key !== 'socket')
      throw new LibvirtUsageError(`unsupported libvirt URI parameter '${key}' in '${uri}'`);
  }
  const socket = params.get('socket');
  if (socket !== null && !path.isAbsolute(socket)) {
    throw new LibvirtUsageError(`the socket in libvirt URI '${uri}' must be an absolute path`);
  }
  return { uri, socketPath: socket ?? DEFAULT_SOCKET, openName: 'qemu:///system' };
}

/**
 * A destination URI is opened by the source daemon (peer-to-peer), not by us: any libvirt URI
 * will do, but one that names the source's own socket is the same host.
 */
export function sameDaemon(source: LocalUri, destUri: string): boolean {
  try {
    const dest = parseLocalUri(destUri);
    return path.resolve(dest.socketPath) === path.resolve(source.socketPath);
  } catch {
    return false;
  }
}
