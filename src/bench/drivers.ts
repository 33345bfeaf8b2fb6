/**
 * The bench's driver dimension: the same policy on the same workload through the QMP driver and
 * through the libvirt driver, interleaved run by run. The report's main figures (success,
 * ratios vs relaxed(L*), the oracle) come from the reference driver's runs alone (the first the
 * config names); this section puts the drivers side by side per policy × workload. Pure.
 */
import type { Driver } from './config.js';
import { OBJECTIVES, type Objective } from './oracle.js';
import { driverOf, driversOf, type Results, type RunRecord } from './results.js';
import { verdictOf } from './stats.js';
import { cellOf, ratiosOf, type Cell, type Estimate } from './summary.js';
import type { Block } from './tables.js';

export interface DriverRow {
  workload: string;
  policy: string;
  driver: Driver;
  cell: Cell;
  outcomes: Record<RunRecord['outcome'], number>;
  /** This driver's medians ÷ the reference driver's (absent on the reference's own row). */
  vsReference?: Partial<Record<Objective, ReturnType<typeof verdictOf>>> & {
    ratios: NonNullable<ReturnType<typeof ratiosOf>>;
  };
}

/**
 * Per workload and policy (relaxed(L*) as the reference driver's L* on both), one row per
 * driver: its cell (medians and bootstrap intervals over successful runs) and its ratio to the
 * reference driver's medians with intervals.
 */
export function driverRows(results: Results, policies: string[], relaxedLabel?: string): DriverRow[] {
  const drivers = driversOf(results);
  const ref = drivers[0]!;
  const limit = results.relaxedLimitMs;
  const runsOf = (w: string, p: string, d: Driver) =>
    results.runs.filter(
      (r) =>
        r.workload === w &&
        driverOf(r) === d &&
        (p === relaxedLabel
          ? r.role === 'ladder' && r.policyName === 'relaxed' && r.policyConfig.downtimeLimitMs === limit
          : r.role === 'matrix' && r.policy === p),
    );
  const rows: DriverRow[] = [];
  for (const w of results.matrix.workloads)
    for (const p of policies) {
      const refRuns = runsOf(w, p, ref);
      for (const d of drivers) {
        const runs = runsOf(w, p, d);
        if (runs.length === 0) continue;
        const outcomes = { completed: 0, failed: 0, cancelled: 0 };
        for (const r of runs) outcomes[r.outcome]++;
        const row: DriverRow = {
          workload: w,
          policy: p,
          driver: d,
          cell: cellOf(w, `${p}@${d}`, runs),
          outcomes,
        };
        const ratios = d === ref ? undefined : ratiosOf(runs, refRuns, `${w}|${p}|${d}-vs-${ref}`);
        if (ratios)
          row.vsReference = {
            ratios,
            ...Object.fromEntries(OBJECTIVES.map((o) => [o, verdictOf(ratios[o])])),
          };
        rows.push(row);
      }
    }
  return rows;
}

export interface DriverFormat {
  est: (e: Estimate, f: (x: number) => string) => string;
  ratioText: (r: NonNullable<DriverRow['vsReference']>['ratios'][Objective] | undefined) => string;
}

const MiB = 2 ** 20;
const pct = (x: number) => (Number.isFinite(x) ? `${Math.round(x * 100)}%` : '–');

/** The drivers section: nothing for a QMP-only run; a note for a single other driver; else the table. */
export function driverBlocks(
  results: Results,
  policies: string[],
  relaxedLabel: string | undefined,
  fmt: DriverFormat,
): Block[] {
  const drivers = driversOf(results);
  if (drivers.length === 1 && drivers[0] === 'qmp') return [];
  const heading: Block = { kind: 'heading', level: 2, text: 'Drivers' };
  if (drivers.length === 1)
    return [
      heading,
      {
        kind: 'paragraph',
        text: `Every run went through the **${drivers[0]}** driver: the lab guest as a domain on the lab's libvirt pair (two daemons, one per side, joined by the lab link), the migration started live and peer-to-peer through libvirt and steered through libvirt's calls, the destination left paused for the byte-for-byte compare, then resumed through libvirt.`,
      },
    ];
  const [ref, ...others] = drivers;
  const rows = driverRows(results, policies, relaxedLabel);
  const outcomeText = (o: DriverRow['outcomes']) =>
    Object.entries(o)
      .filter(([, n]) => n > 0)
      .map(([k, n]) => `${n} ${k}`)
      .join(', ');
  const verdictWord = { better: 'less', worse: 'more', tie: 'tie', unknown: '?' } as const;
  return [
    heading,
    {
      kind: 'paragraph',
      text:
        `The same policy on the same workload through ${drivers.join(' and ')}: every unit ran under each driver back to back on every rep (the driver that goes first alternating), so the two share the machine's noise. ` +
        `Medians over successful runs with bootstrap 95% intervals; the ratio is ${others.join('/')} ÷ ${ref} with an interval from resampling both sides, **an interval that contains 1 is the same result within noise** (\`tie\`). ` +
        `relaxed(L*) uses ${ref}'s L* on both. The figures elsewhere in this report are ${ref}'s runs alone. ` +
        "Total time is each driver's own account: QMP's `total-time` counts from `migrate`; libvirt's `time_elapsed` from the job's start, which includes its Begin/Prepare phases (starting the destination QEMU), which the QMP lab does before `migrate`.",
    },
    {
      kind: 'table',
      table: {
        head: [
          'workload', 'policy', 'driver', 'outcomes', 'success', 'verified byte for byte', 'total s',
          'guest stall ms', 'longest silence ms', 'QEMU downtime ms', 'data MiB',
          `time vs ${ref}`, `stall vs ${ref}`, `data vs ${ref}`,
        ], // prettier-ignore
        align: ['left', 'left', 'left', 'left', ...Array<'right'>(10).fill('right')],
        rows: rows.map((r) => [
          r.workload,
          r.policy,
          r.driver,
          outcomeText(r.outcomes),
          pct(r.cell.successRate),
          String(r.cell.verified['byte-for-byte']),
          fmt.est(r.cell.totalMs, (x) => (x / 1000).toFixed(2)),
          fmt.est(r.cell.stallMs, (x) => x.toFixed(0)),
          fmt.est(r.cell.longestSilenceMs, (x) => x.toFixed(0)),
          fmt.est(r.cell.qemuDowntimeMs, (x) => x.toFixed(0)),
          fmt.est(r.cell.bytes, (x) => (x / MiB).toFixed(0)),
          ...(['total', 'stall', 'bytes'] as const).map((o) =>
            r.driver === ref ? '(reference)' : fmt.ratioText(r.vsReference?.ratios[o]),
          ),
        ]),
      },
    },
    {
      kind: 'paragraph',
      text:
        'Verdicts: ' +
        (rows
          .filter((r) => r.vsReference)
          .map(
            (r) =>
              `${r.workload} × ${r.policy} ${r.driver}: time ${verdictWord[r.vsReference!.total!]}, stall ${verdictWord[r.vsReference!.stall!]}, data ${verdictWord[r.vsReference!.bytes!]}`,
          )
          .join('; ') || `no policy completed under both drivers`) +
        ` (tie = the same as ${ref} within noise; less/more = the whole interval below/above ${ref}; ? = under 2 successful runs a side).`,
    },
  ];
}
