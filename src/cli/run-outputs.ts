import type { Command } from 'commander';
import type { RunEvent } from '../core/result.js';
import { EventWriter, eventSink } from '../migration/events.js';
// metrics.ts loads prom-client itself, only when MigrationMetrics.create() runs (--metrics).
import { MigrationMetrics, parseListenAddress, type MetricsInfo } from '../migration/metrics.js';
import { UsageError } from '../util/errors.js';
import { classifyError } from './errors.js';

/** `--events` and `--metrics`, shared by `migrate` and `lab migrate`. */
export function runOutputOptions(cmd: Command): Command {
  return cmd
    .option(
      '--events <file>',
      'write every event of the run as NDJSON to FILE, or - for stdout (docs/schema/events.schema.json); the outcome is the last line',
    )
    .option(
      '--metrics <addr>',
      'serve Prometheus metrics at http://ADDR/metrics while the migration runs (HOST:PORT or PORT, e.g. 127.0.0.1:9464)',
    )
    .option(
      '--metrics-linger <s>',
      'keep serving the final metrics this long after the end, so a scrape sees the outcome (default 0)',
    );
}

/**
 * What a run writes besides its result: the `--events` stream, the `--metrics` endpoint, and
 * whatever else listens (the control socket). One `onEvent` for the session feeds them all; a
 * listener that throws is dropped, never the migration.
 */
export class RunOutputs {
  private readonly listeners: ((e: RunEvent) => void)[] = [];
  private ended = false;

  private constructor(
    private readonly events: EventWriter | undefined,
    private readonly metrics: MigrationMetrics | undefined,
    /** Where the metrics are served. */
    readonly metricsUrl: string | undefined,
    private readonly lingerMs: number,
  ) {
    if (events) this.listeners.push(events.write);
    if (metrics) this.listeners.push(metrics.observe);
  }

  /**
   * Opens what the flags ask for; bad input (a file that cannot be created, an address in use)
   * is a UsageError before the migration starts. prom-client is imported only with --metrics.
   */
  static async open(
    o: { events?: string; metrics?: string; metricsLinger?: string },
    info: MetricsInfo,
  ): Promise<RunOutputs> {
    const addr = o.metrics !== undefined ? parseListenAddress(o.metrics) : undefined;
    const lingerS = Number(o.metricsLinger ?? 0);
    if (o.metricsLinger !== undefined && (!(lingerS >= 0 && lingerS <= 3600) || o.metrics === undefined))
      throw new UsageError(
        o.metrics === undefined
          ? '--metrics-linger needs --metrics'
          : `--metrics-linger ${o.metricsLinger}: give seconds from 0 to 3600`,
      );
    let events: EventWriter | undefined;
    if (o.events !== undefined) {
      try {
        events = EventWriter.open(eventSink(o.events));
      } catch (err) {
        throw new UsageError(`--events ${o.events}: ${(err as Error).message}`);
      }
    }
    let metrics: MigrationMetrics | undefined;
    let url: string | undefined;
    if (addr) {
      try {
        metrics = await MigrationMetrics.create(info);
        url = await metrics.serve(addr);
      } catch (err) {
        events?.close();
        throw err;
      }
    }
    return new RunOutputs(events, metrics, url, lingerS * 1000);
  }

  /** The events go to stdout (`--events -`): the result is the stream's last line, not printed again. */
  get eventsOnStdout(): boolean {
    return this.events?.sink.kind === 'stdout';
  }

  /** Why the event stream stopped early, if it did (a full disk, a closed pipe). */
  get eventsError(): string | undefined {
    return this.events?.error;
  }

  listen(f: (e: RunEvent) => void): void {
    this.listeners.push(f);
  }

  /** For `SessionOptions.onEvent`. */
  readonly onEvent = (e: RunEvent): void => {
    if (e.type === 'outcome') this.ended = true;
    for (let i = 0; i < this.listeners.length; i++) {
      try {
        this.listeners[i]!(e);
      } catch {
        this.listeners.splice(i--, 1);
      }
    }
  };

  /** The command failed: an `error` line ends the event stream (as its --json error says it). */
  failed(err: unknown): void {
    this.events?.writeError(classifyError(err));
  }

  /** Closes the stream; the metrics endpoint after `--metrics-linger` once the run has its outcome. */
  async close(): Promise<void> {
    this.events?.close();
    if (this.ended && this.metrics && this.lingerMs > 0)
      await new Promise((r) => setTimeout(r, this.lingerMs));
    await this.metrics?.close();
  }
}
