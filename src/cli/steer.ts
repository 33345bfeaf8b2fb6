import type { Command } from 'commander';
import type { Decision } from '../core/controller.js';
import { resultExitCode, type MigrationResult, type Progress, type RunEvent } from '../core/result.js';
import { ControlServer, type ControlTarget } from '../migration/control-socket.js';
import { outcomeSummary } from './format.js';
import { interruptSignal, progressReporter } from './progress.js';
import { regionOptions, type RegionPlan } from './region-sources.js';
import type { RunOutputs } from './run-outputs.js';

/**
 * What every command that steers a live migration shares around its session — QMP (`migrate`)
 * or libvirt (`migrate --libvirt`, `attach`): progress, the control socket, the `--events` and
 * `--metrics` outputs, the result on stdout and the exit code.
 */

/** `--control-socket`/`--no-control-socket` and the region flags. */
export function steerOptions(cmd: Command): Command {
  return regionOptions(
    cmd
      .option(
        '--control-socket <path>',
        'listen for kvmigrate ctl here (default $XDG_RUNTIME_DIR/kvmigrate/PID.sock, /run/kvmigrate/ or TMPDIR)',
      )
      .option('--no-control-socket', 'no control socket'),
  );
}

export interface SteerValues {
  controlSocket?: string | false;
  json?: boolean;
  quiet?: boolean;
}

/** What a session takes from the command: interruption, progress, the run's events, "started". */
export interface SteerHooks {
  signal: AbortSignal;
  onProgress: (p: Progress) => void;
  onDecision: (d: Decision) => void;
  onEvent: (e: RunEvent) => void;
  onStarted: () => void;
}

/** A running migration a command steers: MigrationSession or LibvirtSession. */
export interface Steerable extends ControlTarget {
  run(): Promise<MigrationResult>;
}

/** Says on stderr where the metrics are served and where the region sets come from. */
export function announce(o: SteerValues, outputs: RunOutputs, regions?: RegionPlan): void {
  if (o.quiet) return;
  if (outputs.metricsUrl) process.stderr.write(`kvmigrate: metrics on ${outputs.metricsUrl}\n`);
  if (regions) process.stderr.write(`kvmigrate: ${regions.note}\n`);
}

/**
 * Runs a session made by `make` with the command's hooks: the control socket (unless
 * --no-control-socket) is said once the migration started; the result goes to stdout (as the
 * last line of `--events -` instead, when the events own stdout) and sets the exit code.
 */
export async function steer(
  o: SteerValues,
  outputs: RunOutputs,
  preamble: string[],
  make: (hooks: SteerHooks) => Steerable,
): Promise<MigrationResult> {
  let control: ControlServer | undefined;
  let said: (() => void) | undefined;
  try {
    const progress = progressReporter(Boolean(o.quiet || o.json), preamble);
    const session = make({
      signal: interruptSignal(),
      ...progress,
      onEvent: outputs.onEvent,
      // Said once the migration started, so a refusal before it stays the only line on stderr.
      onStarted: () => said?.(),
    });
    if (o.controlSocket !== false) ({ control, said } = await openControl(session, o, outputs));
    const result = await session.run();
    progress.done();
    if (!o.json && !o.quiet) process.stderr.write(outcomeSummary(result));
    if (outputs.eventsError) process.stderr.write(`kvmigrate: --events stopped: ${outputs.eventsError}\n`);
    // With --events -, stdout is the event stream and the result its last line.
    if (!outputs.eventsOnStdout)
      process.stdout.write(JSON.stringify(result, null, o.json ? 2 : undefined) + '\n');
    process.exitCode = resultExitCode(result);
    return result;
  } finally {
    await control?.close();
  }
}

async function openControl(target: ControlTarget, o: SteerValues, outputs: RunOutputs) {
  const control = await ControlServer.listen(target, o.controlSocket || undefined);
  outputs.listen(control.observe);
  const said = () => {
    if (!o.quiet)
      process.stderr.write(
        `kvmigrate: control socket ${control.path} (kvmigrate ctl ${control.path} status|force-complete|postcopy|abort|set-downtime MS)\n`,
      );
  };
  return { control, said };
}
