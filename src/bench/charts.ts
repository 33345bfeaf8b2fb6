/**
 * report.html's charts: Vega-Lite specs (pure, one function each) rendered to inline SVG. Each
 * metric is drawn as its median with the bootstrap 95% interval; then pass timelines and the
 * success matrix.
 */

import type * as vl from 'vega-lite';
import { referenceResults, type Results } from './results.js';
import type { Cell, Estimate, Summary } from './summary.js';

const MiB = 2 ** 20;

export interface ChartSpec {
  title: string;
  spec: vl.TopLevelSpec;
}

/** One metric per workload and policy: a bar at the median, a rule over its 95% interval. */
export function metricChart(
  cells: Cell[],
  title: string,
  pick: (c: Cell) => Estimate,
  unit: string,
  scale = 1,
): ChartSpec {
  const values = cells
    .filter((c) => c.totalMs.n > 0)
    .map((c) => {
      const e = pick(c);
      // No interval (one run): the rule collapses onto the median.
      const lo = Number.isFinite(e.lo) ? e.lo : e.median;
      const hi = Number.isFinite(e.hi) ? e.hi : e.median;
      return {
        workload: c.workload,
        policy: c.policy,
        median: e.median / scale,
        lo: lo / scale,
        hi: hi / scale,
      };
    });
  const spec = {
    title: `${title} (${unit}), median and 95% interval`,
    data: { values },
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
            y: { field: 'lo', type: 'quantitative' },
            y2: { field: 'hi' },
          },
        },
      ],
    },
    resolve: { scale: { y: 'independent' } },
  } as vl.TopLevelSpec;
  return { title, spec };
}

/** Remaining bytes at each pass start over time, rep 1 of every matrix policy. */
export function passTimelineChart(results: Results): ChartSpec {
  const firstRuns = results.runs.filter((r) => r.role === 'matrix' && r.rep === 0);
  const values = firstRuns.flatMap((r) =>
    r.passTimeline.map((p) => ({
      workload: r.workload,
      policy: r.policy,
      t: p.startMs / 1000,
      remaining: p.remainingAtStartBytes / MiB,
    })),
  );
  const spec = {
    title: 'Remaining at each pass start vs time (rep 1)',
    data: { values },
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
  } as vl.TopLevelSpec;
  return { title: 'Pass timelines', spec };
}

/** Success rate per workload and row of the report, as a heat map with its percentages. */
export function successMatrixChart(sum: Summary): ChartSpec {
  const cell = { x: { field: 'workload', type: 'nominal' }, y: { field: 'policy', type: 'nominal' } };
  const rows = new Set(sum.cells.map((c) => c.policy)).size;
  const spec = {
    title: 'Success rate per workload and policy',
    data: {
      values: sum.cells.map((c) => ({ workload: c.workload, policy: c.policy, success: c.successRate })),
    },
    width: 60 * Math.max(1, sum.workloads.length),
    height: 22 * Math.max(1, rows),
    layer: [
      {
        mark: 'rect',
        encoding: {
          ...cell,
          color: {
            field: 'success',
            type: 'quantitative',
            scale: { domain: [0, 1], scheme: 'redyellowgreen' },
          },
        },
      },
      {
        mark: { type: 'text' },
        encoding: { ...cell, text: { field: 'success', type: 'quantitative', format: '.0%' } },
      },
    ],
  } as vl.TopLevelSpec;
  return { title: 'Success matrix', spec };
}

/** Every chart of report.html, in order. */
export function chartSpecs(results: Results, sum: Summary): ChartSpec[] {
  return [
    metricChart(sum.cells, 'Total time', (c) => c.totalMs, 's', 1000),
    metricChart(sum.cells, 'Guest total stall', (c) => c.stallMs, 'ms'),
    metricChart(sum.cells, 'QEMU downtime', (c) => c.qemuDowntimeMs, 'ms'),
    metricChart(sum.cells, 'Data sent', (c) => c.bytes, 'MiB', MiB),
    passTimelineChart(referenceResults(results)),
    successMatrixChart(sum),
  ];
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

/** The charts rendered to inline SVG. */
export async function charts(results: Results, sum: Summary): Promise<{ title: string; svg: string }[]> {
  return Promise.all(chartSpecs(results, sum).map(async (x) => ({ title: x.title, svg: await svg(x.spec) })));
}
