import type { Results } from './results.js';
import { headlineMarkdown } from './report.js';

/**
 * README blocks that are generated from committed results, never typed: between
 * `<!-- headline DIR -->` and `<!-- /headline -->` stands `headlineMarkdown` of DIR/results.json.
 */
const BLOCK = /(<!-- headline (\S+) -->\n)([\s\S]*?)(<!-- \/headline -->)/g;

export interface HeadlineBlock {
  /** The results directory, relative to the repository (e.g. `docs/results`). */
  dir: string;
  /** What the README holds now. */
  text: string;
}

/** The generated blocks of a README, in order. */
export function headlineBlocks(readme: string): HeadlineBlock[] {
  return [...readme.matchAll(BLOCK)].map((m) => ({ dir: m[2]!, text: m[3]!.trim() }));
}

/**
 * The README with every generated block recomputed from `load(dir)`; `format` makes the
 * Markdown what the formatter (prettier) would leave, so regeneration and lint agree.
 */
export async function renderHeadlines(
  readme: string,
  load: (dir: string) => Results,
  format: (markdown: string) => Promise<string> | string = (m) => m,
): Promise<string> {
  const out: string[] = [];
  let last = 0;
  for (const m of readme.matchAll(BLOCK)) {
    const body = (await format(headlineMarkdown(load(m[2]!)) + '\n')).trim();
    out.push(readme.slice(last, m.index), m[1]!, '\n', body, '\n\n', m[4]!);
    last = m.index + m[0].length;
  }
  out.push(readme.slice(last));
  return out.join('');
}
