/**
 * The exit codes kvmigrate's commands end with: a stable contract for scripts and orchestrators
 * (documented in the README's table; every one is asserted by a test).
 */
export const EXIT = {
  /** The migration completed (or the command did what it was asked). */
  ok: 0,
  /** The migration failed or was cancelled; the source guest runs on, its memory intact. */
  migrationFailed: 1,
  /** Bad input or a setup problem found before anything was changed. */
  usage: 2,
  /** The guest runs on neither side, or the controller cannot tell which: the operator decides. */
  operatorNeeded: 3,
  /** A bug in kvmigrate (an error it did not expect). */
  internal: 4,
} as const;
export type ExitCode = (typeof EXIT)[keyof typeof EXIT];

/**
 * The root of every error whose message is written for the person at the keyboard: one line
 * saying what is wrong and what to do. The CLI prints `message` alone (stack traces only with
 * --debug); `code` is stable for machines (`--json` errors carry it) and `exitCode` follows it.
 */
export class KvmigrateError extends Error {
  readonly code: string = 'error';
  readonly exitCode: ExitCode = EXIT.migrationFailed;
  constructor(message: string) {
    super(message);
    this.name = new.target.name;
  }
}

/** Something about the lab (image build, VMs, link) cannot be done. */
export class LabError extends KvmigrateError {
  override readonly code: string = 'lab';
  override readonly exitCode: ExitCode = EXIT.usage;
}

/** The user's input is wrong: flags, workload strings, policy names or options, files. */
export class UsageError extends KvmigrateError {
  override readonly code: string = 'usage';
  override readonly exitCode: ExitCode = EXIT.usage;
}

/** A migration cannot start: wrong endpoints, mismatched VMs, a port in use. Nothing was changed. */
export class MigrationSetupError extends KvmigrateError {
  override readonly code: string = 'setup';
  override readonly exitCode: ExitCode = EXIT.usage;
}
