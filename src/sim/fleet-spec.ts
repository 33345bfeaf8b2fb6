import { seededRandom } from '../util/random.js';
import { readInputFile } from '../util/fs.js';

/** A fleet of thousands of VMs described one by one is well under this. */
const MAX_FLEET_BYTES = 16 * 2 ** 20;
import { z } from 'zod';
import { resolvePolicy, type ResolvedPolicy } from '../policy/index.js';
import { UsageError } from '../util/errors.js';
import { SharedLink } from './link.js';
import type { PageClass } from './model.js';
import type { ModelParams } from './params.js';
import { checkRamMiB, linkBps, simClasses } from './sweep.js';

/**
 * A fleet to evacuate, as a JSON or YAML file: links (a host's uplink, optionally one core link
 * every migration also crosses), hosts (which uplink each uses), VMs (RAM, workload or trace,
 * policy; `count` replicates an entry, list values are drawn per VM with the file's seed), the
 * hosts to evacuate, the downtime SLO and the model's parameters. Validated with zod: any problem
 * is one line naming the field.
 */
const oneOrMany = <T extends z.ZodTypeAny>(t: T) => z.union([t, z.array(t).min(1)]);

const LinkSchema = z
  .object({
    name: z.string().min(1),
    /** e.g. 25gbit, 10gbit,delay=0.1ms — the simulator's link syntax (no loss). */
    rate: z.string().min(1),
    variation: z
      .object({
        schedule: z.array(z.object({ atS: z.number().min(0), share: z.number().gt(0).max(1) })).optional(),
        periodS: z.number().positive().optional(),
        depth: z.number().min(0).lt(1).optional(),
      })
      .strict()
      .optional(),
  })
  .strict();

const VmSchema = z
  .object({
    name: z.string().min(1).optional(),
    host: z.string().min(1),
    count: z.number().int().positive().max(100_000).default(1),
    ramMiB: oneOrMany(z.number().int().positive()),
    /** A guest-program spec (random:200, idle, hotcold:…) or trace:FILE. */
    workload: oneOrMany(z.string().min(1)).default('idle'),
    policy: z.string().min(1).optional(),
    policyOptions: z.record(z.string(), z.union([z.string(), z.number(), z.boolean()])).optional(),
  })
  .strict();

export const FleetSpecSchema = z
  .object({
    links: z.array(LinkSchema).min(1),
    /** A link every migration crosses besides its host's uplink (a spine, a WAN). */
    coreLink: z.string().optional(),
    hosts: z.array(z.object({ name: z.string().min(1), link: z.string().min(1) }).strict()).min(1),
    vms: z.array(VmSchema).min(1),
    /** Hosts to evacuate (default: every host that has VMs). */
    evacuate: z.array(z.string()).optional(),
    policy: z.string().default('frs'),
    downtimeSloMs: z.number().positive().default(500),
    deadlineS: z.number().positive().default(600),
    postcopyPermitted: z.boolean().default(false),
    /**
     * Seconds from the orchestrator starting a migration to QEMU sending (destination prepared,
     * ports bound, target QEMU or pod started): holds a concurrency slot, moves no data. Default 0
     * (QEMU alone). Nova's pre_live_migration and KubeVirt's target pod take seconds; measure yours.
     */
    setupS: z.number().min(0).max(3600).default(0),
    /** How often a failed migration is tried again, at the back of the queue. */
    retries: z.number().int().min(0).max(5).default(1),
    seed: z.number().int().default(1),
    /** The model's parameters for every migration (multifd channels, per-channel rate, …). */
    params: z
      .object({
        channels: z.number().int().min(1).max(256),
        channelBps: z.number().positive(),
        scanBytesPerS: z.number().positive(),
        syncMsPerGiB: z.number().min(0),
        switchCostMs: z.number().min(0),
        vcpus: z.number().int().min(1),
        pageBytes: z.number().int().min(4096),
        dirtyLogFaultUs: z.number().min(0),
      })
      .partial()
      .strict()
      .optional(),
  })
  .strict();
export type FleetSpec = z.infer<typeof FleetSpecSchema>;

export interface FleetVm {
  id: number;
  name: string;
  host: string;
  ramMiB: number;
  workload: string;
  classes: PageClass[];
  policy: ResolvedPolicy;
  /** The links its migration crosses: its host's uplink, then the core link if any. */
  path: SharedLink[];
}

export interface Fleet {
  spec: FleetSpec;
  links: Map<string, SharedLink>;
  vms: FleetVm[];
  params: Partial<ModelParams>;
}

/** Reads a fleet file (JSON or YAML) and builds the fleet. */
export async function readFleet(file: string): Promise<Fleet> {
  const text = readInputFile(file, MAX_FLEET_BYTES, 'fleet file');
  let data: unknown;
  if (/\.ya?ml$/i.test(file)) {
    // Loaded only for YAML files: the simulator's other paths do not pay for the parser.
    const { load } = await import('js-yaml');
    try {
      data = load(text);
    } catch (e) {
      throw new UsageError(`${file}: not YAML: ${(e as Error).message.split('\n')[0]}`);
    }
  } else {
    try {
      data = JSON.parse(text);
    } catch (e) {
      throw new UsageError(`${file}: not JSON: ${(e as Error).message}`);
    }
  }
  return buildFleet(data, file);
}

/** Validates a fleet description and expands it into VMs with their page classes, policies and paths. */
export function buildFleet(data: unknown, where = 'fleet'): Fleet {
  const parsed = FleetSpecSchema.safeParse(data);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    throw new UsageError(`${where}: ${issue.path.join('.') || 'fleet'}: ${issue.message}`);
  }
  const spec = parsed.data;
  const links = new Map<string, SharedLink>();
  for (const l of spec.links) {
    if (links.has(l.name)) throw new UsageError(`${where}: link ${l.name} is named twice`);
    const { bps, rttMs } = linkBps(l.rate);
    links.set(l.name, new SharedLink(l.name, bps, rttMs, l.variation));
  }
  const core = spec.coreLink === undefined ? undefined : links.get(spec.coreLink);
  if (spec.coreLink !== undefined && !core)
    throw new UsageError(`${where}: coreLink ${spec.coreLink} is not a link`);
  const hosts = new Map<string, SharedLink>();
  for (const h of spec.hosts) {
    const l = links.get(h.link);
    if (!l) throw new UsageError(`${where}: host ${h.name} uses link ${h.link}, which is not defined`);
    hosts.set(h.name, l);
  }
  const vms = expandVms(spec, hosts, core, where);
  const evacuate = spec.evacuate ?? [...new Set(vms.map((v) => v.host))];
  for (const h of evacuate)
    if (!hosts.has(h)) throw new UsageError(`${where}: evacuate names unknown host ${h}`);
  return { spec, links, vms: vms.filter((v) => evacuate.includes(v.host)), params: spec.params ?? {} };
}

function expandVms(
  spec: FleetSpec,
  hosts: Map<string, SharedLink>,
  core: SharedLink | undefined,
  where: string,
): FleetVm[] {
  const pick = seededRandom(spec.seed);
  const choose = <T>(x: T | T[]): T => (Array.isArray(x) ? x[Math.floor(pick() * x.length)]! : x);
  const classes = new Map<string, PageClass[]>();
  const policies = new Map<string, ResolvedPolicy>();
  const vms: FleetVm[] = [];
  spec.vms.forEach((entry, e) => {
    const uplink = hosts.get(entry.host);
    if (!uplink) throw new UsageError(`${where}: vms.${e}: host ${entry.host} is not defined`);
    const policyName = entry.policy ?? spec.policy;
    const pkey = `${policyName}|${JSON.stringify(entry.policyOptions ?? {})}`;
    if (!policies.has(pkey)) policies.set(pkey, resolvePolicy(policyName, entry.policyOptions ?? {}));
    for (let i = 0; i < entry.count; i++) {
      const ramMiB = checkRamMiB(choose(entry.ramMiB));
      const workload = choose(entry.workload);
      const key = `${workload}@${ramMiB}`;
      if (!classes.has(key)) {
        try {
          classes.set(key, simClasses(workload, ramMiB));
        } catch (err) {
          throw new UsageError(`${where}: vms.${e}: ${(err as Error).message}`);
        }
      }
      vms.push({
        id: vms.length,
        name: entry.name ? (entry.count > 1 ? `${entry.name}-${i + 1}` : entry.name) : `vm${vms.length + 1}`,
        host: entry.host,
        ramMiB,
        workload,
        classes: classes.get(key)!,
        policy: policies.get(pkey)!,
        path: core ? [uplink, core] : [uplink],
      });
    }
  });
  // The order operators' tools see: as listed, shuffled with the seed (instance lists are not sorted by cost).
  for (let i = vms.length - 1; i > 0; i--) {
    const j = Math.floor(pick() * (i + 1));
    [vms[i], vms[j]] = [vms[j]!, vms[i]!];
  }
  return vms;
}
