import { readFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { hostRequests } from '../lab/app-latency.js';
import { Lab, migrateLab } from '../lab/lab.js';
import type { LinkSpec } from '../lab/link.js';
import type { Heartbeat } from '../lab/serial.js';
import { sampleWorkingSet } from '../migration/working-set-sampler.js';
import { adaptive } from '../policy/adaptive.js';
import { resolvePolicy } from '../policy/index.js';
import type { QmpClient } from '../qmp/index.js';
import { LabError } from '../util/errors.js';
import type { LabWorkloadSpec } from '../util/specs.js';
import { quantile } from './stats.js';

// What adaptive's own calc-dirty-rate sampling (migration/working-set-sampler.ts) costs the guest
// and the migration, measured on real lab guests: docs/sampling-cost.md, scripts/sampling-cost.mts.

/** The windows adaptive samples (its setup's `workingSetWindowsMs`). */
export const ADAPTIVE_WINDOWS_MS: number[] = adaptive.setup(adaptive.configSchema.parse({}), {
  downtimeBudgetMs: 300,
  postcopyPermitted: false,
}).workingSetWindowsMs!;

/** The guest's pace over one interval of host time, from its heartbeats (and app requests). */
export interface PaceStats {
  ms: number;
  beatsPerSec: number;
  /** Gaps between consecutive heartbeats within the interval, ms (the guest beats every 50 ms). */
  gapP50Ms: number;
  gapP99Ms: number;
  gapMaxMs: number;
  /** The workload's page writes per second (synthetic guests), from the heartbeats' counters. */
  writesPerSec: number | null;
  /** A real application's completed requests per second, and their latency on the host's clock. */
  appPerSec: number | null;
  appP99Ms: number | null;
}

/** Heartbeat rate, gap distribution and progress over [from, to] (host ms). Pure. */
export function paceOver(
  beats: readonly Heartbeat[],
  from: number,
  to: number,
  requests: readonly { endAt: number; latMs: number }[] = [],
): PaceStats {
  const inside = beats.filter((b) => b.at >= from && b.at <= to);
  const gaps: number[] = [];
  for (let i = 1; i < inside.length; i++) gaps.push(inside[i]!.at - inside[i - 1]!.at);
  gaps.sort((a, b) => a - b);
  const seconds = (to - from) / 1000;
  const first = inside.find((b) => b.writes !== undefined);
  const last = inside.findLast((b) => b.writes !== undefined);
  const writesPerSec =
    first && last && last.at > first.at
      ? ((last.writes! - first.writes!) * 1000) / (last.at - first.at)
      : null;
  const reqs = requests.filter((r) => r.endAt >= from && r.endAt <= to);
  const lat = reqs.map((r) => r.latMs).sort((a, b) => a - b);
  return {
    ms: to - from,
    beatsPerSec: inside.length / seconds,
    gapP50Ms: gaps.length ? quantile(gaps, 0.5) : NaN,
    gapP99Ms: gaps.length ? quantile(gaps, 0.99) : NaN,
    gapMaxMs: gaps.at(-1) ?? NaN,
    writesPerSec,
    appPerSec: requests.length ? reqs.length / seconds : null,
    appP99Ms: lat.length ? quantile(lat, 0.99) : null,
  };
}

/** One block of the idle measurement: the guest runs, no migration, sampler on or off. */
export interface IdleBlock extends PaceStats {
  workload: string;
  labId: string;
  sampler: boolean;
  /** calc-dirty-rate samples taken within the block. */
  samples: number;
  /** QMP commands the sampler issued, and their round trips (the monitor's answer time), ms. */
  qmpCommands: number;
  qmpP50Ms: number | null;
  qmpMaxMs: number | null;
  /** The source QEMU's CPU time ÷ wall time over the block, % of one core (all its threads). */
  qemuCpuPct: number;
}

/** One migration under adaptive with its sampler on or off. */
export interface MigrationRun {
  workload: string;
  /** The emulated link (lab.info.link), e.g. `1gbit`. */
  link: string;
  labId: string;
  sampler: boolean;
  outcome: string;
  success: boolean;
  totalTimeMs: number;
  transferredBytes: number;
  totalStallMs: number | null;
  longestSilenceMs: number | null;
  slowdown: number | null;
  samples: number;
  passes: number;
  /** What adaptive did (its first forcing action). */
  action: string;
  appP99Ms: number | null;
  appThroughputRatio: number | null;
}

/** Reads a process's user+system CPU time, ms. */
function cpuMs(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  // utime and stime are fields 14 and 15 of stat; here counted from field 3 (state).
  return ((Number(fields[11]) + Number(fields[12])) * 1000) / 100;
}

/** A QMP client whose `execute` round trips are timed (the sampler calls nothing else). */
function timedQmp(qmp: QmpClient, into: number[]): QmpClient {
  return new Proxy(qmp, {
    get(target, prop, receiver) {
      if (prop !== 'execute') return Reflect.get(target, prop, receiver) as unknown;
      return async (...args: Parameters<QmpClient['execute']>) => {
        const t0 = performance.now();
        try {
          return await target.execute(...args);
        } finally {
          into.push(performance.now() - t0);
        }
      };
    },
  });
}

/** Waits until QEMU is not measuring a dirty rate (a window the sampler left running). */
async function dirtyRateIdle(qmp: QmpClient): Promise<void> {
  for (let i = 0; i < 100; i++) {
    const r = await qmp.execute<{ status: string }>('query-dirty-rate');
    if (r.status !== 'measuring') return;
    await sleep(50);
  }
}

/**
 * Runs the guest without a migration in `blocks` pairs of blocks of `blockMs`, the sampler loop
 * (adaptive's windows) running in one of each pair and not in the other, the order alternating.
 */
export async function idleBlocks(
  lab: Lab,
  opts: { blocks: number; blockMs: number; onFirst: boolean; windowsMs?: number[] },
): Promise<IdleBlock[]> {
  const out: IdleBlock[] = [];
  const qmp = lab.source.qmp;
  for (let i = 0; i < 2 * opts.blocks; i++) {
    const on = (i % 2 === 0) === opts.onFirst;
    const rtts: number[] = [];
    let samples = 0;
    let stopped = false;
    await dirtyRateIdle(qmp);
    const from = performance.now();
    const cpu0 = cpuMs(lab.source.pid);
    const loop = on
      ? sampleWorkingSet({
          qmp: () => timedQmp(qmp, rtts),
          windowsMs: opts.windowsMs ?? ADAPTIVE_WINDOWS_MS,
          ramBytes: lab.info.ramMiB * 2 ** 20,
          nowMs: () => performance.now() - from,
          stopped: () => stopped,
          onSample: () => samples++,
        })
      : Promise.resolve();
    await sleep(opts.blockMs);
    const to = performance.now();
    const cpu1 = cpuMs(lab.source.pid);
    stopped = true;
    await loop;
    const requests = hostRequests([lab.sourceConsole.app]);
    const sorted = [...rtts].sort((a, b) => a - b);
    out.push({
      workload: lab.info.workload,
      labId: lab.info.id,
      sampler: on,
      samples,
      qmpCommands: rtts.length,
      qmpP50Ms: sorted.length ? quantile(sorted, 0.5) : null,
      qmpMaxMs: sorted.at(-1) ?? null,
      qemuCpuPct: ((cpu1 - cpu0) / (to - from)) * 100,
      ...paceOver(lab.sourceConsole.heartbeats, from, to, requests),
    });
  }
  return out;
}

/** No sampling this long before `migrate`: longer than the app-latency baseline (5 s). */
export const PRE_MIGRATION_QUIET_MS = 5500;

/** Migrates the lab's guest under adaptive, its working-set sampler on (as shipped) or off. */
export async function adaptiveRun(
  lab: Lab,
  opts: { sampler: boolean; downtimeBudgetMs: number; deadlineMs: number },
): Promise<MigrationRun> {
  // A window left running (idle blocks) would make the session's first calc-dirty-rate fail; and
  // the baselines the migration's slowdown and app throughput are measured against (2 s and 5 s
  // before `migrate`) must not see the sampler either way.
  await dirtyRateIdle(lab.source.qmp);
  await sleep(PRE_MIGRATION_QUIET_MS);
  const r = await migrateLab(lab, {
    policy: resolvePolicy('adaptive'),
    downtimeBudgetMs: opts.downtimeBudgetMs,
    deadlineMs: opts.deadlineMs,
    // Off: no windows, so no calc-dirty-rate at all; adaptive then decides as on a QEMU without
    // millisecond windows (from passes only). Its decision rules are untouched.
    ...(opts.sampler ? {} : { workingSetWindowsMs: [] }),
  });
  const m = r.migration;
  const forcing = m.decisions.find((d) => d.action.kind !== 'continue');
  return {
    workload: lab.info.workload,
    link: lab.info.link,
    labId: lab.info.id,
    sampler: opts.sampler,
    outcome: m.outcome,
    success: r.success,
    totalTimeMs: m.totalTimeMs,
    transferredBytes: m.transferredBytes,
    totalStallMs: r.guestStall?.totalStallMs ?? null,
    longestSilenceMs: r.guestStall?.longestSilenceMs ?? null,
    slowdown: r.guestStall?.slowdown ?? null,
    samples: m.workingSetSamples?.length ?? 0,
    passes: m.passes.length,
    action: forcing ? `${forcing.action.kind} at pass ${forcing.pass}` : 'none',
    appP99Ms: r.appLatency?.p99Ms ?? null,
    appThroughputRatio: r.appLatency?.throughputRatio ?? null,
  };
}

/** Median and range of the finite values. */
export function summary(values: (number | null)[]): { median: number; min: number; max: number; n: number } {
  const v = values.filter((x): x is number => x !== null && Number.isFinite(x)).sort((a, b) => a - b);
  return { median: v.length ? quantile(v, 0.5) : NaN, min: v[0] ?? NaN, max: v.at(-1) ?? NaN, n: v.length };
}

/** One table row: "median [min–max]" with `digits`. */
export function cell(values: (number | null)[], digits = 1, scale = 1): string {
  const s = summary(values.map((x) => (x === null ? null : x * scale)));
  if (!s.n) return '–';
  return `${s.median.toFixed(digits)} [${s.min.toFixed(digits)}–${s.max.toFixed(digits)}]`;
}

/** An on block and the off block next to it in the same lab (blocks alternate). */
export function pairs(idle: IdleBlock[]): { on: IdleBlock; off: IdleBlock }[] {
  const out: { on: IdleBlock; off: IdleBlock }[] = [];
  for (let i = 0; i + 1 < idle.length; i += 2) {
    const [a, b] = [idle[i]!, idle[i + 1]!];
    if (a.labId !== b.labId || a.sampler === b.sampler) continue;
    out.push(a.sampler ? { on: a, off: b } : { on: b, off: a });
  }
  return out;
}

/**
 * Per metric, over the adjacent on/off pairs: the median of on ÷ off and in how many pairs on was
 * higher. Pairs share the lab and the minute, so the host's load cancels better than across labs.
 */
export function pairedTable(idle: IdleBlock[]): string {
  const metrics: [string, (b: IdleBlock) => number | null][] = [
    ['heartbeats/s', (b) => b.beatsPerSec],
    ['heartbeat gap p99', (b) => b.gapP99Ms],
    ['heartbeat gap max', (b) => b.gapMaxMs],
    ['page writes/s', (b) => b.writesPerSec],
    ['app requests/s', (b) => b.appPerSec],
    ['app latency p99', (b) => b.appP99Ms],
    ['QEMU CPU', (b) => b.qemuCpuPct],
  ];
  const lines = [
    '| workload | metric | pairs | on ÷ off, median [min–max] | on higher in |',
    '| --- | --- | --: | --: | --: |',
  ];
  const all = pairs(idle);
  for (const w of [...new Set(all.map((p) => p.on.workload))])
    for (const [name, f] of metrics) {
      const ratios = all
        .filter((p) => p.on.workload === w)
        .map((p) => [f(p.on), f(p.off)] as const)
        .filter(([a, b]) => a !== null && b !== null && Number.isFinite(a) && Number.isFinite(b) && b > 0)
        .map(([a, b]) => a! / b!);
      if (!ratios.length) continue;
      lines.push(
        `| ${w} | ${name} | ${ratios.length} | ${cell(ratios, 2)} | ${ratios.filter((r) => r > 1).length}/${ratios.length} |`,
      );
    }
  return lines.join('\n');
}

/** The markdown tables of a run: idle blocks and migrations, sampler on vs off, per workload. */
export function samplingTables(idle: IdleBlock[], runs: MigrationRun[]): string {
  const lines: string[] = [];
  const workloads = [...new Set([...idle.map((b) => b.workload), ...runs.map((r) => r.workload)])];
  lines.push(
    '| workload | sampler | blocks | beats/s | gap p50 ms | gap p99 ms | gap max ms | writes/s (k) | app req/s | app p99 ms | QEMU CPU % | QMP ms (max) |',
    '| --- | --- | --: | --: | --: | --: | --: | --: | --: | --: | --: | --: |',
  );
  for (const w of workloads)
    for (const on of [false, true]) {
      const b = idle.filter((x) => x.workload === w && x.sampler === on);
      if (!b.length) continue;
      const col = (f: (x: IdleBlock) => number | null, d = 1, s = 1) => cell(b.map(f), d, s);
      lines.push(
        `| ${w} | ${on ? 'on' : 'off'} | ${b.length} | ${col((x) => x.beatsPerSec)} | ${col((x) => x.gapP50Ms)} | ${col((x) => x.gapP99Ms)} | ${col((x) => x.gapMaxMs, 0)} | ${col((x) => x.writesPerSec, 1, 1e-3)} | ${col((x) => x.appPerSec, 0)} | ${col((x) => x.appP99Ms, 2)} | ${col((x) => x.qemuCpuPct, 0)} | ${on ? col((x) => x.qmpMaxMs, 1) : '–'} |`,
      );
    }
  lines.push('', pairedTable(idle));
  lines.push(
    '',
    '| workload | link | sampler | runs | ok | total stall s | longest silence s | slowdown | total s | data MiB | samples | actions | app p99 ms |',
    '| --- | --- | --- | --: | --: | --: | --: | --: | --: | --: | --: | --- | --: |',
  );
  for (const w of workloads)
    for (const link of [...new Set(runs.map((x) => x.link))])
      for (const on of [false, true]) {
        const r = runs.filter((x) => x.workload === w && x.link === link && x.sampler === on);
        if (!r.length) continue;
        const col = (f: (x: MigrationRun) => number | null, d = 2, s = 1) => cell(r.map(f), d, s);
        const actions = [...new Set(r.map((x) => x.action))].join('; ');
        lines.push(
          `| ${w} | ${link} | ${on ? 'on' : 'off'} | ${r.length} | ${r.filter((x) => x.success).length} | ${col((x) => x.totalStallMs, 2, 1e-3)} | ${col((x) => x.longestSilenceMs, 2, 1e-3)} | ${col((x) => x.slowdown)} | ${col((x) => x.totalTimeMs, 1, 1e-3)} | ${col((x) => x.transferredBytes, 0, 2 ** -20)} | ${col((x) => x.samples, 0)} | ${actions} | ${col((x) => x.appP99Ms, 0)} |`,
        );
      }
  return lines.join('\n');
}

/** A lab, booted again once if its QEMU died while booting (seen on the loaded 2-core host). */
async function startLab(o: Parameters<typeof Lab.start>[0]): Promise<Lab> {
  try {
    return await Lab.start(o);
  } catch (err) {
    if (!(err instanceof LabError)) throw err;
    o.log?.(`lab did not boot (${err.message}): once more`);
    return Lab.start(o);
  }
}

/**
 * The whole measurement: per rep and workload, two labs (sampler on, sampler off, the order
 * alternating); each first runs the idle blocks, then migrates under adaptive.
 */
export async function measureSamplingCost(opts: {
  workloads: LabWorkloadSpec[];
  reps: number;
  ramMiB: number;
  link: LinkSpec;
  blocks: number;
  blockMs: number;
  deadlineMs: (w: LabWorkloadSpec) => number;
  onIdle: (b: IdleBlock[]) => void;
  onRun: (r: MigrationRun) => void;
  log: (line: string) => void;
}): Promise<void> {
  for (let rep = 0; rep < opts.reps; rep++)
    for (const [wi, workload] of opts.workloads.entries()) {
      const order = (rep + wi) % 2 === 0 ? [true, false] : [false, true];
      for (const sampler of order) {
        const lab = await startLab({ workload, ramMiB: opts.ramMiB, link: opts.link, log: opts.log });
        try {
          const idle = await idleBlocks(lab, {
            blocks: opts.blocks,
            blockMs: opts.blockMs,
            onFirst: !sampler,
          });
          opts.onIdle(idle);
          const run = await adaptiveRun(lab, {
            sampler,
            downtimeBudgetMs: 300,
            deadlineMs: opts.deadlineMs(workload),
          });
          opts.onRun(run);
          opts.log(
            `rep ${rep + 1} ${lab.info.workload} sampler ${sampler ? 'on' : 'off'}: ${run.outcome}, stall ${run.totalStallMs?.toFixed(0)} ms, total ${(run.totalTimeMs / 1000).toFixed(1)} s, ${run.action}, ${run.samples} samples`,
          );
        } finally {
          await lab.destroy();
        }
      }
    }
}
