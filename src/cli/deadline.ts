import { formatRate } from './rate.js';

/** The overall deadline when nothing else is known or the guest is small, s. */
export const MIN_DEADLINE_S = 120;
/** Set-up, device state and the switchover, s: added to the transfer time. */
export const DEADLINE_BASE_S = 60;
/** The bulk pass sends RAM once; the deadline allows this many times that for the passes after it and the policy's action. */
export const DEADLINE_BULK_FACTOR = 3;
/** The rate assumed when neither --bandwidth nor QEMU's max-bandwidth says one (about QEMU's 128 MiB/s default cap). */
export const ASSUMED_BANDWIDTH_BPS = 1e9 / 8;
/** No migration deadline beyond a week: a bigger number is a typo. */
export const MAX_DEADLINE_S = 7 * 24 * 3600;

export interface DeadlineInput {
  /** `--deadline S`: wins over everything. */
  deadlineS?: number;
  /** `--completion-timeout-per-gib S` (KubeVirt's completionTimeoutPerGiB, Nova's live_migration_completion_timeout). */
  perGiBS?: number;
  /** Guest RAM, bytes (the source's `query-memory-size-summary` base-memory). */
  ramBytes: number;
  /** `--bandwidth`, else the source's `max-bandwidth`, bytes/s; undefined or 0 when unknown. */
  bandwidthBps?: number;
}

export interface Deadline {
  ms: number;
  /** How it was reached, for the progress output and the README's formula. */
  why: string;
}

/**
 * The migration's overall deadline:
 * - `--deadline S` → S;
 * - `--completion-timeout-per-gib P` → P × RAM in GiB;
 * - otherwise max(120 s, 60 s + 3 × RAM ÷ bandwidth), the bandwidth being --bandwidth, else the
 *   source's max-bandwidth, else 1 Gbit/s assumed.
 */
export function resolveDeadline(d: DeadlineInput): Deadline {
  const gib = d.ramBytes / 2 ** 30;
  const s = (x: number) => `${+x.toFixed(1)} s`;
  if (d.deadlineS !== undefined) return { ms: d.deadlineS * 1000, why: `${s(d.deadlineS)} (--deadline)` };
  if (d.perGiBS !== undefined) {
    const total = d.perGiBS * gib;
    return {
      ms: Math.min(total, MAX_DEADLINE_S) * 1000,
      why: `${s(total)} (${d.perGiBS} s/GiB × ${+gib.toFixed(2)} GiB)`,
    };
  }
  const known = d.bandwidthBps !== undefined && d.bandwidthBps > 0;
  const bps = known ? d.bandwidthBps! : ASSUMED_BANDWIDTH_BPS;
  const bulkS = d.ramBytes / bps;
  const scaled = DEADLINE_BASE_S + DEADLINE_BULK_FACTOR * bulkS;
  const total = Math.min(Math.max(MIN_DEADLINE_S, scaled), MAX_DEADLINE_S);
  return {
    ms: total * 1000,
    why: `${s(total)} (max(${MIN_DEADLINE_S} s, ${DEADLINE_BASE_S} s + ${DEADLINE_BULK_FACTOR} × ${+gib.toFixed(2)} GiB at ${formatRate(
      bps,
    )}${known ? '' : ', assumed'}))`,
  };
}
