import { readFileSync } from 'node:fs';
import path from 'node:path';
import { z } from 'zod';
import { LibvirtError, LibvirtUsageError } from './errors.js';
import { ERR } from './protocol.js';

export const DomainName = z
  .string()
  .min(1)
  .max(200)
  .regex(/^[^/\0\n]+$/, 'a domain name has no slash or newline');
/** libvirt takes max downtime in ms as a uint64; QEMU caps downtime-limit at 2,000,000 ms. */
export const DowntimeMs = z.number().int().min(1).max(2_000_000);
/**
 * libvirt's max speed is MiB/s, up to its "unlimited" (INT64_MAX bytes/s in MiB/s), which is what
 * a domain has until someone sets a cap: putting it back must be possible.
 */
export const UNLIMITED_SPEED_MIBPS = 8_796_093_022_207;
export const SpeedMiBps = z.number().int().min(1).max(UNLIMITED_SPEED_MIBPS);
/** The post-copy phase's limit may also be 0: QEMU's default max-postcopy-bandwidth, "no limit of its own". */
export const PostcopySpeedMiBps = z.number().int().min(0).max(UNLIMITED_SPEED_MIBPS);
/** A domain's memory as virDomainGetInfo says it (KiB): at most 16 TiB. */
export const MemoryKiB = z
  .number()
  .int()
  .min(1)
  .max(2 ** 34);
export const StateReply = z.object({
  state: z.number().int().min(0).max(7),
  reason: z.number().int().min(0),
});
const PidText = z
  .string()
  .trim()
  .regex(/^\d{1,9}$/)
  .transform(Number);

/** Checks what the caller passed; a bad value is a one-line usage error naming what it is. */
export function input<T>(schema: z.ZodType<T>, value: unknown, what: string): T {
  const r = schema.safeParse(value);
  if (!r.success)
    throw new LibvirtUsageError(`bad ${what} ${JSON.stringify(value)}: ${r.error.issues[0]?.message}`);
  return r.data;
}

/** Decodes a reply; anything unexpected in it (XDR or schema) is libvirt's fault, said in one line. */
export function reply<T>(what: string, decode: () => T): T {
  try {
    return decode();
  } catch (err) {
    const detail =
      err instanceof z.ZodError ? (err.issues[0]?.message ?? 'unexpected value') : (err as Error).message;
    throw new LibvirtError(`libvirt sent ${what} this driver cannot read: ${detail}`);
  }
}

/** libvirt's answers to an action that needs a migration job when there is none (all VIR_ERR_OPERATION_INVALID). */
export function isNoJob(err: LibvirtError): boolean {
  return (
    err.libvirtCode === ERR.operationInvalid &&
    /not being migrated|no job|not active|not in progress|no migration|while outgoing migration is in progress/i.test(
      err.message,
    )
  );
}

/**
 * The PID of a domain's QEMU from the pidfile libvirt keeps beside its socket (/run/libvirt/
 * qemu/NAME.pid, or a lab daemon's bind-mounted copy), checked against /proc: it must be a QEMU
 * started for that domain (`-name guest=NAME,…`).
 */
export function readQemuPidfile(socketPath: string, name: string): number {
  const file = path.join(path.dirname(socketPath), 'qemu', `${name}.pid`);
  let pid: number;
  try {
    pid = PidText.parse(readFileSync(file, 'utf8').slice(0, 32));
  } catch {
    throw new LibvirtError(`domain '${name}' has no QEMU process on this host (no pidfile ${file})`);
  }
  let argv: string[] = [];
  try {
    argv = readFileSync(`/proc/${pid}/cmdline`, 'utf8').slice(0, 65536).split('\0');
  } catch {
    /* gone: caught below */
  }
  if (!/qemu-system/.test(argv[0] ?? '') || !argv.some((a) => a.startsWith(`guest=${name},`))) {
    throw new LibvirtError(`pidfile ${file} names PID ${pid}, which is not domain '${name}''s QEMU`);
  }
  return pid;
}
