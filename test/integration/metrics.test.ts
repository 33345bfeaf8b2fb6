import { spawn } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import type { RunEvent } from '../../src/core/result.js';
import { migrateLab, type LabMigrationResult } from '../../src/lab/lab.js';
import { parseLink } from '../../src/lab/link.js';
import { parseWorkload } from '../../src/lab/workload.js';
import { MigrationMetrics } from '../../src/migration/metrics.js';
import { resolvePolicy } from '../../src/policy/index.js';
import { withLab } from './helpers.js';

// --metrics on a real migration (issue 15 item 7): Prometheus text scraped while it runs, and what
// the endpoint costs the controller. KVMIGRATE_METRICS_COST=N runs N migrations with the endpoint
// off and N with it on (scraped every 250 ms by another process), alternating, and prints controller CPU and decision
// latency for each; without it, one run with the endpoint on is checked.

const lab = { workload: parseWorkload('random:200'), ramMiB: 512, link: parseLink('1gbit') };

interface Run {
  metrics: boolean;
  cpuPct: number;
  /** Pass 1 closed → switchover command, within one observation (core + listeners), µs. */
  decisionUs: number;
  /** The command → QEMU leaves `active` (the result's actionLatencyMs), ms. */
  actionLatencyMs: number | undefined;
  /** Time spent in the metrics listener over the run, ms, and events seen. */
  listenerMs: number;
  events: number;
  scrapes: number;
  scrapeMs: number;
  result: LabMigrationResult;
}

async function once(withMetrics: boolean): Promise<Run> {
  return withLab(lab, async (l) => {
    const metrics = withMetrics
      ? await MigrationMetrics.create({
          policy: 'switch-at-pass',
          source: 'src',
          destination: 'dst',
          migrateUri: l.migrateUri,
        })
      : undefined;
    const url = await metrics?.serve({ host: '127.0.0.1', port: 0 });
    let passAt: number | undefined;
    let decisionUs = NaN;
    let listenerMs = 0;
    let events = 0;
    // Scraped from another process (as Prometheus would), so its CPU is not the controller's.
    const texts: string[] = [];
    let scrapeMs = 0;
    const scraper = url
      ? spawn(
          'node',
          [
            '-e',
            `const u = process.argv[1];
             (async () => { for (;;) {
               const t = performance.now();
               const body = await (await fetch(u)).text();
               process.stdout.write(JSON.stringify({ ms: performance.now() - t, body }) + '\\n');
               await new Promise((r) => setTimeout(r, 250));
             } })();`,
            url,
          ],
          { stdio: ['ignore', 'pipe', 'inherit'] },
        )
      : undefined;
    let buf = '';
    scraper?.stdout!.on('data', (d: Buffer) => {
      buf += d.toString();
      let nl;
      while ((nl = buf.indexOf('\n')) >= 0) {
        const r = JSON.parse(buf.slice(0, nl)) as { ms: number; body: string };
        buf = buf.slice(nl + 1);
        texts.push(r.body);
        scrapeMs += r.ms;
      }
    });
    const stopScraping = async () => {
      if (!scraper || scraper.exitCode !== null || scraper.signalCode !== null) return;
      const gone = new Promise((r) => scraper.once('exit', r));
      scraper.kill();
      await gone;
    };
    const onEvent = (e: RunEvent) => {
      events++;
      if (e.type === 'pass' && e.pass.pass === 1) passAt = performance.now();
      const t = performance.now();
      metrics?.observe(e);
      listenerMs += performance.now() - t;
      if (e.type === 'command' && passAt !== undefined && Number.isNaN(decisionUs))
        decisionUs = (performance.now() - passAt) * 1000;
    };
    try {
      const result = await migrateLab(l, {
        policy: resolvePolicy('switch-at-pass', { pass: 2 }),
        downtimeBudgetMs: 300,
        deadlineMs: 60_000,
        onEvent,
      });
      await stopScraping();
      if (metrics) {
        const last = await metrics.text();
        expect(last).toMatch(/^kvmigrate_migration_succeeded 1$/m);
        expect(last).toMatch(/^kvmigrate_migration_passes_total [1-9]\d*$/m);
        expect(last).toMatch(/^kvmigrate_migration_commands_total\{kind="setDowntimeLimit"\} 1$/m);
        expect(last).toMatch(/^kvmigrate_process_cpu_seconds_total /m);
        // While it ran, a scrape saw it under way.
        expect(texts.some((t) => /^kvmigrate_migration_status\{status="active"\} 1$/m.test(t))).toBe(true);
        expect(texts.some((t) => /^kvmigrate_migration_data_remaining_bytes [1-9]/m.test(t))).toBe(true);
      }
      return {
        metrics: withMetrics,
        cpuPct: result.migration.controllerCpuPct,
        decisionUs,
        actionLatencyMs: result.migration.actionLatencyMs,
        listenerMs,
        events,
        scrapes: texts.length,
        scrapeMs,
        result,
      };
    } finally {
      await stopScraping();
      await metrics?.close();
    }
  });
}

describe('--metrics on a real migration', () => {
  it('serves the pass-level figures while it runs; what it costs', async () => {
    const n = Number(process.env.KVMIGRATE_METRICS_COST ?? 0);
    const runs: Run[] = [];
    if (n === 0) runs.push(await once(true));
    for (let i = 0; i < n; i++) {
      runs.push(await once(false));
      runs.push(await once(true));
    }
    for (const r of runs) {
      expect(r.result.success).toBe(true);
      console.log(
        `metrics ${r.metrics ? 'on ' : 'off'}: controller CPU ${r.cpuPct.toFixed(2)}%, decision ${r.decisionUs.toFixed(0)} µs, ` +
          `action latency ${r.actionLatencyMs?.toFixed(1)} ms, listener ${r.listenerMs.toFixed(2)} ms over ${r.events} events, ` +
          `${r.scrapes} scrapes (${r.scrapes ? (r.scrapeMs / r.scrapes).toFixed(2) : '-'} ms each), wall ${(r.result.migration.wallMs / 1000).toFixed(1)} s`,
      );
    }
  }, 900_000);
});
