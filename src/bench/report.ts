import { writeFileSync } from 'node:fs';
import path from 'node:path';
import * as vega from 'vega';
import * as vl from 'vega-lite';
import type { Results, RunRecord } from './results.js';
import { quantile } from './stats.js';
import { summarize, type Cell, type Summary } from './summary.js';

const MiB = 2 ** 20;
const pct = (x: number) => (Number.isFinite(x) ? `${Math.round(x * 100)}%` : '–');
const rel = (x: number | undefined) =>
  x === undefined || !Number.isFinite(x)
    ? '–'
    : `${x >= 1 ? '+' : '−'}${Math.abs(Math.round((x - 1) * 100))}%`;
const s = (ms: number) => (Number.isFinite(ms) ? (ms / 1000).toFixed(2) : '–');
const range = (sp: { median: number; p10: number; p90: number }, f: (x: number) => string) =>
  Number.isFinite(sp.median) ? `${f(sp.median)} (${f(sp.p10)}–${f(sp.p90)})` : '–';

export function reportMarkdown(results: Results, sum: Summary = summarize(results)): string {
  const env = results.environment;
  const m = results.matrix;
  const lines = [
    '# kvmigrate benchmark',
    '',
    `${m.ramMiB} MiB guest, ${m.link} link, downtime budget ${m.downtimeBudgetMs} ms, deadline ${m.deadlineS} s, ${m.reps} rep(s) per cell${m.postcopyPermitted ? ', post-copy permitted' : ''}. ` +
      `relaxed(L*): L* = ${results.relaxedLimitMs ?? '–'} ms. Medians with p10–p90 over successful runs; downtime is what the guest felt (heartbeat gap). ` +
      `Ratios: median against relaxed(L*) and against the oracle on the same workload.`,
    '',
    `Environment: ${env.qemu}; guest kernel ${env.kernelPackage}; host ${env.hostKernel}, ${env.cores} × ${env.cpu}; accel ${env.accel}; Node ${env.node}. Created ${results.createdAt}.`,
    '',
    '## Success over the matrix',
    '',
    '| policy | success | SLO success | total vs relaxed | downtime vs relaxed | data vs relaxed |',
    '|---|---:|---:|---:|---:|---:|',
    ...sum.perPolicy.map(
      (p) =>
        `| ${p.policy} | ${pct(p.successRate)} | ${pct(p.sloRate)} | ${rel(p.geoVsRelaxed?.total)} | ${rel(p.geoVsRelaxed?.downtime)} | ${rel(p.geoVsRelaxed?.bytes)} |`,
    ),
    '',
    `Ratios vs relaxed are geometric means over the memory-intensive workloads (where stock failed): ${sum.memoryIntensive.join(', ') || 'none'}.`,
    '',
  ];
  for (const w of sum.workloads) {
    lines.push(
      `## ${w}`,
      '',
      '| policy | success | total s | guest downtime ms | QEMU downtime ms | data MiB | vs relaxed (time/down/data) | vs oracle (time/down/data) |',
      '|---|---:|---:|---:|---:|---:|---:|---:|',
    );
    for (const c of sum.cells.filter((x) => x.workload === w)) {
      const r = (x: Cell['vsRelaxed']) =>
        x ? `${rel(x.total)} / ${rel(x.downtime)} / ${rel(x.bytes)}` : '–';
      lines.push(
        `| ${c.policy} | ${pct(c.successRate)} (${c.runs}) | ${range(c.totalMs, s)} | ${range(c.guestDowntimeMs, (x) => x.toFixed(0))} | ${range(c.qemuDowntimeMs, (x) => x.toFixed(0))} | ${range(c.bytes, (x) => (x / MiB).toFixed(0))} | ${r(c.vsRelaxed)} | ${r(c.vsOracle)} |`,
      );
    }
    lines.push('');
  }
  lines.push(...predictionError(results));
  return lines.join('\n');
}

/** How far the policies' own predictions (adaptive) were from what happened: median |error| and bias. */
function predictionError(results: Results): string[] {
  const runs = results.runs.filter((r) => r.success && r.predictedDowntimeMs !== null);
  if (runs.length === 0) return [];
  const err = (pred: number | null, actual: number | null) =>
    pred === null || actual === null || actual <= 0 ? undefined : (pred - actual) / actual;
  const fmt = (xs: (number | undefined)[]) => {
    const v = xs.filter((x): x is number => x !== undefined);
    if (v.length === 0) return '–';
    const bias = quantile(v, 0.5);
    return `${Math.round(quantile(v.map(Math.abs), 0.5) * 100)}% (${bias >= 0 ? '+' : '−'}${Math.abs(Math.round(bias * 100))}%)`;
  };
  const lines = [
    '## Prediction error',
    '',
    'Median |predicted − actual| ÷ actual, and in brackets the median signed error (+ = over-predicted), for the action each run took; downtime against the guest-felt gap.',
    '',
    '| workload | policy | runs | downtime | total time | data |',
    '|---|---|---:|---:|---:|---:|',
  ];
  const keys = [...new Set(runs.map((r) => `${r.workload}\u0000${r.policy}`))];
  for (const k of keys) {
    const [workload, policy] = k.split('\u0000') as [string, string];
    const rs = runs.filter((r) => r.workload === workload && r.policy === policy);
    lines.push(
      `| ${workload} | ${policy} | ${rs.length} | ${fmt(rs.map((r) => err(r.predictedDowntimeMs, r.guestDowntimeMs)))} | ${fmt(rs.map((r) => err(r.predictedTotalMs, r.totalTimeMs)))} | ${fmt(rs.map((r) => err(r.predictedBytes, r.transferredBytes)))} |`,
    );
  }
  lines.push('');
  return lines;
}

const CSV_COLUMNS: (keyof RunRecord)[] = [
  'key', 'workload', 'policy', 'rep', 'role', 'success', 'sloSuccess', 'outcome', 'totalTimeMs', 'wallMs',
  'qemuDowntimeMs', 'guestDowntimeMs', 'transferredBytes', 'linkBytes', 'passes', 'differingPages', 'guestCheckOk',
  'controllerCpuPct', 'actionLatencyMs', 'predictedDowntimeMs', 'reason',
]; // prettier-ignore

export function resultsCsv(results: Results): string {
  const esc = (v: unknown) => {
    const t = v === null || v === undefined ? '' : String(v);
    return /[",\n]/.test(t) ? `"${t.replace(/"/g, '""')}"` : t;
  };
  return (
    [CSV_COLUMNS.join(','), ...results.runs.map((r) => CSV_COLUMNS.map((c) => esc(r[c])).join(','))].join(
      '\n',
    ) + '\n'
  );
}

async function svg(spec: vl.TopLevelSpec): Promise<string> {
  const view = new vega.View(vega.parse(vl.compile(spec).spec), { renderer: 'none' });
  const out = await view.toSVG();
  view.finalize();
  return out;
}

/** Charts (Vega-Lite rendered to inline SVG): each metric with its p10–p90 spread, pass timelines, success matrix. */
async function charts(results: Results, sum: Summary): Promise<{ title: string; svg: string }[]> {
  const cells = sum.cells.filter((c) => c.totalMs.n > 0);
  const metric = (
    title: string,
    pick: (c: Cell) => { median: number; p10: number; p90: number },
    unit: string,
    scale = 1,
  ) => ({
    title,
    spec: {
      title: `${title} (${unit}), median and p10–p90`,
      data: {
        values: cells.map((c) => ({
          workload: c.workload,
          policy: c.policy,
          median: pick(c).median / scale,
          p10: pick(c).p10 / scale,
          p90: pick(c).p90 / scale,
        })),
      },
      facet: { column: { field: 'workload', type: 'nominal', title: null } },
      spec: {
        width: 180,
        height: 160,
        layer: [
          {
            mark: 'bar',
            encoding: {
              x: { field: 'policy', type: 'nominal', axis: { labelAngle: -40 }, title: null },
              y: { field: 'median', type: 'quantitative', title: unit },
              color: { field: 'policy', type: 'nominal', legend: null },
            },
          },
          {
            mark: { type: 'rule', color: 'black' },
            encoding: {
              x: { field: 'policy', type: 'nominal' },
              y: { field: 'p10', type: 'quantitative' },
              y2: { field: 'p90' },
            },
          },
        ],
      },
      resolve: { scale: { y: 'independent' } },
    } as vl.TopLevelSpec,
  });
  const specs = [
    metric('Total time', (c) => c.totalMs, 's', 1000),
    metric('Guest-observed downtime', (c) => c.guestDowntimeMs, 'ms'),
    metric('QEMU downtime', (c) => c.qemuDowntimeMs, 'ms'),
    metric('Data sent', (c) => c.bytes, 'MiB', MiB),
  ];
  const firstRuns = results.runs.filter((r) => r.role === 'matrix' && r.rep === 0);
  specs.push({
    title: 'Pass timelines',
    spec: {
      title: 'Remaining at each pass start vs time (rep 1)',
      data: {
        values: firstRuns.flatMap((r) =>
          r.passTimeline.map((p) => ({
            workload: r.workload,
            policy: r.policy,
            t: p.startMs / 1000,
            remaining: p.remainingAtStartBytes / MiB,
          })),
        ),
      },
      facet: { column: { field: 'workload', type: 'nominal', title: null } },
      spec: {
        width: 220,
        height: 160,
        mark: { type: 'line', point: true },
        encoding: {
          x: { field: 't', type: 'quantitative', title: 's since migrate' },
          y: { field: 'remaining', type: 'quantitative', title: 'MiB to send' },
          color: { field: 'policy', type: 'nominal' },
        },
      },
      resolve: { scale: { x: 'independent' } },
    } as vl.TopLevelSpec,
  });
  specs.push({
    title: 'Success matrix',
    spec: {
      title: 'Success rate per workload and policy',
      data: {
        values: sum.cells.map((c) => ({ workload: c.workload, policy: c.policy, success: c.successRate })),
      },
      width: 60 * Math.max(1, sum.workloads.length),
      height: 22 * Math.max(1, sum.policies.length + 1),
      layer: [
        {
          mark: 'rect',
          encoding: {
            x: { field: 'workload', type: 'nominal' },
            y: { field: 'policy', type: 'nominal' },
            color: {
              field: 'success',
              type: 'quantitative',
              scale: { domain: [0, 1], scheme: 'redyellowgreen' },
            },
          },
        },
        {
          mark: { type: 'text' },
          encoding: {
            x: { field: 'workload', type: 'nominal' },
            y: { field: 'policy', type: 'nominal' },
            text: { field: 'success', type: 'quantitative', format: '.0%' },
          },
        },
      ],
    } as vl.TopLevelSpec,
  });
  return Promise.all(specs.map(async (x) => ({ title: x.title, svg: await svg(x.spec) })));
}

export async function reportHtml(results: Results, sum: Summary = summarize(results)): Promise<string> {
  const md = reportMarkdown(results, sum);
  const figures = await charts(results, sum);
  const escape = (t: string) => t.replace(/&/g, '&amp;').replace(/</g, '&lt;');
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>kvmigrate benchmark</title>
<style>body{font-family:system-ui,sans-serif;margin:2rem;max-width:1400px}figure{margin:1.5rem 0}pre{background:#f6f6f6;padding:1rem;overflow:auto;font-size:12px}</style>
</head><body>
<h1>kvmigrate benchmark</h1>
${figures.map((f) => `<figure class="chart" data-title="${f.title}"><figcaption><b>${f.title}</b></figcaption>${f.svg}</figure>`).join('\n')}
<h2>Tables</h2>
<pre>${escape(md)}</pre>
</body></html>
`;
}

/** Writes results.csv, report.md and report.html next to results.json. */
export async function writeReports(results: Results, dir: string): Promise<void> {
  const sum = summarize(results);
  writeFileSync(path.join(dir, 'results.csv'), resultsCsv(results));
  writeFileSync(path.join(dir, 'report.md'), reportMarkdown(results, sum));
  writeFileSync(path.join(dir, 'report.html'), await reportHtml(results, sum));
}
