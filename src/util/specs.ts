import { UsageError } from './errors.js';

// The workload and link specs every layer speaks (lab, simulator, bench, CLI): defined once here.

/** The guest program's dirty patterns; the string is passed verbatim on the kernel command line. */
export type WorkloadSpec =
  | { kind: 'idle' }
  | { kind: 'random'; mib: number }
  | { kind: 'hotcold'; hotMib: number; coldMib: number; hotPct: number; pagesPerSec?: number }
  | { kind: 'rate'; mib: number; pagesPerSec: number }
  | { kind: 'sweep'; mib: number; mbps: number }
  | { kind: 'phase'; mib: number; hotMib: number; periodS: number }
  | { kind: 'burst'; mib: number; onMs: number; offMs: number };

const FORMS: Record<string, string[]> = {
  idle: [],
  random: ['mib'],
  hotcold: ['hotMib', 'coldMib', 'hotPct', 'pagesPerSec?'],
  rate: ['mib', 'pagesPerSec'],
  sweep: ['mib', 'mbps'],
  phase: ['mib', 'hotMib', 'periodS'],
  burst: ['mib', 'onMs', 'offMs'],
};

export const WORKLOAD_FORMS =
  'idle, random:<MiB>, hotcold:<hotMiB>:<coldMiB>:<hotPct>[:<pagesPerSec>], rate:<MiB>:<pagesPerSec>, sweep:<MiB>:<MBps>, phase:<MiB>:<hotMiB>:<periodS>, burst:<MiB>:<onMs>:<offMs>';

export function parseWorkload(text: string): WorkloadSpec {
  const [kind, ...rest] = text.trim().split(':');
  const fields = kind ? FORMS[kind] : undefined;
  const bad = (why: string) =>
    new UsageError(`unknown workload '${text}': ${why}; use one of ${WORKLOAD_FORMS}`);
  if (kind === 'app')
    throw new UsageError(
      `workload '${text}' is a real application: it runs only in the lab (kvmigrate lab, bench), the simulator has no model of it`,
    );
  if (!fields) throw bad(`no workload named '${kind}'`);
  const required = fields.filter((f) => !f.endsWith('?')).length;
  if (rest.length < required || rest.length > fields.length) {
    throw bad(
      `${kind} takes ${required === fields.length ? required : `${required} or ${fields.length}`} number(s)`,
    );
  }
  const nums = rest.map((r) => (/^\d+$/.test(r) ? Number(r) : NaN));
  if (nums.some((n) => !Number.isFinite(n))) throw bad('parameters must be whole numbers');
  const spec = Object.fromEntries([
    ['kind', kind],
    ...rest.map((_, i) => [fields[i]!.replace('?', ''), nums[i]]),
  ]) as WorkloadSpec;
  if (spec.kind === 'hotcold' && spec.hotPct > 100) throw bad('hotPct is at most 100');
  if (spec.kind === 'phase' && spec.hotMib > spec.mib) throw bad('the hot window must fit in the region');
  if (spec.kind === 'burst' && spec.onMs === 0) throw bad('a burst lasts at least 1 ms');
  if (spec.kind !== 'idle' && 'mib' in spec && spec.mib === 0) throw bad('the region must be at least 1 MiB');
  return spec;
}

export function formatWorkload(w: WorkloadSpec): string {
  const values = FORMS[w.kind]!.map(
    (f) => (w as unknown as Record<string, number | undefined>)[f.replace('?', '')],
  );
  return [w.kind, ...values.filter((v) => v !== undefined).map(String)].join(':');
}

/** MiB the workload keeps in guest RAM (its region plus its generation table). */
export function workloadFootprintMib(w: WorkloadSpec): number {
  const region = w.kind === 'idle' ? 16 : w.kind === 'hotcold' ? w.hotMib + w.coldMib : w.mib;
  return region * (1 + 8 / 4096);
}

/**
 * A real application and its load inside the lab guest (guest/app-start.sh): PostgreSQL under
 * pgbench (TPC-B-like, `scale` × 100k accounts, `clients` connections), or memcached under our
 * get/set load generator (guest/appload.c: a cache of `mib` MiB, `valueKiB` values, 50% sets,
 * `clients` connections back to back). The lab only: the simulator has no model of them.
 */
export type AppWorkloadSpec =
  | { kind: 'app'; app: 'pgbench'; scale: number; clients: number }
  | { kind: 'app'; app: 'memcached'; mib: number; clients: number; valueKiB: number };

/** What a lab guest can run: a synthetic dirty pattern or a real application. */
export type LabWorkloadSpec = WorkloadSpec | AppWorkloadSpec;

const APP_FORMS = {
  pgbench: { fields: ['scale', 'clients'], defaults: [5, 4] },
  memcached: { fields: ['mib', 'clients', 'valueKiB'], defaults: [192, 4, 16] },
} as const;

export const APP_WORKLOAD_FORMS =
  'app:pgbench[:<scale>[:<clients>]], app:memcached[:<MiB>[:<clients>[:<valueKiB>]]]';

export function isAppWorkload(w: LabWorkloadSpec): w is AppWorkloadSpec {
  return w.kind === 'app';
}

/** Parses a lab workload: every synthetic form (parseWorkload) and the `app:` ones. */
export function parseLabWorkload(text: string): LabWorkloadSpec {
  const [kind, app, ...rest] = text.trim().split(':');
  if (kind !== 'app') {
    try {
      return parseWorkload(text);
    } catch (err) {
      if (err instanceof UsageError) throw new UsageError(`${err.message}, ${APP_WORKLOAD_FORMS}`);
      throw err;
    }
  }
  const bad = (why: string) =>
    new UsageError(`unknown workload '${text}': ${why}; use ${APP_WORKLOAD_FORMS}`);
  if (app !== 'pgbench' && app !== 'memcached')
    throw bad(app ? `no application named '${app}'` : 'name the application');
  const form = APP_FORMS[app];
  if (rest.length > form.fields.length) throw bad(`app:${app} takes at most ${form.fields.length} number(s)`);
  const nums = form.defaults.map((d, i) =>
    rest[i] === undefined ? d : /^\d+$/.test(rest[i]!) ? Number(rest[i]) : NaN,
  );
  if (nums.some((n) => !Number.isFinite(n))) throw bad('parameters must be whole numbers');
  if (nums.some((n) => n === 0)) throw bad('parameters must be at least 1');
  if (app === 'pgbench') return { kind: 'app', app, scale: nums[0]!, clients: nums[1]! };
  if (nums[2]! > 1000) throw bad('a value is at most 1000 KiB (memcached items are at most 1 MiB)');
  return { kind: 'app', app, mib: nums[0]!, clients: nums[1]!, valueKiB: nums[2]! };
}

/** The canonical text of a lab workload (an app's defaults written out): parseLabWorkload's inverse. */
export function formatLabWorkload(w: LabWorkloadSpec): string {
  if (!isAppWorkload(w)) return formatWorkload(w);
  return w.app === 'pgbench'
    ? `app:pgbench:${w.scale}:${w.clients}`
    : `app:memcached:${w.mib}:${w.clients}:${w.valueKiB}`;
}

/**
 * MiB the workload keeps in guest RAM. An app guest also holds its programs in the initramfs
 * (~80 MiB unpacked); PostgreSQL its data files in tmpfs (~16 MiB per scale unit, twice that
 * while pgbench -i generates them: the generated rows spill to a temporary file), 64 MiB of
 * shared buffers and up to 96 MiB of WAL (guest/app-start.sh). Measured: scale 10 does not load
 * in a 512 MiB guest (its /tmp fills), scale 4 does.
 */
export function labWorkloadFootprintMib(w: LabWorkloadSpec): number {
  if (!isAppWorkload(w)) return workloadFootprintMib(w);
  return w.app === 'pgbench' ? 80 + 64 + 96 + 32 * w.scale : 80 + 16 + w.mib;
}

export interface LinkSpec {
  /** Source → destination rate in Mbit/s; undefined = no emulated link (loopback, unlimited). */
  rateMbit?: number;
  delayMs?: number;
  lossPct?: number;
}

/** Parses `1gbit`, `256mbit`, `2.5gbit`, `none`, optionally `,delay=1ms,loss=0.1%`. */
export function parseLink(text: string): LinkSpec {
  const [rate, ...opts] = text.trim().toLowerCase().split(',');
  const spec: LinkSpec = {};
  if (rate !== 'none') {
    const m = /^(\d+(?:\.\d+)?)(g|m)bit$/.exec(rate ?? '');
    if (!m)
      throw new UsageError(
        `bad link '${text}': use e.g. 1gbit, 256mbit, 2.5gbit or none, optionally ,delay=1ms`,
      );
    spec.rateMbit = Number(m[1]) * (m[2] === 'g' ? 1000 : 1);
    if (spec.rateMbit <= 0) throw new UsageError(`bad link '${text}': the rate must be above 0`);
  }
  for (const opt of opts) {
    const d = /^delay=(\d+(?:\.\d+)?)ms$/.exec(opt);
    const l = /^loss=(\d+(?:\.\d+)?)%$/.exec(opt);
    if (d) spec.delayMs = Number(d[1]);
    else if (l) spec.lossPct = Number(l[1]);
    else throw new UsageError(`bad link option '${opt}' in '${text}': use delay=<ms>ms or loss=<pct>%`);
  }
  return spec;
}

export function formatLink(l: LinkSpec): string {
  const parts = [
    l.rateMbit === undefined ? 'none' : l.rateMbit >= 1000 ? `${l.rateMbit / 1000}gbit` : `${l.rateMbit}mbit`,
  ];
  if (l.delayMs !== undefined) parts.push(`delay=${l.delayMs}ms`);
  if (l.lossPct !== undefined) parts.push(`loss=${l.lossPct}%`);
  return parts.join(',');
}
