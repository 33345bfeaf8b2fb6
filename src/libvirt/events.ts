import type { MigrationInfo } from '../core/sample.js';
import { JOB_TYPE, toMigrationInfo } from './job-stats.js';
import { PROC, readDomain } from './protocol.js';
import { lifecycleWords } from './reasons.js';
import { XdrReader } from './xdr.js';

interface EventBase {
  domain: string;
  /** When this process read the event (performance.now(), ms). */
  at: number;
}

/** A lifecycle change, e.g. suspended/postcopy on the source at the post-copy switch, resumed/postcopy-failed. */
export interface LifecycleEvent extends EventBase {
  kind: 'lifecycle';
  event: string;
  detail: string;
}

/** QEMU's MIGRATION_PASS as libvirt forwards it: a dirty-bitmap sync, i.e. a new pass. */
export interface IterationEvent extends EventBase {
  kind: 'migration-iteration';
  iteration: number;
}

/** The job ended; `info` is its final statistics (libvirt sends them only for a completed job). */
export interface JobCompletedEvent extends EventBase {
  kind: 'job-completed';
  info: MigrationInfo;
}

export type LibvirtEvent = LifecycleEvent | IterationEvent | JobCompletedEvent;

/** Decodes one REMOTE_PROC_DOMAIN_EVENT_CALLBACK_* message; undefined for events we did not ask for. */
export function decodeEvent(proc: number, body: Buffer, at: number): LibvirtEvent | undefined {
  const r = new XdrReader(body);
  switch (proc) {
    case PROC.eventLifecycle: {
      r.int(); // callback id
      const domain = readDomain(r).name;
      const { event, detail } = lifecycleWords(r.int(), r.int());
      return { kind: 'lifecycle', domain, at, event, detail };
    }
    case PROC.eventMigrationIteration: {
      r.int();
      const domain = readDomain(r).name;
      return { kind: 'migration-iteration', domain, at, iteration: r.int() };
    }
    case PROC.eventJobCompleted: {
      r.int();
      const domain = readDomain(r).name;
      const info = toMigrationInfo(JOB_TYPE.completed, r.params(64));
      return { kind: 'job-completed', domain, at, info };
    }
    default:
      return undefined;
  }
}
