// Zeroes every full page's payload in a recorded QEMU migration stream, keeping its framing
// byte for byte, so a real multi-pass recording can be committed as a small fixture.
// Usage: npx tsx scripts/sanitize-stream.mts IN OUT.gz
import { readFileSync, writeFileSync } from 'node:fs';
import { gzipSync } from 'node:zlib';
import { MigrationStreamParser } from '../src/tap/parser.js';

const [input, output] = process.argv.slice(2);
if (!input || !output) throw new Error('usage: sanitize-stream IN OUT.gz');
const data = readFileSync(input);
const parser = new MigrationStreamParser({
  onPayload: (offset, length) => data.fill(0, offset, offset + length),
});
parser.feed(data);
if (parser.state === 'unavailable') throw new Error(`cannot parse ${input}: ${parser.unavailableReason}`);
writeFileSync(output, gzipSync(data, { level: 9 }));
console.log(`${parser.normalPages} full pages, ${parser.zeroPages} zero pages; wrote ${output}`);
