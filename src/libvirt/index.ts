export {
  LibvirtClient,
  type DomainState,
  type MigrationHandle,
  type MigrationOptions,
  type MigrationOutcome,
} from './client.js';
export type { IterationEvent, JobCompletedEvent, LibvirtEvent, LifecycleEvent } from './events.js';
export {
  LibvirtError,
  LibvirtUnreachableError,
  LibvirtUsageError,
  NotMigratingError,
  SameHostError,
  UnknownDomainError,
} from './errors.js';
export { toMigrationInfo, JobParamsSchema } from './job-stats.js';
export { parseLocalUri, DEFAULT_SOCKET } from './uri.js';
export { UNLIMITED_SPEED_MIBPS } from './checks.js';
