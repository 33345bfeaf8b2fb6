import { LibvirtUsageError } from './errors.js';
import { MIGRATE } from './protocol.js';
import { PARAM, type OutParam } from './xdr.js';

export interface MigrationOptions {
  /** Where QEMU sends the RAM: tcp://HOST:PORT (libvirt's migrate_uri). */
  migrateUri?: string;
  /** Address the destination QEMU listens on. */
  listenAddress?: string;
  /** Start the job with the post-copy flag (needed before startPostCopy). */
  postcopy?: boolean;
  /** VIR_MIGRATE_PAUSED: leave the destination paused after completion (for byte-for-byte checks). */
  paused?: boolean;
  /** Define the domain on the destination (VIR_MIGRATE_PERSIST_DEST). */
  persistent?: boolean;
}

/** Always live and peer-to-peer: the source daemon drives the job, so it survives our exit. */
export function migrationFlags(opts: MigrationOptions): number {
  let flags = MIGRATE.live | MIGRATE.peer2peer;
  if (opts.paused) flags |= MIGRATE.paused;
  if (opts.postcopy) flags |= MIGRATE.postcopy;
  if (opts.persistent) flags |= MIGRATE.persistDest;
  return flags;
}

/** Only tcp/unix/rdma migration URIs (the architecture's rule: exec: would run a shell as root). */
export function migrationParams(opts: MigrationOptions): OutParam[] {
  const out: OutParam[] = [];
  if (opts.migrateUri) {
    if (!/^(tcp|unix|rdma):/.test(opts.migrateUri)) {
      throw new LibvirtUsageError(`migrate URI '${opts.migrateUri}' must be tcp://, unix:// or rdma://`);
    }
    out.push({ name: 'migrate_uri', type: PARAM.string, value: opts.migrateUri });
  }
  if (opts.listenAddress) out.push({ name: 'listen_address', type: PARAM.string, value: opts.listenAddress });
  return out;
}
