import { z } from 'zod';
import { CONTINUE, hasActed, type Action, type Policy } from './types.js';

export const NovaConfigSchema = z
  .object({
    /** [libvirt] live_migration_downtime, ms. */
    downtimeMs: z.coerce
      .number()
      .positive()
      .default(500)
      .describe('[libvirt] live_migration_downtime: the last downtime-limit step, ms.'),
    /** [libvirt] live_migration_downtime_steps. */
    steps: z.coerce
      .number()
      .int()
      .min(1)
      .default(10)
      .describe(
        '[libvirt] live_migration_downtime_steps: how many steps from downtimeMs/steps up to downtimeMs.',
      ),
    /** [libvirt] live_migration_downtime_delay, s per GiB. */
    delayS: z.coerce
      .number()
      .positive()
      .default(75)
      .describe('[libvirt] live_migration_downtime_delay: seconds per GiB of data between steps.'),
    /** [libvirt] live_migration_completion_timeout, s per GiB (0 = none). */
    completionTimeoutS: z.coerce
      .number()
      .min(0)
      .default(800)
      .describe(
        '[libvirt] live_migration_completion_timeout: seconds per GiB of data before timeoutAction (0 = none).',
      ),
    /** [libvirt] live_migration_timeout_action. */
    timeoutAction: z
      .enum(['abort', 'force_complete'])
      .default('abort')
      .describe(
        '[libvirt] live_migration_timeout_action: abort, or force_complete (post-copy if permitted, else pause).',
      ),
    /** Multiplies every time above, to run Nova's schedule faster in tests and benchmarks. */
    scale: z.coerce
      .number()
      .positive()
      .default(1)
      .describe("Multiplies every time above, to run Nova's schedule faster in tests and benchmarks."),
  })
  .strict();
type NovaConfig = z.infer<typeof NovaConfigSchema>;

/** Nova sizes its schedule by data_gb = max(2, RAM GiB) (plus block-migrated disks, none here). */
export function novaDataGb(ramBytes: number): number {
  return Math.max(2, ramBytes / 2 ** 30);
}

/**
 * Nova's (time, downtime) ladder, as `nova/virt/libvirt/migration.py: downtime_steps`:
 * delay = int(delayS × data_gb); base = downtime/steps; offset = (downtime − base)/steps;
 * step i at delay×i sets int(base + offset×i).
 */
export function novaDowntimeSteps(cfg: NovaConfig, ramBytes: number): { atMs: number; downtimeMs: number }[] {
  const delay = Math.trunc(cfg.delayS * novaDataGb(ramBytes));
  const base = cfg.downtimeMs / cfg.steps;
  const offset = (cfg.downtimeMs - base) / cfg.steps;
  return Array.from({ length: cfg.steps + 1 }, (_, i) => ({
    atMs: Math.trunc(delay * i) * 1000 * cfg.scale,
    downtimeMs: Math.trunc(base + offset * i),
  }));
}

/**
 * OpenStack Nova's libvirt live-migration monitor (`driver.py: _live_migration_monitor`):
 * raise downtime-limit along `downtime_steps`, and once the completion timeout
 * (completionTimeoutS × data_gb) passes, abort — or with timeoutAction=force_complete switch to
 * post-copy if permitted, else pause the guest (Nova resumes it if the migration then fails).
 * The timeout is not checked once in post-copy. Nova polls every 0.5 s; we follow the same
 * schedule at the controller's poll rate. **Post-copy loses the guest if the destination or the
 * link fails before it ends**; it is used only with --allow-postcopy.
 */
export const nova: Policy<NovaConfig> = {
  name: 'nova',
  summary: "OpenStack Nova's downtime steps (50 → 500 ms) and completion timeout (abort or force-complete)",
  configSchema: NovaConfigSchema,
  setup: (cfg, ctx) => ({
    downtimeLimitMs: Math.trunc(cfg.downtimeMs / cfg.steps),
    postcopy: cfg.timeoutAction === 'force_complete' && ctx.postcopyPermitted,
    autoConverge: false,
  }),
  decide(state, cfg): Action {
    if (state.status === 'postcopy-active' || hasActed(state, 'postcopy')) return CONTINUE;
    const timeoutMs = cfg.completionTimeoutS * novaDataGb(state.ramBytes) * 1000 * cfg.scale;
    if (timeoutMs > 0 && state.elapsedMs > timeoutMs && !hasActed(state, 'postcopy', 'pause', 'abort')) {
      const why = `nova: completion timeout ${(timeoutMs / 1000).toFixed(1)} s passed`;
      if (cfg.timeoutAction === 'abort') return { kind: 'abort', reason: `${why} → abort` };
      return state.postcopyPermitted
        ? { kind: 'postcopy', reason: `${why} → force complete: post-copy` }
        : { kind: 'pause', reason: `${why} → force complete: pause (post-copy not permitted)` };
    }
    const step = novaDowntimeSteps(cfg, state.ramBytes)
      .filter((s) => s.atMs <= state.elapsedMs)
      .at(-1);
    if (step && step.downtimeMs > state.downtimeLimitMs) {
      return {
        kind: 'setDowntimeLimit',
        downtimeLimitMs: step.downtimeMs,
        reason: `nova: downtime step at ${(step.atMs / 1000).toFixed(1)} s → ${step.downtimeMs} ms`,
      };
    }
    return CONTINUE;
  },
};
