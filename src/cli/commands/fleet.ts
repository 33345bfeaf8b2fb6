import { mkdirSync } from 'node:fs';
import { writeFileAtomic } from '../../util/fs.js';
import { toHtml, toMarkdown } from '../../bench/tables.js';
import {
  fleetBlocks,
  lowerBoundMs,
  plannerFloorMs,
  plannerVerdict,
  runStrategies,
  SUMMARY_HEAD,
  summaryRows,
} from '../../bench/fleet-report.js';
import { readFleet } from '../../sim/fleet-spec.js';
import { table } from '../format.js';

export interface FleetCommandOptions {
  fleet: string;
  strategies: string[];
  json?: boolean;
  out?: string;
}

/** `kvmigrate sim --fleet FILE`: the evacuation under each strategy, as a table (and a report with --out). */
export async function runFleetCommand(o: FleetCommandOptions): Promise<void> {
  const fleet = await readFleet(o.fleet);
  const results = runStrategies(fleet, o.strategies);
  if (o.json) {
    for (const r of results) process.stdout.write(JSON.stringify(r) + '\n');
  } else {
    const verdict = plannerVerdict(results, lowerBoundMs(fleet), plannerFloorMs(fleet));
    process.stdout.write(
      `${fleet.vms.length} VMs, downtime SLO ${fleet.spec.downtimeSloMs} ms, setup ${fleet.spec.setupS} s per migration\n` +
        `${table([SUMMARY_HEAD, ...summaryRows(results)])}\n${verdict ? verdict + '\n' : ''}`,
    );
  }
  if (o.out) {
    mkdirSync(o.out, { recursive: true });
    const blocks = fleetBlocks(fleet, results, o.fleet);
    writeFileAtomic(`${o.out}/fleet-results.json`, JSON.stringify(results, null, 1));
    writeFileAtomic(`${o.out}/report.md`, toMarkdown(blocks));
    writeFileAtomic(
      `${o.out}/report.html`,
      `<!doctype html>\n<html lang="en"><head><meta charset="utf-8"><title>kvmigrate evacuation what-if</title>\n<style>body{font-family:system-ui,sans-serif;margin:2rem}table{border-collapse:collapse;font-size:13px}th,td{border:1px solid #ddd;padding:0.2rem 0.5rem}.num{text-align:right}</style></head><body>\n${toHtml(blocks)}\n</body></html>\n`,
    );
    process.stderr.write(`wrote ${o.out}/fleet-results.json, report.md, report.html\n`);
  }
}
