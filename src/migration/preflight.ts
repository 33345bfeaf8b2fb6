import { z } from 'zod';
import { MigrationInfoSchema, TERMINAL_STATUSES } from '../core/sample.js';
import type { QmpClient } from '../qmp/index.js';
import { MigrationSetupError } from '../util/errors.js';

const StatusSchema = z.object({ status: z.string().max(64) }).passthrough();
const MemorySchema = z.object({ 'base-memory': z.number().int().positive() }).passthrough();

/** `query-status`, schema-checked. */
export async function runState(qmp: QmpClient, timeoutMs?: number): Promise<string> {
  return StatusSchema.parse(await qmp.execute('query-status', undefined, { timeoutMs })).status;
}

/** Guest RAM size in bytes (`query-memory-size-summary`). */
export async function ramSize(qmp: QmpClient): Promise<number> {
  return MemorySchema.parse(await qmp.execute('query-memory-size-summary'))['base-memory'];
}

/**
 * Checks both ends before touching anything: the destination waits for a migration, the source
 * is not migrating, both have the same RAM. Throws MigrationSetupError (nothing changed).
 */
export async function preflight(
  src: QmpClient,
  dst: QmpClient,
): Promise<{ ramBytes: number; sourceWasRunning: boolean }> {
  const [srcStatus, dstStatus] = await Promise.all([runState(src), runState(dst)]);
  if (dstStatus !== 'inmigrate') {
    throw new MigrationSetupError(
      `the destination is not waiting for a migration (its status is '${dstStatus}'): start it with -incoming defer or -incoming tcp:HOST:PORT`,
    );
  }
  if (!['running', 'paused', 'prelaunch'].includes(srcStatus))
    throw new MigrationSetupError(`the source cannot be migrated in status '${srcStatus}'`);
  const srcMigrate = MigrationInfoSchema.parse(await src.execute('query-migrate'));
  if (srcMigrate.status && !TERMINAL_STATUSES.has(srcMigrate.status) && srcMigrate.status !== 'none')
    throw new MigrationSetupError(`the source is already migrating (status '${srcMigrate.status}')`);
  const [srcRam, dstRam] = await Promise.all([ramSize(src), ramSize(dst)]);
  if (srcRam !== dstRam) {
    const mib = (b: number) => `${Math.round(b / 2 ** 20)} MiB`;
    throw new MigrationSetupError(
      `source has ${mib(srcRam)} of RAM, destination ${mib(dstRam)}: start the destination with the same -m`,
    );
  }
  return { ramBytes: srcRam, sourceWasRunning: srcStatus === 'running' };
}
