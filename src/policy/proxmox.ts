import { z } from 'zod';
import { flag } from './config.js';
import {
  CONTINUE,
  MAX_DOWNTIME_LIMIT_MS,
  type Action,
  type ControllerState,
  type Policy,
  type PolicySetup,
} from './types.js';

const PAGE_BYTES = 4096;

export const ProxmoxConfigSchema = z
  .object({
    downtimeMs: z.coerce
      .number()
      .positive()
      .default(100)
      .describe('migrate_downtime (qm.conf, default 0.1 s): the starting downtime-limit, ms.'),
    pollMs: z.coerce
      .number()
      .positive()
      .default(1000)
      .describe('How often Proxmox polls query-migrate at first (usleep 1 s), ms.'),
    fastPollMs: z.coerce
      .number()
      .positive()
      .default(100)
      .describe(
        'Its poll interval once remaining < the average bytes sent per poll (usleep 100 ms, never undone), ms.',
      ),
    increaseAfter: z.coerce
      .number()
      .int()
      .min(0)
      .default(5)
      .describe(
        'The downtime-limit doubles when the counter of polls where remaining grew or was 0 exceeds this.',
      ),
    autoConverge: flag
      .default(true)
      .describe("Turn QEMU's auto-converge on, with QEMU's throttle defaults (Proxmox always does)."),
    xbzrle: flag
      .default(true)
      .describe(
        'Turn xbzrle on with a cache of 10% of RAM rounded up to a power of two (Proxmox always does).',
      ),
  })
  .strict();
export type ProxmoxConfig = z.infer<typeof ProxmoxConfigSchema>;

/** Proxmox's xbzrle cache: 10% of RAM rounded up to a power of two (also adaptive's `xbzrle` option). */
export const PROXMOX_XBZRLE: NonNullable<PolicySetup['xbzrle']> = {
  cacheRamShare: 0.1,
  roundUpToPowerOf2: true,
};

/** `xbzrle-cache-size` for a setup's `xbzrle` and the guest's RAM (Proxmox: 10%, rounded up to 2^k). */
export function xbzrleCacheBytes(spec: NonNullable<PolicySetup['xbzrle']>, ramBytes: number): number {
  const bytes = Math.trunc(ramBytes * spec.cacheRamShare);
  if (!spec.roundUpToPowerOf2) return bytes;
  // qemu-server `round_powerof2`: the smallest power of two ≥ bytes (1 below 2).
  let p = 1;
  while (p < bytes) p *= 2;
  return p;
}

/** A stretch of time over which QEMU's `ram.remaining` and `ram.transferred` move linearly. */
interface Segment {
  startMs: number;
  endMs: number;
  remStart: number;
  remEnd: number;
  txStart: number;
  txEnd: number;
}

/**
 * QEMU's `ram.remaining` and `ram.transferred` over time, rebuilt from the pass records: within a
 * pass `remaining` falls from what the pass had to send as pages go out (it only grows at a bitmap
 * sync); the pass under way runs from the last sync to now.
 */
function timeline(state: ControllerState): Segment[] {
  const segs: Segment[] = [];
  let tx = 0;
  for (const p of state.passes) {
    const cleared = (p.normalPages + p.zeroPages) * PAGE_BYTES;
    segs.push({
      startMs: p.startMs,
      endMs: p.endMs,
      remStart: p.remainingAtStartBytes,
      remEnd: Math.max(0, p.remainingAtStartBytes - cleared),
      txStart: tx,
      txEnd: tx + p.bytesSent,
    });
    tx += p.bytesSent;
  }
  const last = state.passes.at(-1);
  const start = last?.endMs ?? 0;
  if (state.elapsedMs >= start) {
    segs.push({
      startMs: start,
      endMs: state.elapsedMs,
      remStart: last ? last.dirtyAtEndBytes : state.ramBytes,
      remEnd: state.remainingBytes,
      txStart: tx,
      txEnd: Math.max(tx, state.transferredBytes),
    });
  }
  return segs;
}

/** One Proxmox poll as replayed: when, what it saw, and the counter after it. */
export interface ProxmoxPoll {
  atMs: number;
  remainingBytes: number;
  counter: number;
  /** The downtime-limit this poll set (a doubling), if any. */
  increasedTo?: number;
}

/**
 * Replays qemu-server's phase-2 polling loop (`src/PVE/QemuMigrate.pm`) over the migration so far:
 * a poll every `pollMs` (every `fastPollMs` once `remaining` < the bytes transferred so far ÷ the
 * poll count); on polls where `transferred` moved, the counter rises when `remaining` grew since
 * the last such poll or is 0, and once it exceeds `increaseAfter` it is reset and the downtime-limit
 * doubles (capped at QEMU's 2,000,000 ms). Stateless: everything comes from the pass records.
 */
export function replayProxmox(
  state: ControllerState,
  cfg: ProxmoxConfig,
): { downtimeMs: number; polls: ProxmoxPoll[] } {
  const segs = timeline(state);
  let k = 0;
  const at = (t: number) => {
    while (k + 1 < segs.length && segs[k + 1]!.startMs <= t) k++;
    const s = segs[k];
    if (!s || t < s.startMs) return { rem: state.ramBytes, tx: 0 };
    const f = s.endMs > s.startMs ? Math.min(1, (t - s.startMs) / (s.endMs - s.startMs)) : 1;
    return {
      rem: Math.round(s.remStart + (s.remEnd - s.remStart) * f),
      tx: Math.round(s.txStart + (s.txEnd - s.txStart) * f),
    };
  };
  const polls: ProxmoxPoll[] = [];
  let downtimeMs = Math.min(cfg.downtimeMs, MAX_DOWNTIME_LIMIT_MS);
  let sleepMs = cfg.pollMs;
  let lastTx = 0;
  let lastRem: number | undefined;
  let counter = 0;
  let t = 0;
  for (let i = 1; ; i++) {
    const avg = lastTx ? lastTx / i : 0;
    t += sleepMs;
    if (t > state.elapsedMs) break;
    const { rem, tx } = at(t);
    if (tx !== lastTx) {
      if (avg && rem < avg) sleepMs = cfg.fastPollMs;
      if ((lastRem && rem > lastRem) || rem === 0) counter++;
      lastRem = rem;
      const poll: ProxmoxPoll = { atMs: t, remainingBytes: rem, counter };
      if (counter > cfg.increaseAfter) {
        counter = 0;
        poll.counter = 0;
        if (downtimeMs < MAX_DOWNTIME_LIMIT_MS) downtimeMs = Math.min(downtimeMs * 2, MAX_DOWNTIME_LIMIT_MS);
        poll.increasedTo = downtimeMs;
      }
      polls.push(poll);
    }
    lastTx = tx;
  }
  return { downtimeMs, polls };
}

/**
 * Proxmox VE's live migration (proxmox/qemu-server `src/PVE/QemuMigrate.pm` at e6352be67f70,
 * `phase2`; the same loop in the older `PVE/QemuMigrate.pm`, e.g. at 7bd23e21d65b, lines 1319–1465,
 * before the tree moved to `src/`). Setup: every capability off except `auto-converge` and `xbzrle`
 * (`src/PVE/QemuMigrate/Helpers.pm` `set_migration_caps`, lines 116–145), so no post-copy;
 * downtime-limit = `migrate_downtime` (default 0.1 s, `src/PVE/QemuServer.pm` lines 566–575;
 * QemuMigrate.pm lines 1373–1379); `xbzrle-cache-size` = 10% of RAM rounded up to a power of two
 * (lines 1381–1387, `round_powerof2` lines 1918–1921). Loop (lines 1440–1576): sleep 1 s, then
 * `query-migrate`; once `remaining` < transferred-so-far ÷ poll count, sleep 100 ms instead (line
 * 1525, never undone); on polls where `transferred` moved, a counter rises when `remaining` grew
 * since the previous such poll or is 0 (lines 1563–1566) — it is never lowered by progress — and
 * when it exceeds 5 it is reset and the downtime-limit doubles (lines 1568–1571,
 * `increase_migrate_downtime` lines 1190–1211). No completion timeout, no post-copy, no abort: only
 * the controller's deadline stops it. Differences from the survey in policies.md: the doubling is
 * capped at QEMU's maximum (2,000,000 ms) since qemu-server a2cfc88a (Nov 2025, "fix #7044";
 * uncapped before, QEMU refused the value); the counter counts polls, not passes. The policy is
 * called on every controller poll and replays Proxmox's polls from the pass records
 * (`replayProxmox`), so it is stateless; query latency, the extra second Proxmox sleeps in `setup`,
 * and `max-bandwidth` (Proxmox lifts it to 16 GiB/s without a limit; the controller never raises
 * the operator's cap) are not modelled.
 */
export const proxmox: Policy<ProxmoxConfig> = {
  name: 'proxmox',
  summary:
    'Proxmox VE: 100 ms limit doubled after > 5 polls where remaining grew; auto-converge + xbzrle; never aborts',
  configSchema: ProxmoxConfigSchema,
  setup: (cfg) => ({
    downtimeLimitMs: Math.min(cfg.downtimeMs, MAX_DOWNTIME_LIMIT_MS),
    postcopy: false,
    autoConverge: cfg.autoConverge,
    ...(cfg.xbzrle ? { xbzrle: PROXMOX_XBZRLE } : {}),
  }),
  decide(state, cfg): Action {
    if (state.status !== 'active') return CONTINUE;
    const { downtimeMs, polls } = replayProxmox(state, cfg);
    if (downtimeMs <= state.downtimeLimitMs) return CONTINUE;
    const last = polls.findLast((p) => p.increasedTo !== undefined);
    const when = last ? ` at ${(last.atMs / 1000).toFixed(1)} s` : '';
    return {
      kind: 'setDowntimeLimit',
      downtimeLimitMs: downtimeMs,
      reason: `proxmox: remaining grew or was 0 on ${cfg.increaseAfter + 1} polls${when} → downtime-limit doubled to ${downtimeMs} ms`,
    };
  },
};
