import { spawn, spawnSync } from 'node:child_process';

/** What a kvmigrate process printed and how it exited (stderr trimmed by the sync runner). */
export interface CliRun {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs `kvmigrate ARGS` (the built CLI) to its end. */
export function kvmigrateSync(
  args: string[],
  o: { env?: Record<string, string>; timeoutMs?: number } = {},
): CliRun {
  const r = spawnSync(process.execPath, ['bin/kvmigrate.js', ...args], {
    encoding: 'utf8',
    env: { ...process.env, ...o.env },
    timeout: o.timeoutMs ?? 120_000,
  });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr.trim() };
}

/**
 * Starts `kvmigrate ARGS`; with `interruptWhen`, sends SIGINT `afterMs` after stderr first matches
 * it. `exited` says whether it was interrupted.
 */
export function kvmigrateChild(args: string[], o: { interruptWhen?: RegExp; afterMs?: number } = {}) {
  const child = spawn(process.execPath, ['bin/kvmigrate.js', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  let interrupted = false;
  child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr.on('data', (d: Buffer) => {
    stderr += d.toString();
    if (o.interruptWhen?.test(stderr) && !interrupted) {
      interrupted = true;
      setTimeout(() => child.kill('SIGINT'), o.afterMs ?? 0);
    }
  });
  const exited = new Promise<CliRun & { interrupted: boolean }>((r) =>
    child.once('exit', (code) => r({ code, stdout, stderr, interrupted })),
  );
  return { child, exited };
}
