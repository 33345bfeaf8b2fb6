import { EXIT, KvmigrateError, type ExitCode } from '../util/errors.js';

/** Something libvirt refused or failed; `libvirtCode` is virErrorNumber when libvirt said it. */
export class LibvirtError extends KvmigrateError {
  override readonly code: string = 'libvirt';
  override readonly exitCode: ExitCode = EXIT.migrationFailed;
  constructor(
    message: string,
    readonly libvirtCode?: number,
  ) {
    super(oneLine(message));
  }
}

/** The daemon is not there: no socket, nobody listening, or the connection broke. */
export class LibvirtUnreachableError extends LibvirtError {
  override readonly code: string = 'libvirt-unreachable';
  override readonly exitCode: ExitCode = EXIT.usage;
}

/** No domain of that name on that daemon. */
export class UnknownDomainError extends LibvirtError {
  override readonly code: string = 'libvirt-unknown-domain';
  override readonly exitCode: ExitCode = EXIT.usage;
}

/** The domain has no migration job (for attach, and for actions that need one). */
export class NotMigratingError extends LibvirtError {
  override readonly code: string = 'libvirt-not-migrating';
  override readonly exitCode: ExitCode = EXIT.usage;
}

/** The destination is the source's own daemon (or a host with the same host UUID or name). */
export class SameHostError extends LibvirtError {
  override readonly code: string = 'libvirt-same-host';
  override readonly exitCode: ExitCode = EXIT.usage;
}

/** The caller gave a URI or option this driver cannot use. */
export class LibvirtUsageError extends LibvirtError {
  override readonly code: string = 'libvirt-usage';
  override readonly exitCode: ExitCode = EXIT.usage;
}

/** libvirt's messages can carry newlines (QEMU's stderr); users get one line. */
function oneLine(s: string): string {
  return s
    .replace(/\s*\n\s*/g, ' | ')
    .trim()
    .slice(0, 500);
}
