import http from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { RunEvent } from '../core/result.js';
import { UsageError } from '../util/errors.js';

/** QEMU's `dirty-pages-rate` counts target pages; 4 KiB on x86 and arm64 guests. */
const PAGE_BYTES = 4096;

/** `--metrics ADDR`: `HOST:PORT`, `[V6]:PORT`, `:PORT` or `PORT` (host 127.0.0.1). */
export function parseListenAddress(spec: string): { host: string; port: number } {
  const m = /^(?:(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]*):)?(\d{1,5})$/.exec(spec.trim());
  const port = m ? Number(m[2]) : NaN;
  if (!m || port > 65535)
    throw new UsageError(`--metrics '${spec}': give HOST:PORT or PORT, e.g. 127.0.0.1:9464`);
  const host = (m[1] ?? '').replace(/^\[|\]$/g, '') || '127.0.0.1';
  return { host, port };
}

export interface MetricsInfo {
  policy: string;
  source: string;
  destination: string;
  migrateUri: string;
}

/**
 * Prometheus metrics of one migration, fed by the run's events (`SessionOptions.onEvent`) and
 * served over HTTP (`GET /metrics`). Names follow KubeVirt's migration metrics
 * (kubevirt_vmi_migration_*) where one exists, with the prefix kvmigrate_; the rest are
 * kvmigrate's own (passes, decisions, commands, downtime-limit, outcome). prom-client is loaded
 * only when this is created: a controller without --metrics never imports it.
 */
export class MigrationMetrics {
  private server: http.Server | undefined;
  private started = false;

  private constructor(
    readonly registry: Registry,
    private readonly m: {
      total: Gauge;
      remaining: Gauge;
      processed: Gauge;
      dirtyRate: Gauge;
      transferRate: Gauge;
      start: Gauge;
      end: Gauge;
      succeeded: Gauge;
      failed: Gauge;
      passes: Counter;
      passSeconds: Histogram;
      pass: Gauge;
      downtimeLimit: Gauge;
      decisions: Counter<'kind'>;
      commands: Counter<'kind'>;
      status: Gauge<'status'>;
      postcopy: Gauge;
      outcome: Gauge<'outcome' | 'guest_runs_on'>;
      qemuDowntime: Gauge;
      throttle: Gauge;
    },
  ) {}

  static async create(info: MetricsInfo, opts: { processMetrics?: boolean } = {}): Promise<MigrationMetrics> {
    const prom = await import('prom-client');
    const registry = new prom.Registry();
    const p = 'kvmigrate_migration_';
    const gauge = (name: string, help: string) =>
      new prom.Gauge({ name: p + name, help, registers: [registry] });
    const counter = <L extends string>(name: string, help: string, labelNames: L[] = []) =>
      new prom.Counter<L>({ name, help, labelNames, registers: [registry] });
    new prom.Gauge({
      name: `${p}info`,
      help: 'The migration this controller runs (always 1).',
      labelNames: ['policy', 'source', 'destination', 'migrate_uri'],
      registers: [registry],
    }).set(
      {
        policy: info.policy,
        source: info.source,
        destination: info.destination,
        migrate_uri: info.migrateUri,
      },
      1,
    );
    const metrics = new MigrationMetrics(registry, {
      total: gauge('data_total_bytes', 'The total guest OS data to be migrated (guest RAM), bytes.'),
      remaining: gauge('data_remaining_bytes', 'The remaining guest OS data to be migrated, bytes.'),
      processed: gauge('data_processed_bytes', 'The guest OS data processed and migrated so far, bytes.'),
      dirtyRate: gauge(
        'dirty_memory_rate_bytes',
        "The rate of memory being dirtied in the guest (QEMU's dirty-pages-rate), bytes/s.",
      ),
      transferRate: gauge(
        'memory_transfer_rate_bytes',
        'The rate at which memory is being transferred, bytes/s.',
      ),
      start: gauge('start_time_seconds', 'The time at which the migration started (unix seconds).'),
      end: gauge('end_time_seconds', 'The time at which the migration ended (unix seconds).'),
      succeeded: gauge('succeeded', 'Indicates if the migration succeeded (1) once it is over.'),
      failed: gauge('failed', 'Indicates if the migration failed or was cancelled (1) once it is over.'),
      passes: counter(`${p}passes_total`, 'Passes (dirty-bitmap syncs) completed; pass 1 is the bulk copy.'),
      passSeconds: new prom.Histogram({
        name: `${p}pass_duration_seconds`,
        help: 'Wall time of each completed pass, s.',
        buckets: [0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120],
        registers: [registry],
      }),
      pass: gauge('pass', 'The pass under way.'),
      downtimeLimit: gauge(
        'downtime_limit_seconds',
        "QEMU's downtime-limit as the controller last set or saw it, s.",
      ),
      decisions: counter(`${p}decisions_total`, 'Decisions logged, by action kind.', ['kind']),
      commands: counter(`${p}commands_total`, 'Commands sent to QEMU, by kind.', ['kind']),
      status: new prom.Gauge({
        name: `${p}status`,
        help: "QEMU's migration status (1 for the current one).",
        labelNames: ['status'],
        registers: [registry],
      }),
      postcopy: gauge('postcopy', 'The migration went into post-copy (1).'),
      outcome: new prom.Gauge({
        name: `${p}outcome`,
        help: 'The outcome (1) and where the guest runs, once the migration is over.',
        labelNames: ['outcome', 'guest_runs_on'],
        registers: [registry],
      }),
      throttle: gauge(
        'cpu_throttle_percent',
        'The vCPU throttle the controller last asked for, % (auto-converge).',
      ),
      qemuDowntime: gauge(
        'qemu_downtime_seconds',
        "QEMU's downtime (stop-and-copy pause) once completed, s.",
      ),
    });
    if (opts.processMetrics ?? true) prom.collectDefaultMetrics({ register: registry, prefix: 'kvmigrate_' });
    return metrics;
  }

  /** Feed it every event of the run (`SessionOptions.onEvent`). */
  readonly observe = (e: RunEvent): void => {
    const m = this.m;
    switch (e.type) {
      case 'progress': {
        const p = e.progress;
        m.total.set(p.ramBytes);
        m.remaining.set(p.remainingBytes);
        m.processed.set(p.transferredBytes);
        m.transferRate.set(p.bandwidthBps);
        m.dirtyRate.set(p.dirtyPagesRate * PAGE_BYTES);
        m.pass.set(p.pass);
        break;
      }
      case 'pass':
        m.passes.inc();
        m.passSeconds.observe(Math.max(0, e.pass.endMs - e.pass.startMs) / 1000);
        m.downtimeLimit.set(e.pass.downtimeLimitMs / 1000);
        break;
      case 'decision':
        m.decisions.inc({ kind: e.decision.action.kind });
        break;
      case 'command':
        m.commands.inc({ kind: e.command.kind });
        if (e.command.kind === 'setDowntimeLimit') m.downtimeLimit.set(e.command.downtimeLimitMs / 1000);
        if (e.command.kind === 'setThrottle') m.throttle.set(e.command.percent);
        break;
      case 'status':
        m.status.reset();
        m.status.set({ status: e.status }, 1);
        if (e.status.startsWith('postcopy')) m.postcopy.set(1);
        if (!this.started) {
          this.started = true;
          m.start.set((Date.now() - e.atMs) / 1000);
        }
        break;
      case 'workingSet':
        break;
      case 'outcome': {
        const r = e.result;
        m.start.set(Date.parse(r.startedAt) / 1000);
        m.end.set(Date.parse(r.endedAt) / 1000);
        m.succeeded.set(r.outcome === 'completed' ? 1 : 0);
        m.failed.set(r.outcome === 'completed' ? 0 : 1);
        m.outcome.set({ outcome: r.outcome, guest_runs_on: r.guestRunsOn }, 1);
        m.remaining.set(r.outcome === 'completed' ? 0 : (r.passes.at(-1)?.dirtyAtEndBytes ?? 0));
        m.processed.set(r.transferredBytes);
        if (r.postcopy) m.postcopy.set(1);
        if (r.outcome === 'completed') m.qemuDowntime.set(r.qemuDowntimeMs / 1000);
        break;
      }
    }
  };

  /** The exposition text, as a scrape gets it. */
  text(): Promise<string> {
    return this.registry.metrics();
  }

  /** Serves `GET /metrics` (anything else: 404). Resolves with the URL once listening. */
  async serve(addr: { host: string; port: number }): Promise<string> {
    const server = http.createServer((req, res) => {
      if (req.method !== 'GET' || (req.url ?? '/').split('?')[0] !== '/metrics') {
        res.writeHead(404, { 'content-type': 'text/plain' }).end('kvmigrate: GET /metrics\n');
        return;
      }
      this.registry.metrics().then(
        (body) => res.writeHead(200, { 'content-type': this.registry.contentType }).end(body),
        (err: Error) => res.writeHead(500, { 'content-type': 'text/plain' }).end(`${err.message}\n`),
      );
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', (err) =>
        reject(new UsageError(`--metrics: cannot listen on ${addr.host}:${addr.port}: ${err.message}`)),
      );
      server.listen(addr.port, addr.host, () => resolve());
    });
    this.server = server;
    const a = server.address() as AddressInfo;
    const host = a.family === 'IPv6' ? `[${a.address}]` : a.address;
    return `http://${host}:${a.port}/metrics`;
  }

  async close(): Promise<void> {
    const s = this.server;
    this.server = undefined;
    if (!s) return;
    s.closeAllConnections();
    await new Promise<void>((resolve) => s.close(() => resolve()));
  }
}
