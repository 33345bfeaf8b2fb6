// Regenerates the README's headline tables (the `<!-- headline DIR -->` blocks) from the committed
// results: `npm run readme`. test/unit/readme-headline.test.ts fails while they differ.
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { format } from 'prettier';
import { renderHeadlines } from '../src/bench/readme.js';
import { readResults } from '../src/bench/results.js';

const root = path.resolve(import.meta.dirname, '..');
const file = path.join(root, 'README.md');
const before = readFileSync(file, 'utf8');
const after = await renderHeadlines(
  before,
  (dir) => readResults(path.join(root, dir, 'results.json')),
  (md) => format(md, { parser: 'markdown', filepath: file }),
);
if (after !== before) writeFileSync(file, after);
process.stdout.write(after === before ? 'README headlines up to date\n' : 'README headlines regenerated\n');
