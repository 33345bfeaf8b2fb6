// What adaptive's calc-dirty-rate sampling costs the guest and the migration (docs/sampling-cost.md).
// Boots real lab guests (root, TCG): run it under the lab lock, e.g.
//   flock /tmp/kvmigrate-lab.lock npx tsx scripts/sampling-cost.mts --reps 5 --out /tmp/sampling-cost
// Options: --reps N (labs per workload and sampler setting), --workloads a,b, --blocks N (idle
// block pairs per lab), --block-ms MS, --link 1gbit|256mbit|…, --from results.json… (print the tables
// of earlier runs, no lab), --out DIR (results.json + tables.md, rewritten after each lab).
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import {
  measureSamplingCost,
  samplingTables,
  type IdleBlock,
  type MigrationRun,
} from '../src/bench/sampling-cost.js';
import { parseLink } from '../src/lab/link.js';
import { isAppWorkload, parseLabWorkload } from '../src/util/specs.js';

const { values } = parseArgs({
  options: {
    reps: { type: 'string', default: '5' },
    workloads: { type: 'string', default: 'random:200,app:memcached:32:2:16' },
    blocks: { type: 'string', default: '3' },
    'block-ms': { type: 'string', default: '4000' },
    link: { type: 'string', default: '1gbit' },
    out: { type: 'string', default: 'results/sampling-cost' },
    /** Re-render the tables of earlier runs' results.json files (no lab). */
    from: { type: 'string', multiple: true },
  },
});
if (values.from) {
  const all = values.from.map(
    (f) => JSON.parse(readFileSync(f, 'utf8')) as { idle: IdleBlock[]; runs: MigrationRun[] },
  );
  console.log(
    samplingTables(
      all.flatMap((r) => r.idle),
      all.flatMap((r) => r.runs),
    ),
  );
  process.exit(0);
}
const out = path.resolve(values.out);
mkdirSync(out, { recursive: true });
const idle: IdleBlock[] = [];
const runs: MigrationRun[] = [];
const save = () => {
  writeFileSync(path.join(out, 'results.json'), JSON.stringify({ idle, runs }, null, 2) + '\n');
  writeFileSync(path.join(out, 'tables.md'), samplingTables(idle, runs) + '\n');
};
await measureSamplingCost({
  workloads: values.workloads.split(',').map(parseLabWorkload),
  reps: Number(values.reps),
  ramMiB: 512,
  link: parseLink(values.link),
  blocks: Number(values.blocks),
  blockMs: Number(values['block-ms']),
  deadlineMs: (w) => (isAppWorkload(w) ? 60_000 : 20_000),
  onIdle: (b) => {
    idle.push(...b);
    save();
  },
  onRun: (r) => {
    runs.push(r);
    save();
  },
  log: (line) => console.error(`${new Date().toISOString().slice(11, 19)} ${line}`),
});
console.log(samplingTables(idle, runs));
