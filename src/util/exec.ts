import { execFile } from 'node:child_process';
import { promisify } from 'node:util';

const execFileAsync = promisify(execFile);

export interface RunResult {
  stdout: string;
  stderr: string;
}

/** Runs a program to completion; on failure the error says which command and its stderr. */
export async function run(
  cmd: string,
  args: string[],
  opts: { cwd?: string; timeoutMs?: number } = {},
): Promise<RunResult> {
  try {
    const { stdout, stderr } = await execFileAsync(cmd, args, {
      cwd: opts.cwd,
      timeout: opts.timeoutMs ?? 120_000,
      maxBuffer: 64 << 20,
      encoding: 'utf8',
    });
    return { stdout, stderr };
  } catch (err) {
    const e = err as NodeJS.ErrnoException & { stderr?: string };
    if (e.code === 'ENOENT') throw new CommandNotFoundError(cmd);
    const detail = (e.stderr ?? '').trim().split('\n').slice(-3).join(' | ') || e.message;
    throw new CommandFailedError(cmd, args, detail);
  }
}

/** Runs a command and ignores its failure (for idempotent teardown steps). */
export async function runQuietly(cmd: string, args: string[]): Promise<boolean> {
  try {
    await run(cmd, args, { timeoutMs: 20_000 });
    return true;
  } catch {
    return false;
  }
}

export class CommandNotFoundError extends Error {
  constructor(readonly cmd: string) {
    super(`${cmd} is not installed`);
  }
}

export class CommandFailedError extends Error {
  constructor(
    readonly cmd: string,
    readonly args: string[],
    readonly detail: string,
  ) {
    super(`${cmd} ${args.join(' ')} failed: ${detail}`);
  }
}
