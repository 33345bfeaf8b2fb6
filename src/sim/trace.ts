import { readInputFile, writeFileAtomic } from '../util/fs.js';

/** Hours of samples at a few per second are a few MiB; a trace far past that is not one. */
const MAX_TRACE_BYTES = 64 * 2 ** 20;
import { z } from 'zod';
import type { MigrationResult } from '../core/result.js';
import { UsageError } from '../util/errors.js';
import { TCG_GUEST, type PageClass } from './model.js';

/**
 * A recorded workload: JSON lines. Line 1 is the header; then one record per line, in time order —
 * `sample` (a calc-dirty-rate result: bytes the guest dirtied within a window ending at atMs) and
 * `pass` (one pre-copy pass as the controller saw it). Versioned so old traces fail clearly.
 */
export const TRACE_VERSION = 1;

const nonNeg = z.number().finite().nonnegative();

export const TraceHeaderSchema = z
  .object({
    format: z.literal('kvmigrate-trace'),
    version: z.literal(TRACE_VERSION),
    ramBytes: z.number().int().positive(),
    /** The lab workload it was recorded from, if any (documentation only). */
    workload: z.string().optional(),
    qemu: z.string().optional(),
    recordedAt: z.string(),
    linkBps: nonNeg.optional(),
  })
  .strict();
export type TraceHeader = z.infer<typeof TraceHeaderSchema>;

export const TraceRecordSchema = z.discriminatedUnion('type', [
  z
    .object({
      type: z.literal('sample'),
      atMs: nonNeg,
      windowMs: z.number().finite().positive(),
      dirtyBytes: nonNeg,
    })
    .strict(),
  z
    .object({
      type: z.literal('pass'),
      pass: z.number().int().positive(),
      startMs: nonNeg,
      endMs: nonNeg,
      bytesSent: nonNeg,
      normalPages: nonNeg,
      zeroPages: nonNeg,
      dirtyAtEndBytes: nonNeg,
    })
    .strict(),
]);
export type TraceRecord = z.infer<typeof TraceRecordSchema>;

export interface Trace {
  header: TraceHeader;
  records: TraceRecord[];
}

/** What a migration saw, as a trace. */
export function traceFromMigration(
  m: MigrationResult,
  info: { workload?: string; qemu?: string; linkBps?: number },
): Trace {
  const records: TraceRecord[] = [
    ...(m.workingSetSamples ?? []).map((s) => ({
      type: 'sample' as const,
      atMs: Math.round(s.atMs),
      windowMs: Math.round(s.seconds * 1000),
      dirtyBytes: Math.round(s.bytes),
    })),
    ...m.passes.map((p) => ({
      type: 'pass' as const,
      pass: p.pass,
      startMs: Math.round(p.startMs),
      endMs: Math.round(p.endMs),
      bytesSent: p.bytesSent,
      normalPages: p.normalPages,
      zeroPages: p.zeroPages,
      dirtyAtEndBytes: p.dirtyAtEndBytes,
    })),
  ].sort((a, b) => at(a) - at(b));
  return {
    header: {
      format: 'kvmigrate-trace',
      version: TRACE_VERSION,
      ramBytes: m.ramBytes,
      ...info,
      recordedAt: new Date().toISOString(),
    },
    records,
  };
}

const at = (r: TraceRecord) => (r.type === 'sample' ? r.atMs : r.endMs);

export function writeTrace(file: string, trace: Trace): void {
  writeFileAtomic(file, [trace.header, ...trace.records].map((r) => JSON.stringify(r)).join('\n') + '\n');
}

/** Reads and validates a trace; any problem is one UsageError naming the file and line. */
export function readTrace(file: string): Trace {
  const text = readInputFile(file, MAX_TRACE_BYTES, 'trace');
  const lines = text.split('\n');
  if (lines.at(-1) === '') lines.pop();
  else if (lines.length > 0)
    throw new UsageError(`${file}:${lines.length}: the last line has no newline: the trace is truncated`);
  const fail = (n: number, why: string) => new UsageError(`${file}:${n}: ${why}`);
  const parse = <T>(n: number, schema: z.ZodType<T>): T => {
    let json: unknown;
    try {
      json = JSON.parse(lines[n - 1]!);
    } catch {
      throw fail(n, 'not JSON (truncated or corrupt trace)');
    }
    const r = schema.safeParse(json);
    if (!r.success) {
      const issue = r.error.issues[0]!;
      throw fail(n, `${issue.path.join('.') || 'record'}: ${issue.message}`);
    }
    return r.data;
  };
  if (lines.length === 0) throw fail(1, 'empty trace: record one with `kvmigrate record`');
  const head = (safeJson(lines[0]!) ?? {}) as Record<string, unknown>;
  if (head.format === 'kvmigrate-trace' && head.version !== TRACE_VERSION)
    throw fail(1, `trace version ${String(head.version)}, this kvmigrate reads version ${TRACE_VERSION}`);
  const header = parse(1, TraceHeaderSchema);
  const records: TraceRecord[] = [];
  let last = 0;
  for (let n = 2; n <= lines.length; n++) {
    const r = parse(n, TraceRecordSchema);
    if (r.type === 'pass' && r.endMs < r.startMs) throw fail(n, 'a pass ends before it starts');
    if (at(r) < last) throw fail(n, 'records out of time order');
    last = at(r);
    records.push(r);
  }
  if (!records.some((r) => r.type === 'sample' || (r.type === 'pass' && r.pass > 1)))
    throw fail(
      lines.length,
      'no dirty-rate samples and no pass after the bulk: nothing to model the guest from',
    );
  return { header, records };
}

function safeJson(line: string): unknown {
  try {
    return JSON.parse(line);
  } catch {
    return undefined;
  }
}

/**
 * The trace as the simulator's page classes: the static pages the bulk pass found (full pages it
 * sent, less what the guest writes), and one uniformly-written class whose size N is the largest
 * working set seen and whose write rate fits W(τ) = N(1 − e^(−rτ/N)) at the shortest window; its
 * rate follows the samples over time (bursts and quiet phases replay as recorded).
 */
export function traceClasses(trace: Trace): PageClass[] {
  const PAGE = 4096;
  const samples = trace.records.filter((r) => r.type === 'sample');
  const passes = trace.records.filter((r) => r.type === 'pass');
  // Working-set points: samples, and passes after the bulk (duration → dirty at their end).
  const points = [
    ...samples.map((s) => ({ seconds: s.windowMs / 1000, bytes: s.dirtyBytes })),
    ...passes
      .filter((p) => p.pass > 1 && p.endMs - p.startMs >= 50)
      .map((p) => ({ seconds: (p.endMs - p.startMs) / 1000, bytes: p.dirtyAtEndBytes })),
  ].filter((p) => p.bytes > 0);
  const N = Math.max(1, ...points.map((p) => p.bytes / PAGE));
  const rateFor = (p: { seconds: number; bytes: number }) => {
    const share = Math.min(0.999, p.bytes / PAGE / N);
    return (-N * Math.log(1 - share)) / p.seconds;
  };
  const shortest = Math.min(...points.map((p) => p.seconds));
  const busiest = Math.max(0, ...points.filter((p) => p.seconds === shortest).map(rateFor));
  const bulk = passes.find((p) => p.pass === 1);
  const staticPages = bulk ? Math.max(0, bulk.normalPages - N) : TCG_GUEST.staticPages;
  // The recorded rate over time, as a share of the busiest, from the shortest-window samples.
  const schedule = samples
    .filter((s) => s.windowMs / 1000 === shortest)
    .map((s) => ({
      atS: s.atMs / 1000,
      share: busiest > 0 ? rateFor({ seconds: s.windowMs / 1000, bytes: s.dirtyBytes }) / busiest : 0,
    }));
  return [
    { name: 'static', pages: staticPages, rate: 0 },
    {
      name: 'trace',
      pages: N,
      rate: busiest,
      ...(schedule.length > 1 && schedule.some((x) => x.share < 0.5) ? { schedule } : {}),
    },
  ];
}
