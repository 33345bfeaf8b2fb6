import { writeFileSync } from 'node:fs';
import path from 'node:path';
import type * as vl from 'vega-lite';
import { csvLine } from './csv.js';
import type { Results, RunRecord } from './results.js';
import { quantile } from './stats.js';
import { stallOf, summarize, type Cell, type Ratios, type Summary } from './summary.js';
import { escapeHtml, toHtml, toMarkdown, type Block } from './tables.js';

const MiB = 2 ** 20;
const pct = (x: number) => (Number.isFinite(x) ? `${Math.round(x * 100)}%` : '–');
const rel = (x: number | undefined) =>
  x === undefined || !Number.isFinite(x)
    ? '–'
    : `${x >= 1 ? '+' : '−'}${Math.abs(Math.round((x - 1) * 100))}%`;
const s = (ms: number) => (Number.isFinite(ms) ? (ms / 1000).toFixed(2) : '–');
const range = (sp: { median: number; p10: number; p90: number }, f: (x: number) => string) =>
  Number.isFinite(sp.median) ? `${f(sp.median)} (${f(sp.p10)}–${f(sp.p90)})` : '–';
const ratios = (x: Ratios | undefined) => (x ? `${rel(x.total)} / ${rel(x.stall)} / ${rel(x.bytes)}` : '–');

/** What produced the results, in one line. */
function provenanceLine(results: Results): string {
  const p = results.provenance;
  if (!p) return 'Provenance: not recorded (results from before provenance was kept).';
  const tree =
    p.dirty === null
      ? 'tree state unknown'
      : p.dirty
        ? '**dirty tree** (uncommitted changes or several commits)'
        : 'clean tree';
  return `Provenance: commit \`${p.commit?.slice(0, 12) ?? 'unknown'}\`, ${tree}${p.commits.length > 1 ? `; runs from ${p.commits.length} commits` : ''}.`;
}

/** The report as blocks: report.md and report.html render the same ones. */
export function reportBlocks(results: Results, sum: Summary = summarize(results)): Block[] {
  const env = results.environment;
  const m = results.matrix;
  const budget = m.downtimeBudgetMs;
  const blocks: Block[] = [
    { kind: 'heading', level: 1, text: 'kvmigrate benchmark' },
    {
      kind: 'paragraph',
      text:
        `${m.ramMiB} MiB guest, ${m.link} link, downtime budget ${budget} ms, deadline ${m.deadlineS} s, ${m.reps} rep(s) per cell${m.postcopyPermitted ? ', post-copy permitted' : ''}. ` +
        `relaxed(L*): L* = ${results.relaxedLimitMs ?? '–'} ms. Medians with p10–p90 over successful runs.`,
    },
    {
      kind: 'paragraph',
      text:
        "**Downtime is the guest's total stall**, measured the same way for every policy, pre-copy or post-copy: over the migration window " +
        '(from `migrate` to completion plus a 500 ms settle), every heartbeat silence longer than two heartbeat periods, beyond one period, summed ' +
        "— timestamped on the host from both consoles. The longest single silence is shown beside it, and QEMU's own `downtime` (the stop-and-copy pause only). " +
        `Slowdown: workload progress per second during pre-copy ÷ before the migration (1 = unaffected). SLO success: success and total stall ≤ ${budget} ms.`,
    },
    {
      kind: 'paragraph',
      text: `Environment: ${env.qemu}; guest kernel ${env.kernelPackage}; host ${env.hostKernel}, ${env.cores} × ${env.cpu}; accel ${env.accel}; Node ${env.node}. Created ${results.createdAt}. ${provenanceLine(results)}`,
    },
  ];
  if (sum.legacyDowntime)
    blocks.push({
      kind: 'paragraph',
      text: 'Note: some runs carry no total stall (recorded before it existed, or simulated); for them the downtime figures are `guestDowntimeMs` as recorded, a different measure.',
    });
  const missing = sum.perPolicy.filter((p) => p.missing.length > 0);
  blocks.push(
    { kind: 'heading', level: 2, text: 'Success over the matrix' },
    {
      kind: 'table',
      table: {
        head: [
          'policy',
          'success',
          `SLO success (stall ≤ ${budget} ms)`,
          'total vs relaxed',
          'stall vs relaxed',
          'data vs relaxed',
        ],
        rows: sum.perPolicy.map((p) => [
          p.policy,
          pct(p.successRate),
          pct(p.sloRate),
          rel(p.geoVsRelaxed?.total),
          rel(p.geoVsRelaxed?.stall),
          rel(p.geoVsRelaxed?.bytes),
        ]),
      },
    },
    {
      kind: 'paragraph',
      text:
        `Ratios vs relaxed(L*): the geometric mean, over ${results.config ? 'the workload set fixed in the bench config before the run' : 'every workload of the run (no bench config recorded)'} (${sum.summary.workloads.join(', ')}), ` +
        "of each workload's median ratio; a policy without a ratio on one of them gets none." +
        (missing.length
          ? ` No ratio: ${missing.map((p) => `${p.policy} (${p.missing.join(', ')})`).join('; ')}.`
          : ''),
    },
  );
  for (const w of sum.workloads) {
    blocks.push(
      { kind: 'heading', level: 2, text: w },
      {
        kind: 'table',
        table: {
          head: [
            'policy', 'success', 'SLO success', 'total s', 'guest stall ms', 'longest silence ms', 'QEMU downtime ms',
            'slowdown', 'data MiB', 'vs relaxed (time/stall/data)', 'vs oracle (time/stall/data)',
          ], // prettier-ignore
          rows: sum.cells
            .filter((x) => x.workload === w)
            .map((c: Cell) => [
              c.policy,
              `${pct(c.successRate)} (${c.runs})`,
              pct(c.sloRate),
              range(c.totalMs, s),
              range(c.stallMs, (x) => x.toFixed(0)),
              range(c.longestSilenceMs, (x) => x.toFixed(0)),
              range(c.qemuDowntimeMs, (x) => x.toFixed(0)),
              range(c.slowdown, (x) => x.toFixed(2)),
              range(c.bytes, (x) => (x / MiB).toFixed(0)),
              ratios(c.vsRelaxed),
              ratios(c.vsOracle),
            ]),
        },
      },
    );
  }
  blocks.push(...predictionError(results));
  return blocks;
}

export function reportMarkdown(results: Results, sum: Summary = summarize(results)): string {
  return toMarkdown(reportBlocks(results, sum));
}

/** How far the policies' own predictions (adaptive) were from what happened: median |error| and bias. */
function predictionError(results: Results): Block[] {
  const runs = results.runs.filter((r) => r.success && r.predictedDowntimeMs !== null);
  if (runs.length === 0) return [];
  const err = (pred: number | null, actual: number | null) =>
    pred === null || actual === null || !(actual > 0) ? undefined : (pred - actual) / actual;
  const fmt = (xs: (number | undefined)[]) => {
    const v = xs.filter((x): x is number => x !== undefined);
    if (v.length === 0) return '–';
    const bias = quantile(v, 0.5);
    return `${Math.round(quantile(v.map(Math.abs), 0.5) * 100)}% (${bias >= 0 ? '+' : '−'}${Math.abs(Math.round(bias * 100))}%)`;
  };
  const keys = [...new Set(runs.map((r) => `${r.workload}\u0000${r.policy}`))];
  return [
    { kind: 'heading', level: 2, text: 'Prediction error' },
    {
      kind: 'paragraph',
      text: "Median |predicted − actual| ÷ actual, and in brackets the median signed error (+ = over-predicted), for the action each run took; downtime against the guest's total stall.",
    },
    {
      kind: 'table',
      table: {
        head: ['workload', 'policy', 'runs', 'downtime', 'total time', 'data'],
        align: ['left', 'left', 'right', 'right', 'right', 'right'],
        rows: keys.map((k) => {
          const [workload, policy] = k.split('\u0000') as [string, string];
          const rs = runs.filter((r) => r.workload === workload && r.policy === policy);
          return [
            workload,
            policy,
            String(rs.length),
            fmt(rs.map((r) => err(r.predictedDowntimeMs, stallOf(r)))),
            fmt(rs.map((r) => err(r.predictedTotalMs, r.totalTimeMs))),
            fmt(rs.map((r) => err(r.predictedBytes, r.transferredBytes))),
          ];
        }),
      },
    },
  ];
}

const CSV_COLUMNS: (keyof RunRecord)[] = [
  'key', 'workload', 'policy', 'rep', 'role', 'success', 'sloSuccess', 'outcome', 'totalTimeMs', 'wallMs',
  'totalStallMs', 'longestSilenceMs', 'slowdown', 'qemuDowntimeMs', 'guestDowntimeMs', 'transferredBytes',
  'linkBytes', 'passes', 'differingPages', 'guestCheckOk', 'controllerCpuPct', 'actionLatencyMs',
  'predictedDowntimeMs', 'commit', 'reason',
]; // prettier-ignore

/** One row per run; text a spreadsheet would run as a formula is neutralised (csv.ts). */
export function resultsCsv(results: Results): string {
  return (
    [csvLine(CSV_COLUMNS), ...results.runs.map((r) => csvLine(CSV_COLUMNS.map((c) => r[c])))].join('\n') +
    '\n'
  );
}

/**
 * Vega and Vega-Lite are loaded on first use: only report and bench draw charts, and the
 * controller's start-up should not pay for them.
 */
let renderer: Promise<[typeof import('vega'), typeof import('vega-lite')]> | undefined;

async function svg(spec: vl.TopLevelSpec): Promise<string> {
  renderer ??= Promise.all([import('vega'), import('vega-lite')]);
  const [vega, vegaLite] = await renderer;
  const view = new vega.View(vega.parse(vegaLite.compile(spec).spec), { renderer: 'none' });
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
    metric('Guest total stall', (c) => c.stallMs, 'ms'),
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

/** Self-contained: charts as inline SVG, tables as HTML tables, styles inline; nothing fetched. */
export async function reportHtml(results: Results, sum: Summary = summarize(results)): Promise<string> {
  const figures = await charts(results, sum);
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>kvmigrate benchmark</title>
<style>
body{font-family:system-ui,sans-serif;margin:2rem;max-width:1400px}
figure{margin:1.5rem 0}
table{border-collapse:collapse;margin:0.5rem 0 1.5rem;font-size:13px;display:block;max-width:100%;overflow-x:auto}
th,td{border:1px solid #ddd;padding:0.25rem 0.5rem;text-align:left;vertical-align:top}
thead th{background:#f3f3f3}
tbody th{font-weight:normal}
.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
code{background:#f6f6f6;padding:0 0.2rem}
</style>
</head><body>
${toHtml(reportBlocks(results, sum))}
<h2>Charts</h2>
${figures.map((f) => `<figure class="chart" data-title="${escapeHtml(f.title)}"><figcaption><b>${escapeHtml(f.title)}</b></figcaption>${f.svg}</figure>`).join('\n')}
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
