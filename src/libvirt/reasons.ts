/** libvirt's state reasons and lifecycle event details as words (libvirt-domain.h enums, by index). */

const STATE_REASONS: Record<string, readonly string[]> = {
  running: ['unknown', 'booted', 'migrated', 'restored', 'from-snapshot', 'unpaused', 'migration-canceled',
    'save-canceled', 'wakeup', 'crashed', 'postcopy', 'postcopy-failed'],
  paused: ['unknown', 'user', 'migration', 'save', 'dump', 'ioerror', 'watchdog', 'from-snapshot',
    'shutting-down', 'snapshot', 'crashed', 'starting-up', 'postcopy', 'postcopy-failed', 'api-error'],
  shutoff: ['unknown', 'shutdown', 'destroyed', 'crashed', 'migrated', 'saved', 'failed', 'from-snapshot', 'daemon'],
}; // prettier-ignore

export function stateReason(state: string, reason: number): string {
  return STATE_REASONS[state]?.[reason] ?? `reason-${reason}`;
}

export const LIFECYCLE_EVENTS = ['defined', 'undefined', 'started', 'suspended', 'resumed', 'stopped',
  'shutdown', 'pmsuspended', 'crashed'] as const; // prettier-ignore

const LIFECYCLE_DETAILS: Record<string, readonly string[]> = {
  started: ['booted', 'migrated', 'restored', 'from-snapshot', 'wakeup', 'recreated'],
  suspended: ['paused', 'migrated', 'ioerror', 'watchdog', 'restored', 'from-snapshot', 'api-error', 'postcopy',
    'postcopy-failed'],
  resumed: ['unpaused', 'migrated', 'from-snapshot', 'postcopy', 'postcopy-failed'],
  stopped: ['shutdown', 'destroyed', 'crashed', 'migrated', 'saved', 'failed', 'from-snapshot'],
}; // prettier-ignore

export function lifecycleWords(event: number, detail: number): { event: string; detail: string } {
  const name = LIFECYCLE_EVENTS[event] ?? `event-${event}`;
  return { event: name, detail: LIFECYCLE_DETAILS[name]?.[detail] ?? `detail-${detail}` };
}
