import type { Decision, MigrationResult, Progress } from '../migration/session.js';
import type { LabMigrationResult } from '../lab/lab.js';

export const mib = (bytes: number) => `${(bytes / 2 ** 20).toFixed(1)} MiB`;
const mbit = (bps: number) => `${((bps * 8) / 1e6).toFixed(0)} Mbit/s`;
const sec = (ms: number) => `${(ms / 1000).toFixed(2)} s`;

export function passTimeline(m: MigrationResult): string {
  const head = ['pass', 'start', 'end', 'sent', 'to send', 'dirtied', 'bandwidth', 'limit'];
  const rows = m.passes.map((p) => [
    String(p.pass),
    sec(p.startMs),
    sec(p.endMs),
    mib(p.bytesSent),
    mib(p.remainingAtStartBytes),
    mib(p.dirtyAtEndBytes),
    mbit(p.bandwidthBps),
    `${p.downtimeLimitMs} ms`,
  ]);
  return table([head, ...rows]);
}

/** The pass timeline and the one-line outcome a person reads after `migrate` or `attach`. */
export function outcomeSummary(result: MigrationResult): string {
  return `${passTimeline(result)}\n${result.outcome}: ${result.reason}; guest runs on ${result.guestRunsOn}; total ${(
    result.totalTimeMs / 1000
  ).toFixed(2)} s, downtime ${result.qemuDowntimeMs} ms, sent ${mib(result.transferredBytes)}\n`;
}

export function table(rows: string[][]): string {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? '').length)));
  return rows
    .map((r) => r.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  '))
    .join('\n');
}

export function decisionLine(d: Decision): string {
  return `[${sec(d.atMs)}] pass ${d.pass}: ${d.action.kind} — ${d.action.reason}`;
}

export function progressLine(p: Progress): string {
  const eta = p.bandwidthBps > 0 ? `${(p.remainingBytes / p.bandwidthBps).toFixed(1)} s` : '?';
  return (
    `${sec(p.elapsedMs)} ${p.status} pass ${p.pass}: remaining ${mib(p.remainingBytes)}, sent ${mib(p.transferredBytes)}, ` +
    `dirty ${((p.dirtyPagesRate * 4096) / 2 ** 20).toFixed(0)} MiB/s, ${mbit(p.bandwidthBps)}, pass ETA ${eta}` +
    (p.lastDecision ? ` | ${p.lastDecision.action.kind}` : '')
  );
}

export function labSummary(r: LabMigrationResult): string {
  const m = r.migration;
  const lines = [
    `${r.success ? 'SUCCESS' : 'FAILED'}: ${m.outcome} — ${m.reason}`,
    `policy ${m.policy}, total ${sec(m.totalTimeMs)}, QEMU downtime ${m.qemuDowntimeMs} ms, guest total stall ${
      r.guestDowntimeMs === undefined ? 'n/a' : `${r.guestDowntimeMs.toFixed(0)} ms`
    }, sent ${mib(m.transferredBytes)}, ${m.passes.length} passes`,
  ];
  if (r.verification) {
    const v = r.verification;
    lines.push(
      `verified: ${v.ram ? `${v.ram.differingPages} of ${v.ram.pagesCompared} pages differ` : `no RAM compare (${v.ramSkipped})`}; guest check: ${v.guestCheck.line}; heartbeat ${
        v.heartbeatResumed ? 'resumed' : 'DID NOT resume'
      } on the destination`,
    );
  }
  if (r.appLatency) {
    const a = r.appLatency;
    const ms = (x: number | null) => (x === null ? 'n/a' : `${x.toFixed(0)} ms`);
    lines.push(
      `application latency in the migration window: p99 ${ms(a.p99Ms)}, max ${ms(a.maxMs)} (before: p99 ${ms(a.baseline.p99Ms)}); longest pause inside one request ${ms(a.longestPauseInRequestMs)}`,
    );
  }
  if (r.sourceRunsOn !== undefined) {
    lines.push(
      `source guest ${r.sourceRunsOn ? 'runs on' : 'DOES NOT run'}; its check: ${r.sourceCheck?.line ?? 'not run'}`,
    );
  }
  return lines.join('\n');
}
