import { writeFileAtomic } from '../util/fs.js';
import path from 'node:path';
import { charts } from './charts.js';
import { csvLine } from './csv.js';
import { OBJECTIVES, type Objective } from './oracle.js';
import { driverBlocks } from './drivers.js';
import { driverOf, driversOf, verificationOf, type Results, type RunRecord } from './results.js';
import { quantile, verdictOf, type Interval } from './stats.js';
import { stallOf, summarize, type Cell, type Estimate, type Summary } from './summary.js';
import { escapeHtml, toHtml, toMarkdown, type Block } from './tables.js';
import { vsBaselines } from './vs-baselines.js';

const MiB = 2 ** 20;
const pct = (x: number) => (Number.isFinite(x) ? `${Math.round(x * 100)}%` : '–');
/** A ratio as a change: 0.71 → −29%. */
export const rel = (x: number | undefined) =>
  x === undefined || Number.isNaN(x)
    ? '–'
    : !Number.isFinite(x)
      ? '+∞'
      : `${x >= 1 ? '+' : '−'}${Math.abs(Math.round((x - 1) * 100))}%`;
const s = (ms: number) => (Number.isFinite(ms) ? (ms / 1000).toFixed(2) : '–');
const ms0 = (x: number) => x.toFixed(0);

/** A median with its 95% interval: `12.34 [11.90–13.02]`; one run: the median alone. */
export function est(e: Estimate, f: (x: number) => string): string {
  if (!Number.isFinite(e.median)) return '–';
  return Number.isNaN(e.lo) ? f(e.median) : `${f(e.median)} [${f(e.lo)}–${f(e.hi)}]`;
}

/**
 * A ratio with its 95% interval: `−29% [−40%, −10%]`; an interval that contains 1 reads as a tie
 * (`tie −5% [−20%, +12%]`); without an interval (too few runs) the estimate alone, marked `?`.
 */
export function ratioText(r: Interval | undefined): string {
  if (!r || Number.isNaN(r.estimate)) return '–';
  const v = verdictOf(r);
  if (v === 'unknown') return `${rel(r.estimate)} ?`;
  return `${v === 'tie' ? 'tie ' : ''}${rel(r.estimate)} [${rel(r.lo)}, ${rel(r.hi)}]`;
}

const OBJECTIVE_NAME: Record<Objective, string> = { stall: 'stall', total: 'time', bytes: 'data' };

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

/** Title, setup, how downtime and intervals are measured, environment and provenance. */
function introBlocks(results: Results, sum: Summary): Block[] {
  const env = results.environment;
  const m = results.matrix;
  const budget = m.downtimeBudgetMs;
  const blocks: Block[] = [
    { kind: 'heading', level: 1, text: 'kvmigrate benchmark' },
    {
      kind: 'paragraph',
      text:
        `${m.ramMiB} MiB guest, ${m.link} link, downtime budget ${budget} ms, deadline ${m.deadlineS} s, ${m.reps} rep(s) per cell${m.postcopyPermitted ? ', post-copy permitted' : ''}. ` +
        `relaxed(L*): L* = ${results.relaxedLimitMs ?? '–'} ms${sum.relaxed ? ` (${sum.relaxed})` : ''}. ` +
        'Medians over successful runs with bootstrap 95% intervals in brackets (2000 seeded resamples: the same results give the same intervals). ' +
        'Ratios are medians over medians with an interval from resampling both sides; **an interval that contains 1 is a tie** and reads `tie`; `?` marks a ratio without an interval (under 2 successful runs a side). ' +
        'With few reps a percentile bootstrap is narrow (never wider than the runs themselves): read a near-tie as a tie. ' +
        (results.config?.ladder
          ? 'Every policy, ladder rung and oracle candidate runs on every rep, interleaved and rotated from rep to rep; a re-run replaces whole reps.'
          : 'These runs predate the fair schedule (every policy, rung and candidate on every rep, rotated): the ladder and the oracle ran once each.'),
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
  return blocks;
}

/** The headline: success, SLO success and geometric means vs relaxed(L*) per policy. */
function headlineBlocks(results: Results, sum: Summary): Block[] {
  const budget = results.matrix.downtimeBudgetMs;
  const missing = sum.perPolicy.filter((p) => p.missing.length > 0);
  return [
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
          ratioText(p.geoVsRelaxed?.total),
          ratioText(p.geoVsRelaxed?.stall),
          ratioText(p.geoVsRelaxed?.bytes),
        ]),
      },
    },
    {
      kind: 'paragraph',
      text:
        `Ratios vs relaxed(L*): the geometric mean, over ${results.config ? 'the workload set fixed in the bench config before the run' : 'every workload of the run (no bench config recorded)'} (${sum.summary.workloads.join(', ')}), ` +
        "of each workload's median ratio, with a 95% interval from resampling every cell; a policy without a ratio on one of them gets none." +
        (missing.length
          ? ` No ratio: ${missing.map((p) => `${p.policy} (${p.missing.join(', ')})`).join('; ')}.`
          : ''),
    },
  ];
}

/**
 * Against the strongest baseline (issue 17): only in results that ran production rules. Ratios of
 * our policies' medians to the strongest baseline's on each workload, and their geometric mean.
 */
function vsBaselineBlocks(results: Results, sum: Summary): Block[] {
  const v = vsBaselines(results, sum);
  if (!v) return [];
  const stallText = (ms: number | undefined) => (ms === undefined ? '–' : `${ms0(ms)} ms`);
  return [
    { kind: 'heading', level: 2, text: 'Against the strongest baseline' },
    {
      kind: 'paragraph',
      text: "Per workload, the strongest baseline is the one with the lowest median guest stall among relaxed(L*) and the production rules that completed every run (fixed by rule before looking at our policies); each of ours is compared with it on the same runs' medians, 95% intervals by resampling. ×slowdown is the guest's progress during pre-copy relative to before (×1.00 = unaffected): a rule that throttles the vCPUs buys its short stall with it.",
    },
    {
      kind: 'table',
      table: {
        head: [
          'workload',
          'strongest baseline',
          'its stall',
          'every baseline: success, median stall, ×slowdown',
        ],
        align: ['left', 'left', 'right', 'left'],
        rows: v.strongest.map((b) => [
          b.workload,
          b.policy ?? 'none completed every run',
          stallText(b.stallMs),
          b.candidates
            .map(
              (c) =>
                `${c.policy} ${pct(c.successRate)} ${Number.isFinite(c.stallMs) ? `${ms0(c.stallMs)} ms` : '–'}` +
                (Number.isFinite(c.slowdown) ? ` ×${c.slowdown.toFixed(2)}` : ''),
            )
            .join('; '),
        ]),
      },
    },
    {
      kind: 'table',
      table: {
        head: ['policy', 'workload', 'stall vs strongest', 'time vs strongest', 'data vs strongest'],
        align: ['left', 'left', 'right', 'right', 'right'],
        rows: [
          ...v.perWorkload.map((r) => [
            r.policy,
            r.workload,
            ratioText(r.ratios?.stall),
            ratioText(r.ratios?.total),
            ratioText(r.ratios?.bytes),
          ]),
          ...v.geo.map((g) => [
            g.policy,
            g.missing.length ? `geometric mean (none: ${g.missing.join(', ')})` : 'geometric mean',
            ratioText(g.ratios?.stall),
            ratioText(g.ratios?.total),
            ratioText(g.ratios?.bytes),
          ]),
        ],
      },
    },
  ];
}

const verifiedText = (c: Cell) =>
  [
    c.verified['byte-for-byte'] ? `${c.verified['byte-for-byte']} byte-for-byte` : '',
    c.verified['guest-check-only'] ? `${c.verified['guest-check-only']} guest check only` : '',
    c.verified.none ? `${c.verified.none} none` : '',
  ]
    .filter(Boolean)
    .join(', ') || '–';

/** One workload: its figures per row, then its ratios to relaxed(L*) and to each objective's oracle. */
function workloadBlocks(w: string, sum: Summary): Block[] {
  const cells = sum.cells.filter((x) => x.workload === w);
  const figures = cells.map((c) => [
    c.policy,
    `${pct(c.successRate)} (${c.runs})`,
    pct(c.sloRate),
    verifiedText(c),
    est(c.totalMs, s),
    est(c.stallMs, ms0),
    est(c.longestSilenceMs, ms0),
    est(c.qemuDowntimeMs, ms0),
    est(c.slowdown, (x) => x.toFixed(2)),
    est(c.bytes, (x) => (x / MiB).toFixed(0)),
  ]);
  const ratios = cells.map((c) => [
    c.policy,
    ...OBJECTIVES.map((o) => ratioText(c.vsRelaxed?.[o])),
    ...OBJECTIVES.map((o) => ratioText(c.vsOracle?.[o])),
  ]);
  return [
    { kind: 'heading', level: 2, text: w },
    {
      kind: 'table',
      table: {
        head: [
          'policy', 'success', 'SLO success', 'verified', 'total s', 'guest stall ms', 'longest silence ms',
          'QEMU downtime ms', 'slowdown', 'data MiB',
        ], // prettier-ignore
        rows: figures,
      },
    },
    {
      kind: 'table',
      table: {
        head: [
          'policy',
          ...OBJECTIVES.map((o) => `${OBJECTIVE_NAME[o]} vs relaxed`),
          ...OBJECTIVES.map((o) => `${OBJECTIVE_NAME[o]} vs oracle(${o})`),
        ],
        rows: ratios,
      },
    },
  ];
}

/** Which candidate each objective's oracle chose, on which reps, and what it is reported on. */
function oracleBlocks(sum: Summary): Block[] {
  const rows = sum.workloads.flatMap((w) =>
    OBJECTIVES.flatMap((o) => {
      const c = sum.oracle[w]?.[o];
      return c
        ? [
            [
              w,
              o,
              c.policy,
              c.selectReps.map((r) => r + 1).join(', '),
              c.reportReps.map((r) => r + 1).join(', '),
            ],
          ]
        : [];
    }),
  );
  const intro: Block = {
    kind: 'paragraph',
    text:
      'The oracle is the best fixed choice in hindsight, per workload and objective, among every candidate run on every rep: ' +
      '"let QEMU converge" with each ladder rung (relaxed(L)), switch over after pass k (switch-at-pass(k+1)) and, when post-copy is permitted, post-copy after pass k. ' +
      'It is chosen on the odd-numbered reps (1, 3, …) and reported on the even-numbered ones (2, 4, …), which it never saw; ratios vs the oracle compare both on those reps only.',
  };
  if (rows.length === 0)
    return [
      { kind: 'heading', level: 2, text: 'Oracle' },
      { ...intro, text: `${intro.text} No oracle here: it needs candidates run on at least 2 reps.` },
    ];
  return [
    { kind: 'heading', level: 2, text: 'Oracle' },
    intro,
    {
      kind: 'table',
      table: {
        head: ['workload', 'objective', 'chosen', 'chosen on reps', 'reported on reps'],
        align: ['left', 'left', 'left', 'right', 'right'],
        rows,
      },
    },
  ];
}

/** How the runs were verified: byte for byte, the guest's own check only (post-copy), or not at all. */
function verificationBlocks(results: Results): Block[] {
  const count = (k: string, ok?: boolean) =>
    results.runs.filter((r) => verificationOf(r) === k && (ok === undefined || r.success === ok)).length;
  return [
    { kind: 'heading', level: 2, text: 'Verification' },
    {
      kind: 'paragraph',
      text:
        `Of ${results.runs.length} runs: ${count('byte-for-byte')} verified **byte for byte** (destination RAM compared with the source's at the switch, then the guest's own integrity check; ${count('byte-for-byte', true)} passed), ` +
        `${count('guest-check-only')} by the **guest's own check only** (post-copy: the destination ran before completion, so RAM cannot be compared at one instant; ${count('guest-check-only', true)} passed), ` +
        `${count('none')} **not verified** (the migration did not complete; the source ran on).`,
    },
  ];
}

/**
 * The README's headline for one results set: what ran, the success/SLO/ratio table and how the
 * ratios are formed — computed from results.json alone, so a test can recompute it.
 */
export function headlineMarkdown(results: Results, sum: Summary = summarize(results)): string {
  const m = results.matrix;
  const p = results.provenance;
  const setup =
    `${m.ramMiB} MiB guest, ${m.link} link, ${m.downtimeBudgetMs} ms downtime budget, ${m.deadlineS} s deadline, ` +
    `${m.reps} rep(s) per cell${m.postcopyPermitted ? ', post-copy permitted' : ''}; relaxed(L*) with L* = ${results.relaxedLimitMs ?? '–'} ms. ` +
    `${results.environment.qemu}, accel ${results.environment.accel}, ${results.environment.cores} cores. ` +
    (p
      ? `Commit \`${p.commit?.slice(0, 12) ?? 'unknown'}\`${p.dirty === false ? ', clean tree' : p.dirty ? ', **dirty tree**' : ''}.`
      : 'Provenance not recorded (these runs predate it).') +
    (driversOf(results).length > 1
      ? ` Figures from the ${driversOf(results)[0]} runs (the reference driver; the report compares the drivers).`
      : '') +
    (sum.legacyDowntime
      ? " Stall here is the recorded `guestDowntimeMs` (runs from before the guest's total stall was measured: for post-copy runs only the longest silence)."
      : '');
  const [, table, how] = headlineBlocks(results, sum);
  return toMarkdown([
    { kind: 'paragraph', text: setup },
    table!,
    how!,
    // Inside the README's own section: its tables without the report's heading.
    ...vsBaselineBlocks(results, sum).filter((b) => b.kind !== 'heading'),
  ]).trimEnd();
}

/** The report as blocks: report.md and report.html render the same ones. */
export function reportBlocks(results: Results, sum: Summary = summarize(results)): Block[] {
  return [
    ...introBlocks(results, sum),
    ...headlineBlocks(results, sum),
    ...vsBaselineBlocks(results, sum),
    ...sum.workloads.flatMap((w) => workloadBlocks(w, sum)),
    ...driverBlocks(results, sum.policies, sum.relaxed, { est, ratioText }),
    ...oracleBlocks(sum),
    ...verificationBlocks(results),
    ...predictionError(results),
  ];
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
  'key', 'workload', 'policy', 'rep', 'role', 'driver', 'success', 'sloSuccess', 'outcome', 'totalTimeMs', 'wallMs',
  'totalStallMs', 'longestSilenceMs', 'slowdown', 'qemuDowntimeMs',
  'guestDowntimeMs', 'appP99Ms', 'appMaxMs', 'appBaselineP99Ms', 'transferredBytes',
  'linkBytes', 'passes', 'differingPages', 'guestCheckOk', 'controllerCpuPct', 'actionLatencyMs',
  'predictedDowntimeMs', 'verification', 'commit', 'reason',
]; // prettier-ignore

/** One row per run; text a spreadsheet would run as a formula is neutralised (csv.ts). */
export function resultsCsv(results: Results): string {
  return (
    [
      csvLine(CSV_COLUMNS),
      ...results.runs.map((r) =>
        csvLine(
          CSV_COLUMNS.map((c) =>
            c === 'verification' ? verificationOf(r) : c === 'driver' ? driverOf(r) : r[c],
          ),
        ),
      ),
    ].join('\n') + '\n'
  );
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
  writeFileAtomic(path.join(dir, 'results.csv'), resultsCsv(results));
  writeFileAtomic(path.join(dir, 'report.md'), reportMarkdown(results, sum));
  writeFileAtomic(path.join(dir, 'report.html'), await reportHtml(results, sum));
}
