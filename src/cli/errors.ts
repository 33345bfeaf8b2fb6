import { CommanderError } from 'commander';
import { z } from 'zod';
import { QmpConnectionError, QmpError } from '../qmp/index.js';
import { EXIT, KvmigrateError, type ExitCode } from '../util/errors.js';

/**
 * A QMP socket named on the command line cannot be reached when the command starts: bad input
 * (a wrong path, a QEMU not running), nothing was changed.
 */
export class QmpUnreachableError extends KvmigrateError {
  override readonly code: string = 'qmp-unreachable';
  override readonly exitCode: ExitCode = EXIT.usage;
}

/** What the CLI says about an error: the same fields on stderr and, with --json, on stdout. */
export interface ErrorReport {
  code: string;
  message: string;
  exitCode: ExitCode;
}

/**
 * Classifies an error. Ours carry their code; commander's usage errors are bad input (2); a QMP
 * error or dropped connection that escapes a command after the start is a failed migration (1:
 * the session has already put the source back); anything else is a bug in kvmigrate (4).
 */
export function classifyError(err: unknown): ErrorReport {
  if (err instanceof KvmigrateError) return { code: err.code, message: err.message, exitCode: err.exitCode };
  if (err instanceof CommanderError)
    return { code: 'usage', message: err.message.replace(/^error: /, ''), exitCode: EXIT.usage };
  if (err instanceof QmpConnectionError)
    return { code: 'qmp-connection', message: err.message, exitCode: EXIT.migrationFailed };
  if (err instanceof QmpError) return { code: 'qmp', message: err.message, exitCode: EXIT.migrationFailed };
  // A zod error's message is a JSON dump; say the issues in one line instead.
  const message =
    err instanceof z.ZodError
      ? `unexpected data: ${err.issues.map((i) => `${i.path.join('.') || '(root)'}: ${i.message}`).join('; ')}`
      : err instanceof Error
        ? err.message
        : String(err);
  return {
    code: 'internal',
    message: `internal error: ${message.replace(/\s*\n\s*/g, ' ')}`,
    exitCode: EXIT.internal,
  };
}

/** The JSON line `--json` prints for an error on stdout. */
export function errorJson(r: ErrorReport): string {
  return JSON.stringify({ error: { code: r.code, message: r.message, exitCode: r.exitCode } });
}

/** The top frames of a stack, for --debug. */
export function shortStack(err: unknown, frames = 8): string | undefined {
  if (!(err instanceof Error) || !err.stack) return undefined;
  return err.stack
    .split('\n')
    .filter((l) => /^\s+at /.test(l))
    .slice(0, frames)
    .join('\n');
}

/**
 * Prints an error — one line on stderr; with `json` also the JSON line on stdout; with `debug` a
 * short stack — and returns the exit code.
 */
export function reportError(
  err: unknown,
  opts: { debug: boolean; json: boolean; printed?: boolean },
): ExitCode {
  const r = classifyError(err);
  if (!opts.printed) {
    const hint = r.exitCode === EXIT.internal && !opts.debug ? ' (run with --debug for where)' : '';
    process.stderr.write(`kvmigrate: ${r.message}${hint}\n`);
  }
  if (opts.debug) {
    const stack = shortStack(err);
    if (stack) process.stderr.write(`${stack}\n`);
  }
  if (opts.json) process.stdout.write(errorJson(r) + '\n');
  return r.exitCode;
}
