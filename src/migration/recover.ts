import { setTimeout as sleep } from 'node:timers/promises';
import { QmpClient } from '../qmp/index.js';
import { MigrationInfoSchema } from '../core/sample.js';

export interface RecoveryReport {
  /** What was found, in words. */
  found: string;
  /** What was done, in words. */
  did: string;
  /** Which side's guest runs afterwards. */
  running: 'source' | 'destination' | 'none';
}

interface Side {
  qmp: QmpClient | undefined;
  runState?: string;
  migration?: string;
}

async function inspect(qmp: QmpClient | undefined): Promise<Side> {
  if (!qmp) return { qmp };
  try {
    const [status, mig] = await Promise.all([
      qmp.execute<{ status: string }>('query-status'),
      qmp.execute('query-migrate').then((m) => MigrationInfoSchema.parse(m)),
    ]);
    return { qmp, runState: status.status, migration: mig.status ?? 'none' };
  } catch {
    return { qmp: undefined };
  }
}

async function run(side: Side): Promise<void> {
  if (side.runState !== 'running') await side.qmp!.execute('cont');
}

/**
 * After a controller died mid-migration (SIGKILL, host crash): look at both sides and leave
 * exactly one guest running. Pre-copy still under way → cancel, the source runs on (it still has
 * everything). Post-copy → it cannot be cancelled: wait for it, the destination runs. Completed
 * and the destination has it → start the destination. Otherwise → the source runs.
 */
export async function recoverMigration(
  source?: QmpClient,
  destination?: QmpClient,
  waitMs = 120_000,
): Promise<RecoveryReport> {
  let src = await inspect(source);
  let dst = await inspect(destination);
  const found = `source ${src.runState ?? 'unreachable'} (migration ${src.migration ?? '?'}), destination ${
    dst.runState ?? 'unreachable'
  } (incoming ${dst.migration ?? '?'})`;

  if (
    src.migration &&
    ['setup', 'active', 'device', 'pre-switchover', 'wait-unplug'].includes(src.migration)
  ) {
    await src.qmp!.execute('migrate_cancel');
    const deadline = performance.now() + waitMs;
    while (src.migration !== 'cancelled' && src.migration !== 'failed' && src.migration !== 'completed') {
      if (performance.now() > deadline) break;
      await sleep(50);
      src = await inspect(source);
    }
    if (src.migration !== 'completed') {
      await run(src);
      return { found, did: 'cancelled the pre-copy migration and resumed the source', running: 'source' };
    }
    dst = await inspect(destination);
  }
  if (src.migration === 'postcopy-active' || src.migration === 'postcopy-paused') {
    const deadline = performance.now() + waitMs;
    while (src.migration?.startsWith('postcopy') && performance.now() < deadline) {
      await sleep(100);
      src = await inspect(source);
    }
    dst = await inspect(destination);
    if (dst.runState && dst.migration === 'completed') {
      await run(dst);
      return { found, did: 'waited for post-copy to complete; the destination runs', running: 'destination' };
    }
    return {
      found,
      did: 'post-copy did not complete: the guest is lost (neither side holds all its memory)',
      running: 'none',
    };
  }
  if (dst.runState && dst.migration === 'completed') {
    await run(dst);
    return { found, did: 'the migration had completed: resumed the destination', running: 'destination' };
  }
  if (src.runState) {
    await run(src);
    return {
      found,
      did: `the migration did not complete: ${src.runState === 'running' ? 'the source runs on' : 'resumed the source'}`,
      running: 'source',
    };
  }
  return { found, did: 'neither side can run the guest', running: 'none' };
}

/**
 * `recoverMigration` on the QMP sockets (paths or HOST:PORT) of both sides, with whichever
 * answers; undefined when neither does. The connections are closed afterwards.
 */
export async function recoverAt(srcSpec: string, dstSpec: string): Promise<RecoveryReport | undefined> {
  const connect = (spec: string) => QmpClient.connect(spec, { timeoutMs: 3000 }).catch(() => undefined);
  const [source, destination] = await Promise.all([connect(srcSpec), connect(dstSpec)]);
  if (!source && !destination) return undefined;
  try {
    return await recoverMigration(source, destination);
  } finally {
    source?.close();
    destination?.close();
  }
}
