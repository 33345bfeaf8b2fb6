/**
 * The numbers of libvirt's remote protocol that this driver uses (src/remote/remote_protocol.x
 * and libvirt-domain.h; both are append-only, so these hold from libvirt 1.x to 11.x).
 */
import { XdrReader, XdrWriter } from './xdr.js';

export const REMOTE_PROGRAM = 0x20008086;
export const REMOTE_VERSION = 1;

/** Message header `type` and `status`. */
export const MSG = { call: 0, reply: 1, message: 2, stream: 3 } as const;
export const STATUS = { ok: 0, error: 1, continue: 2 } as const;

/** libvirt caps a whole message at 32 MiB; nothing this driver reads is near 4 MiB. */
export const MAX_MESSAGE_BYTES = 4 << 20;

export const PROC = {
  connectOpen: 1,
  connectClose: 2,
  domainCreateXml: 10,
  domainDestroy: 12,
  domainGetXmlDesc: 14,
  domainGetInfo: 16,
  domainLookupByName: 23,
  domainResume: 28,
  domainSuspend: 34,
  connectGetHostname: 59,
  authList: 66,
  authPolkit: 70,
  domainAbortJob: 164,
  domainMigrateSetMaxDowntime: 166,
  domainMigrateSetMaxSpeed: 207,
  domainGetState: 212,
  domainMigrateGetMaxSpeed: 242,
  domainGetJobStats: 298,
  domainMigratePerform3Params: 305,
  eventRegisterAny: 316,
  eventDeregisterAny: 317,
  eventLifecycle: 318,
  eventMigrationIteration: 359,
  eventJobCompleted: 363,
  domainMigrateStartPostCopy: 364,
  domainMigrateGetMaxDowntime: 387,
} as const;

/** VIR_DOMAIN_EVENT_ID_*. */
export const EVENT_ID = { lifecycle: 0, migrationIteration: 20, jobCompleted: 21 } as const;

/** virDomainMigrateFlags. */
export const MIGRATE = {
  live: 1,
  peer2peer: 2,
  persistDest: 8,
  paused: 32,
  postcopy: 32768,
} as const;

export const JOB_STATS_COMPLETED = 1;

/** VIR_DOMAIN_MIGRATE_MAX_SPEED_POSTCOPY: the speed limit of the post-copy phase. */
export const MAX_SPEED_POSTCOPY = 1;

/** virDomainState. */
export const DOMAIN_STATES = [
  'nostate',
  'running',
  'blocked',
  'paused',
  'shutdown',
  'shutoff',
  'crashed',
  'pmsuspended',
] as const;
export type DomainStateName = (typeof DOMAIN_STATES)[number] | 'unknown';

/** virDomainEventType and the details this driver tells apart. */
export const LIFECYCLE = { started: 2, suspended: 3, resumed: 4, stopped: 5 } as const;
export const SUSPENDED_DETAIL = { paused: 0, migrated: 1, postcopy: 7, postcopyFailed: 8 } as const;
export const RESUMED_DETAIL = { unpaused: 0, migrated: 1, postcopy: 3, postcopyFailed: 4 } as const;
export const STOPPED_DETAIL = { migrated: 3, failed: 5 } as const;

/** virErrorNumber values the driver maps to its own errors. */
export const ERR = {
  operationFailed: 9,
  systemError: 38,
  noDomain: 42,
  operationInvalid: 55,
  operationAborted: 78,
  operationUnsupported: 84,
} as const;

/** remote_nonnull_domain: how every call names its domain. */
export interface DomainRef {
  name: string;
  uuid: Buffer;
  id: number;
}

export function writeDomain(w: XdrWriter, d: DomainRef): XdrWriter {
  return w.string(d.name).fixed(d.uuid).int(d.id);
}

export function readDomain(r: XdrReader): DomainRef {
  return { name: r.string(1024), uuid: Buffer.from(r.fixed(16)), id: r.int() };
}

/** remote_error: code, domain, message, and fields this driver skips. */
export interface RemoteError {
  code: number;
  domain: number;
  message: string;
}

export function readRemoteError(r: XdrReader): RemoteError {
  const code = r.int();
  const domain = r.int();
  const message = r.optString() ?? `libvirt error ${code}`;
  return { code, domain, message };
}
