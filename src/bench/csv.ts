/**
 * CSV cells that are safe to open in a spreadsheet: text a spreadsheet would run as a formula
 * (leading = + - @, tab or carriage return) gets a leading apostrophe; numbers stay numbers.
 * Pure.
 */

const FORMULA_START = /^[=+\-@\t\r]/;

export function csvCell(v: unknown): string {
  if (v === null || v === undefined) return '';
  // A number or boolean is written as itself: -12 is a value, not a formula.
  const isValue = typeof v === 'number' || typeof v === 'boolean';
  const t = !isValue && FORMULA_START.test(String(v)) ? `'${String(v)}` : String(v);
  return /[",\n\r]/.test(t) ? `"${t.replace(/"/g, '""')}"` : t;
}

export function csvLine(cells: unknown[]): string {
  return cells.map(csvCell).join(',');
}
