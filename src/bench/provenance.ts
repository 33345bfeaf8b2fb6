import { execFileSync } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { UsageError } from '../util/errors.js';

/** Which code produced a result: the commit, and whether the tree had changes beyond it. */
export interface Provenance {
  /** null when kvmigrate does not run from a git checkout. */
  commit: string | null;
  dirty: boolean | null;
  /** Changed or untracked paths (relative to the repository), the first few. */
  dirtyPaths: string[];
  /** The repository's top directory, when there is one. */
  root: string | null;
}

/** This package's own directory (dist/bench or src/bench → the package root). */
const packageRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

const git = (cwd: string, args: string[]) =>
  execFileSync('git', args, { cwd, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'], timeout: 10_000 });

/** Paths from `git status --porcelain` lines (renames: the new path; quoted names unquoted). */
export function porcelainPaths(porcelain: string): string[] {
  return porcelain
    .split('\n')
    .filter((l) => l.length > 3)
    .map((l) => {
      const p = l.slice(3);
      const to = p.includes(' -> ') ? p.slice(p.indexOf(' -> ') + 4) : p;
      return to.startsWith('"') ? (JSON.parse(to) as string) : to;
    });
}

/**
 * Paths that make the tree dirty for a run writing into `outRel` (relative to the repository):
 * the output directory's own files are the run's product, not the code that ran.
 */
export function dirtyPaths(paths: string[], outRel: string | null): string[] {
  const out = outRel === null ? null : outRel.replace(/\/+$/, '') + '/';
  return paths.filter((p) => out === null || !(p + (p.endsWith('/') ? '' : '/')).startsWith(out));
}

/** The commit and tree state of the checkout kvmigrate runs from; `out` is excluded from the dirty check. */
export function gitProvenance(out?: string, cwd = packageRoot): Provenance {
  try {
    const root = git(cwd, ['rev-parse', '--show-toplevel']).trim();
    const commit = git(root, ['rev-parse', 'HEAD']).trim();
    const rel = out === undefined ? null : path.relative(root, path.resolve(out));
    const inside = rel !== null && rel !== '' && !rel.startsWith('..') && !path.isAbsolute(rel);
    const changed = dirtyPaths(
      porcelainPaths(git(root, ['status', '--porcelain', '--untracked-files=all'])),
      inside ? rel : null,
    );
    return { commit, dirty: changed.length > 0, dirtyPaths: changed.slice(0, 20), root };
  } catch {
    return { commit: null, dirty: null, dirtyPaths: [], root: null };
  }
}

/** Whether `out` is the repository's docs/ or inside it. */
export function isUnderDocs(root: string, out: string): boolean {
  const rel = path.relative(path.join(root, 'docs'), path.resolve(out));
  return rel === '' || (!rel.startsWith('..') && !path.isAbsolute(rel));
}

/** Published results come from committed code: refuse to write into docs/ from a dirty tree. */
export function assertPublishable(p: Provenance, out: string): void {
  if (p.root === null || !isUnderDocs(p.root, out)) return;
  if (p.dirty)
    throw new UsageError(
      `refusing to write into ${path.relative(p.root, path.resolve(out))} from a dirty tree (${p.dirtyPaths.slice(0, 3).join(', ')}${p.dirtyPaths.length > 3 ? ', …' : ''}): commit first`,
    );
}
