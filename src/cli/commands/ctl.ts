import type { Command } from 'commander';
import type { ControlRequest, ControlResponse } from '../../core/schema.js';
import { controlRequest } from '../../migration/control-socket.js';
import { EXIT, KvmigrateError, UsageError, type ExitCode } from '../../util/errors.js';

const OPS = ['status', 'force-complete', 'postcopy', 'abort', 'set-downtime'] as const;

/** The control socket named is not there, or nothing listens on it: bad input (2). */
export class ControlSocketError extends KvmigrateError {
  override readonly code: string = 'control-socket';
  override readonly exitCode: ExitCode = EXIT.usage;
}

/** `ctl OP [MS]` as a request; anything else is a usage error. */
export function controlRequestFrom(op: string, arg: string | undefined): ControlRequest {
  if (!(OPS as readonly string[]).includes(op))
    throw new UsageError(`unknown ctl request '${op}': choose from ${OPS.join(', ')}`);
  if (op === 'set-downtime') {
    const ms = Number(arg);
    if (arg === undefined || !/^\d+$/.test(arg) || ms < 1 || ms > 2_000_000)
      throw new UsageError('set-downtime needs MS, a whole number of milliseconds from 1 to 2000000');
    return { op: 'set-downtime', ms };
  }
  if (arg !== undefined) throw new UsageError(`${op} takes no argument (got '${arg}')`);
  return { op } as ControlRequest;
}

function describe(r: ControlResponse): string {
  const s = r.status;
  if (!s) return r.detail;
  const mib = (b: number | undefined) => (b === undefined ? '?' : `${(b / 2 ** 20).toFixed(0)} MiB`);
  return (
    `${r.detail}\n` +
    `status ${s.status}, pass ${s.pass}, ${(s.elapsedMs / 1000).toFixed(1)} s, remaining ${mib(s.remainingBytes)}, ` +
    `sent ${mib(s.transferredBytes)}, downtime-limit ${s.downtimeLimitMs} ms${s.postcopy ? ', post-copy' : ''}` +
    (s.lastDecision
      ? `\nlast decision (pass ${s.lastDecision.pass}): ${s.lastDecision.action.kind} — ${s.lastDecision.action.reason}`
      : '')
  );
}

export function register(program: Command): void {
  program
    .command('ctl')
    .description(
      'act on a running kvmigrate migrate through its control socket: status, force-complete, postcopy, abort, set-downtime MS',
    )
    .argument('<socket>', 'the control socket kvmigrate migrate printed at start')
    .argument('<request>', OPS.join('|'))
    .argument('[ms]', 'for set-downtime: the new downtime-limit, ms')
    .option('--json', 'print the response as JSON')
    .option('--timeout <s>', 'wait this long for the answer', '30')
    .addHelpText(
      'after',
      '\nExit codes: 0 accepted, 1 refused (e.g. abort during post-copy, post-copy not permitted), 2 bad input or no controller on SOCKET.',
    )
    .action(async (socket: string, op: string, arg: string | undefined, o) => {
      const req = controlRequestFrom(op, arg);
      const timeoutS = Number(o.timeout);
      if (!(timeoutS > 0)) throw new UsageError(`--timeout ${o.timeout}: give seconds, e.g. 30`);
      let r: ControlResponse;
      try {
        r = await controlRequest(socket, req, timeoutS * 1000);
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code;
        if (code === 'ENOENT' || code === 'ECONNREFUSED' || code === 'ENOTSOCK')
          throw new ControlSocketError(
            `no kvmigrate migrate listens on ${socket} (${code}): it printed its control socket on stderr at start`,
          );
        throw new ControlSocketError(`control socket ${socket}: ${(err as Error).message}`);
      }
      process.stdout.write((o.json ? JSON.stringify(r) : describe(r)) + '\n');
      process.exitCode = r.error === 'bad-request' ? EXIT.usage : r.accepted ? EXIT.ok : EXIT.migrationFailed;
    });
}
