import { setTimeout as sleep } from 'node:timers/promises';
import { resolveEnding, type DestinationVerdict, type GuestRunsOn } from '../core/ending.js';
import {
  isPostcopyStatus,
  MigrationInfoSchema,
  PRECOPY_STATUSES,
  TERMINAL_STATUSES,
} from '../core/sample.js';
import { QmpClient, QmpConnectionError } from '../qmp/index.js';
import { runState } from './preflight.js';

export interface RecoveryReport {
  /** What was found, in words. */
  found: string;
  /** What was done, in words. */
  did: string;
  /** Which side's guest runs afterwards; `none`: the operator decides. */
  running: GuestRunsOn;
}

interface Side {
  qmp: QmpClient | undefined;
  runState?: string;
  migration?: string;
  /** Why it could not be read; `gone` when nothing listens on its monitor any more. */
  unreachable?: { gone: boolean; why: string };
}

async function inspect(qmp: QmpClient | undefined, unreachable?: Side['unreachable']): Promise<Side> {
  if (!qmp) return { qmp, unreachable };
  try {
    // A side that does not answer within a few seconds counts as unreachable (not as gone).
    const [state, mig] = await Promise.all([
      runState(qmp, 3000),
      qmp.execute('query-migrate', undefined, { timeoutMs: 3000 }).then((m) => MigrationInfoSchema.parse(m)),
    ]);
    return { qmp, runState: state, migration: mig.status ?? 'none' };
  } catch (err) {
    return { qmp: undefined, unreachable: { gone: false, why: (err as Error).message } };
  }
}

async function waitWhile(qmp: QmpClient | undefined, still: (s: Side) => boolean, waitMs: number) {
  const deadline = performance.now() + waitMs;
  let side = await inspect(qmp);
  while (still(side) && performance.now() < deadline) {
    await sleep(100);
    side = await inspect(qmp);
  }
  return side;
}

function verdictOf(dst: Side): { verdict: DestinationVerdict; detail: string } {
  if (dst.migration === 'completed') return { verdict: 'completed', detail: 'it reports completed' };
  if (dst.migration === 'failed' || dst.migration === 'cancelled')
    return { verdict: 'failed', detail: `its incoming migration is ${dst.migration}` };
  if (dst.unreachable?.gone) return { verdict: 'gone', detail: dst.unreachable.why };
  if (dst.unreachable) return { verdict: 'unknown', detail: `it does not answer (${dst.unreachable.why})` };
  return { verdict: 'unknown', detail: `its incoming migration is '${dst.migration}'` };
}

/**
 * After a controller died mid-migration (SIGKILL, host crash): look at both sides and leave
 * exactly one guest running, by the same rules as the controller (core/ending.ts). Pre-copy still
 * under way → cancel, the source runs on. Post-copy → never cancelled: wait for it. Then the
 * source is resumed only if its guest never moved or the destination provably does not have it;
 * when that cannot be told, nothing is started and the operator decides.
 */
export async function recoverMigration(
  source: QmpClient | undefined,
  destination: QmpClient | undefined,
  opts: { waitMs?: number; destinationUnreachable?: Side['unreachable'] } = {},
): Promise<RecoveryReport> {
  const waitMs = opts.waitMs ?? 120_000;
  let src = await inspect(source);
  let dst = await inspect(destination, opts.destinationUnreachable);
  const found = `source ${src.runState ?? 'unreachable'} (migration ${src.migration ?? '?'}), destination ${
    dst.runState ?? (dst.unreachable?.gone ? 'gone' : 'unreachable')
  } (incoming ${dst.migration ?? '?'})`;
  const did: string[] = [];
  if (src.migration && PRECOPY_STATUSES.has(src.migration)) {
    await src.qmp!.execute('migrate_cancel').catch(() => undefined);
    did.push('cancelled the pre-copy migration');
    src = await waitWhile(source, (s) => !!s.migration && !TERMINAL_STATUSES.has(s.migration), waitMs);
  }
  const postcopy = isPostcopyStatus(src.migration);
  if (postcopy) {
    did.push('waited for post-copy (it cannot be cancelled)');
    src = await waitWhile(source, (s) => isPostcopyStatus(s.migration), waitMs);
  }
  if (destination || opts.destinationUnreachable) dst = await inspect(destination, dst.unreachable);
  // The source sent everything (it completed, e.g. the controller died right after forcing the
  // switchover) while the destination still loads it: its verdict is coming, so wait for it
  // rather than leave both paused.
  if (src.migration === 'completed' && dst.migration && !TERMINAL_STATUSES.has(dst.migration)) {
    did.push('waited for the destination to load what the source sent');
    dst = await waitWhile(destination, (d) => !!d.migration && !TERMINAL_STATUSES.has(d.migration), waitMs);
  }
  const ending = resolveEnding({
    sourceStatus: src.migration ?? 'unknown',
    sourceRunState: src.runState,
    postcopy,
    destination: verdictOf(dst),
    sourceWasRunning: true,
  });
  if (ending.resume === 'destination' && dst.runState !== 'running') await dst.qmp!.execute('cont');
  if (ending.resume === 'source' && src.runState !== 'running') await src.qmp!.execute('cont');
  did.push(
    ending.resume === 'none'
      ? ending.guestRunsOn === 'none'
        ? `started nothing: ${ending.reason}`
        : `the ${ending.guestRunsOn} runs on`
      : `resumed the ${ending.resume}`,
  );
  return { found, did: did.join('; '), running: ending.guestRunsOn };
}

/**
 * `recoverMigration` on the QMP sockets (paths or HOST:PORT) of both sides, with whichever
 * answers; undefined when neither does. The connections are closed afterwards.
 */
export async function recoverAt(srcSpec: string, dstSpec: string): Promise<RecoveryReport | undefined> {
  let dstUnreachable: Side['unreachable'];
  const connect = (spec: string, side: 'src' | 'dst') =>
    QmpClient.connect(spec, { timeoutMs: 3000 }).catch((e: Error) => {
      if (side === 'dst')
        dstUnreachable = { gone: e instanceof QmpConnectionError && e.nobodyListens, why: e.message };
      return undefined;
    });
  const [source, destination] = await Promise.all([connect(srcSpec, 'src'), connect(dstSpec, 'dst')]);
  if (!source && !destination) return undefined;
  try {
    return await recoverMigration(source, destination, { destinationUnreachable: dstUnreachable });
  } finally {
    source?.close();
    destination?.close();
  }
}
