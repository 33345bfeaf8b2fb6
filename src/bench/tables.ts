/**
 * A report as data — headings, paragraphs, tables — rendered to Markdown (report.md) and to real
 * HTML (report.html) from the same blocks, so the two never disagree. Pure.
 */

export interface Table {
  head: string[];
  /** Per column: numbers right-aligned. Default: the first column left, the rest right. */
  align?: ('left' | 'right')[];
  rows: string[][];
}

export type Block =
  | { kind: 'heading'; level: 1 | 2; text: string }
  | { kind: 'paragraph'; text: string }
  | { kind: 'table'; table: Table };

const alignOf = (t: Table, i: number) => t.align?.[i] ?? (i === 0 ? 'left' : 'right');

/** A Markdown cell: pipes escaped, line breaks flattened. */
const mdCell = (c: string) => c.replace(/\|/g, '\\|').replace(/\r?\n/g, ' ');

export function markdownTable(t: Table): string {
  const line = (cells: string[]) => `| ${cells.map(mdCell).join(' | ')} |`;
  const rule = `|${t.head.map((_, i) => (alignOf(t, i) === 'right' ? '---:' : '---')).join('|')}|`;
  return [line(t.head), rule, ...t.rows.map(line)].join('\n');
}

export function toMarkdown(blocks: Block[]): string {
  const out: string[] = [];
  for (const b of blocks) {
    if (b.kind === 'heading') out.push(`${'#'.repeat(b.level)} ${b.text}`, '');
    else if (b.kind === 'paragraph') out.push(b.text, '');
    else out.push(markdownTable(b.table), '');
  }
  return out.join('\n');
}

export function escapeHtml(t: string): string {
  return t
    .replace(/&/g, '&amp;')
    .replace(/</g, '&lt;')
    .replace(/>/g, '&gt;')
    .replace(/"/g, '&quot;')
    .replace(/'/g, '&#39;');
}

/** Inline Markdown the report's prose uses (`code`, **bold**), on already-escaped text. */
function inline(escaped: string): string {
  return escaped.replace(/`([^`]+)`/g, '<code>$1</code>').replace(/\*\*([^*]+)\*\*/g, '<b>$1</b>');
}

export function htmlTable(t: Table): string {
  const cls = (i: number) => (alignOf(t, i) === 'right' ? ' class="num"' : '');
  const head = t.head.map((h, i) => `<th scope="col"${cls(i)}>${escapeHtml(h)}</th>`).join('');
  const rows = t.rows.map(
    (r) =>
      `<tr>${t.head
        .map((_, i) => {
          const c = escapeHtml(r[i] ?? '');
          return i === 0 ? `<th scope="row">${c}</th>` : `<td${cls(i)}>${c}</td>`;
        })
        .join('')}</tr>`,
  );
  return `<table>\n<thead><tr>${head}</tr></thead>\n<tbody>\n${rows.join('\n')}\n</tbody>\n</table>`;
}

export function toHtml(blocks: Block[]): string {
  return blocks
    .map((b) => {
      if (b.kind === 'heading') return `<h${b.level}>${escapeHtml(b.text)}</h${b.level}>`;
      if (b.kind === 'paragraph') return `<p>${inline(escapeHtml(b.text))}</p>`;
      return htmlTable(b.table);
    })
    .join('\n');
}
