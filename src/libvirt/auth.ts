import { LibvirtError, LibvirtUsageError } from './errors.js';
import { PROC } from './protocol.js';
import type { RpcConnection } from './rpc.js';
import { XdrReader } from './xdr.js';

const AUTH_NONE = 0;
const AUTH_POLKIT = 2;

/** Passes libvirtd's authentication on its unix socket: none, or polkit (which lets root in). */
export async function authenticate(rpc: RpcConnection): Promise<void> {
  const r = new XdrReader(await rpc.call(PROC.authList, undefined));
  const n = r.uint();
  if (n > 20) throw new LibvirtError('libvirt offered an unreadable list of auth types');
  const types = Array.from({ length: n }, () => r.int());
  if (types.length === 0 || types.includes(AUTH_NONE)) return;
  if (types.includes(AUTH_POLKIT)) {
    await rpc.call(PROC.authPolkit, undefined);
    return;
  }
  throw new LibvirtUsageError(
    `libvirt at ${rpc.socketPath} wants SASL authentication, which this driver does not speak; run kvmigrate as root on the host`,
  );
}
