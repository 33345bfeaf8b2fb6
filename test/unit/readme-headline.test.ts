import { readFileSync } from 'node:fs';
import path from 'node:path';
import { format } from 'prettier';
import { describe, expect, it } from 'vitest';
import { headlineBlocks, renderHeadlines } from '../../src/bench/readme.js';
import { readResults } from '../../src/bench/results.js';

const root = path.resolve(import.meta.dirname, '../..');
const readme = readFileSync(path.join(root, 'README.md'), 'utf8');
const load = (dir: string) => readResults(path.join(root, dir, 'results.json'));
const md = (m: string) => format(m, { parser: 'markdown', filepath: 'README.md' });

describe("the README's headline tables", () => {
  it('are generated blocks, one per published results set', () => {
    expect(headlineBlocks(readme).map((b) => b.dir)).toEqual([
      'docs/results',
      'docs/results-postcopy',
      'docs/results-production',
    ]);
  });

  it('recompute exactly from the committed results (npm run readme regenerates them)', async () => {
    expect(await renderHeadlines(readme, load, md)).toBe(readme);
  });

  it('come from results whose commit is in the history and whose tree was clean', async () => {
    const { execFileSync } = await import('node:child_process');
    for (const b of headlineBlocks(readme)) {
      const p = load(b.dir).provenance;
      expect(p?.commit, `${b.dir}: commit recorded`).toMatch(/^[0-9a-f]{40}$/);
      expect(p?.dirty, `${b.dir}: clean tree`).toBe(false);
      // Throws when the commit is not in this repository's history.
      execFileSync('git', ['cat-file', '-e', `${p!.commit}^{commit}`], { cwd: root });
    }
  });
});
