import type { Results, RunRecord } from './results.js';
import { markdownTable } from './tables.js';

/**
 * What `kvmigrate demo` prints after its runs: every run of the one guest as a line (what the
 * policy did, how long, what the guest felt, how much it sent), then the story in four sentences —
 * stock fails, relaxed pre-copy needs a multi-second limit, adaptive against the strongest
 * production rule that ran, pre-copy only and with post-copy permitted. Computed from the results
 * alone; nothing is claimed that the runs do not show.
 */
export function demoStory(precopy: Results, postcopy?: Results): string {
  const rows = [
    ...precopy.runs.map((r) => ({ r, mode: 'pre-copy only' })),
    ...(postcopy?.runs ?? []).map((r) => ({ r, mode: 'post-copy permitted' })),
  ];
  const table = markdownTable({
    head: ['policy', 'mode', 'outcome', 'what it did', 'total s', 'guest stall ms', 'data MiB'],
    align: ['left', 'left', 'left', 'left', 'right', 'right', 'right'],
    rows: rows.map(({ r, mode }) => [
      r.policy,
      mode,
      r.outcome,
      actionOf(r),
      (r.totalTimeMs / 1000).toFixed(1),
      stallOf(r) === undefined ? '–' : stallOf(r)!.toFixed(0),
      (r.transferredBytes / 2 ** 20).toFixed(0),
    ]),
  });
  return [table, '', ...storyLines(precopy, postcopy)].join('\n');
}

const stallOf = (r: RunRecord): number | undefined => r.totalStallMs ?? r.guestDowntimeMs ?? undefined;

/** The policy's first action that changed the migration, or that it let QEMU decide. */
function actionOf(r: RunRecord): string {
  const d = r.decisions.find((x) => x.kind !== 'continue');
  return d ? `${d.kind} at pass ${d.pass}` : 'left it to QEMU';
}

/** The production rules the demo may run, strongest first when they tie. */
const PRODUCTION_RULES = ['kubevirt-stall', 'proxmox', 'kubevirt-ramp', 'nova', 'kubevirt', 'xen'];

/** The completed production-rule run with the smallest guest stall. */
function bestProduction(runs: RunRecord[]): RunRecord | undefined {
  return runs
    .filter((r) => r.success && PRODUCTION_RULES.includes(r.policyName) && stallOf(r) !== undefined)
    .sort((a, b) => stallOf(a)! - stallOf(b)!)[0];
}

const felt = (r: RunRecord) =>
  `${stallOf(r)?.toFixed(0) ?? '–'} ms stall in ${(r.totalTimeMs / 1000).toFixed(1)} s, ${(r.transferredBytes / 2 ** 20).toFixed(0)} MiB`;

function storyLines(pre: Results, post?: Results): string[] {
  const lines: string[] = [];
  const matrix = pre.runs.filter((r) => r.role === 'matrix');
  const stock = matrix.find((r) => r.policyName === 'stock');
  if (stock)
    lines.push(
      stock.success
        ? `- stock (${pre.matrix.downtimeBudgetMs} ms limit) finished this guest: ${felt(stock)}.`
        : `- stock (${pre.matrix.downtimeBudgetMs} ms limit) did not finish: ${stock.outcome} after ${(stock.totalTimeMs / 1000).toFixed(1)} s, ${(stock.transferredBytes / 2 ** 20).toFixed(0)} MiB sent; the source runs on.`,
    );
  const rungs = pre.runs.filter((r) => r.role === 'ladder');
  const failed = rungs.filter((r) => !r.success).map((r) => r.policy);
  if (pre.relaxedLimitMs !== undefined && pre.relaxedLimitMs !== null) {
    // relaxed(L*) is the ladder's rung L* (a bench may also have run it as a matrix policy).
    const relaxed =
      matrix.find((r) => r.policyName === 'relaxed') ??
      rungs.find((r) => r.success && r.policy === `relaxed(${pre.relaxedLimitMs})`);
    lines.push(
      `- relaxed pre-copy finishes only with a ${pre.relaxedLimitMs} ms limit` +
        (failed.length ? ` (${failed.join(', ')} did not)` : '') +
        (relaxed?.success ? `: ${felt(relaxed)}.` : '.'),
    );
  } else lines.push('- no rung of the ladder let stock pre-copy finish this guest.');
  lines.push(versus('pre-copy only', pre));
  if (post) lines.push(versus('post-copy permitted', post));
  return lines;
}

/** adaptive against the best production rule of the same mode, or why there is no comparison. */
function versus(mode: string, results: Results): string {
  const runs = results.runs;
  const adaptive = runs.find((r) => r.policyName === 'adaptive' && r.role === 'matrix');
  const rule = bestProduction(runs);
  if (!adaptive) return `- ${mode}: adaptive did not run.`;
  if (!adaptive.success)
    return `- ${mode}: adaptive did not finish (${adaptive.outcome}: ${adaptive.reason}).`;
  if (!rule)
    return `- ${mode}: adaptive ${felt(adaptive)}; no production rule finished this guest within the ${results.matrix.deadlineS} s deadline.`;
  const a = stallOf(adaptive)!;
  const b = stallOf(rule)!;
  const change = b > 0 ? Math.round((a / b - 1) * 100) : 0;
  return (
    `- ${mode}: adaptive ${felt(adaptive)} (${actionOf(adaptive)}); the best production rule here, ` +
    `${rule.policy}, ${felt(rule)} (${actionOf(rule)}): ${change <= 0 ? `${-change}% less` : `${change}% more`} stall` +
    ' (one run each: a demonstration, not a measurement — the benchmark has the intervals).'
  );
}
