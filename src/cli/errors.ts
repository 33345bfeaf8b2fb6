import { QmpConnectionError, QmpError } from '../qmp/index.js';
import { KvmigrateError, UsageError } from '../util/errors.js';
import { PolicyConfigError } from '../policy/index.js';

/** Prints one line for an error and returns the exit code: 2 for bad input, 1 for everything else. */
export function reportError(err: unknown, debug: boolean): number {
  const e = err instanceof Error ? err : new Error(String(err));
  const known = e instanceof KvmigrateError || e instanceof QmpConnectionError || e instanceof QmpError;
  process.stderr.write(`kvmigrate: ${known ? e.message : `internal error: ${e.message}`}\n`);
  if (debug || !known) process.stderr.write(`${e.stack}\n`);
  return e instanceof UsageError || e instanceof PolicyConfigError ? 2 : 1;
}
