import { Lab, migrateLab } from '../lab/lab.js';
import type { LinkSpec } from '../lab/link.js';
import type { WorkloadSpec } from '../lab/workload.js';
import { resolvePolicy } from '../policy/index.js';
import { quantile } from './stats.js';

export interface ControllerCost {
  runs: number;
  /** Forcing action (downtime-limit raised) → QEMU leaves `active`, ms. */
  latencyMs: { median: number; p95: number; max: number; samples: number[] };
  /** Controller CPU time ÷ wall time during each migration, % of one core. */
  cpuPct: { median: number; max: number };
}

/** Forces `runs` switchovers on a memory-intensive lab guest and measures what the controller costs. */
export async function measureControllerCost(opts: {
  runs: number;
  workload: WorkloadSpec;
  ramMiB: number;
  link: LinkSpec;
  log?: (line: string) => void;
}): Promise<ControllerCost> {
  const latencies: number[] = [];
  const cpu: number[] = [];
  for (let i = 0; i < opts.runs; i++) {
    const lab = await Lab.start({ workload: opts.workload, ramMiB: opts.ramMiB, link: opts.link });
    try {
      const r = await migrateLab(lab, {
        policy: resolvePolicy('switch-at-pass', { pass: 2 }),
        downtimeBudgetMs: 300,
        deadlineMs: 60_000,
      });
      if (r.migration.actionLatencyMs !== undefined) latencies.push(r.migration.actionLatencyMs);
      cpu.push(r.migration.controllerCpuPct);
      opts.log?.(
        `run ${i + 1}/${opts.runs}: ${r.migration.outcome}, latency ${r.migration.actionLatencyMs?.toFixed(1)} ms, controller CPU ${r.migration.controllerCpuPct.toFixed(2)}%`,
      );
    } finally {
      await lab.destroy();
    }
  }
  const l = [...latencies].sort((a, b) => a - b);
  const c = [...cpu].sort((a, b) => a - b);
  return {
    runs: opts.runs,
    latencyMs: { median: quantile(l, 0.5), p95: quantile(l, 0.95), max: l.at(-1) ?? NaN, samples: latencies },
    cpuPct: { median: quantile(c, 0.5), max: c.at(-1) ?? NaN },
  };
}
