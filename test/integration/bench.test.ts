import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { chromium } from 'playwright-core';
import { afterAll, describe, expect, it } from 'vitest';
import { readResults, ResultsSchema } from '../../src/bench/results.js';
import { summarize } from '../../src/bench/summary.js';
import { kvmigrateSync } from '../support/cli.js';

const out = mkdtempSync(path.join(os.tmpdir(), 'kvm-bench-'));
afterAll(() => rmSync(out, { recursive: true, force: true }));

const kvmigrate = (args: string[]) => kvmigrateSync(args, { timeoutMs: 900_000 });

describe('kvmigrate bench --quick, end to end', () => {
  it('runs a mini-matrix and writes results that parse and reports that render', async () => {
    const r = kvmigrate([
      'bench', '--quick', '--reps', '1', '--workloads', 'random:200,idle', '--policies', 'stock,frs',
      '--ram', '512', '--deadline', '8', '--out', out,
    ]); // prettier-ignore
    expect(r.code, r.stderr).toBe(0);
    for (const f of ['results.json', 'results.csv', 'report.md', 'report.html'])
      expect(existsSync(path.join(out, f))).toBe(true);

    const results = readResults(path.join(out, 'results.json'));
    expect(ResultsSchema.safeParse(results).success).toBe(true);
    expect(results.runs.filter((x) => x.role === 'matrix')).toHaveLength(4);
    // Every figure traces to per-run numbers: the summary's medians are those of the runs.
    const sum = summarize(results);
    const frs = results.runs.find((x) => x.workload === 'random:200' && x.policy === 'frs')!;
    const cell = sum.cells.find((c) => c.workload === 'random:200' && c.policy === 'frs')!;
    expect(cell.totalMs.median).toBe(frs.success ? frs.totalTimeMs : NaN);
    // The summary runs over the workload set fixed before the run, not over "where stock failed".
    expect(sum.summary.workloads).toEqual(['random:200', 'idle']);
    expect(results.config?.workloads).toEqual(['random:200', 'idle']);
    // Provenance: the commit the code came from and whether the tree was dirty.
    expect(results.provenance?.commit).toMatch(/^[0-9a-f]{40}$/);
    expect(typeof results.provenance?.dirty).toBe('boolean');
    // One guest-felt metric on every run, whatever its outcome; QEMU's own downtime beside it.
    for (const run of results.runs) {
      expect(run.totalStallMs, run.key).toEqual(expect.any(Number));
      expect(run.longestSilenceMs!, run.key).toBeGreaterThan(0);
      expect(run.sloSuccess).toBe(run.success && run.totalStallMs! <= results.matrix.downtimeBudgetMs);
      if (run.outcome === 'completed') expect(run.guestDowntimeMs).toBe(run.totalStallMs);
      // How it was verified, honestly: RAM byte for byte, the guest's own check only (post-copy), or none.
      expect(run.verification, run.key).toBe(
        run.outcome !== 'completed'
          ? 'none'
          : run.differingPages === null
            ? 'guest-check-only'
            : 'byte-for-byte',
      );
    }
    // Interleaved and rotated: rep by rep, every policy once per workload.
    expect(results.runs.map((x) => x.rep)).toEqual(results.runs.map(() => 0));
    expect(results.config?.ladder?.length).toBeGreaterThan(0);
    // A completed stop-and-copy of a memory-intensive guest: the guest felt at least QEMU's pause.
    if (frs.success && frs.qemuDowntimeMs > 200)
      expect(frs.totalStallMs!).toBeGreaterThan(frs.qemuDowntimeMs * 0.5);
    const csv = readFileSync(path.join(out, 'results.csv'), 'utf8').trim().split('\n');
    expect(csv).toHaveLength(results.runs.length + 1);
    expect(csv[0]).toContain('totalStallMs,longestSilenceMs,slowdown,qemuDowntimeMs');
    expect(csv[0]).toContain('verification');
    expect(readFileSync(path.join(out, 'report.md'), 'utf8')).toMatch(/## Verification\n\nOf 4 runs: /);
    expect(readFileSync(path.join(out, 'report.md'), 'utf8')).toMatch(/\| stock \| 0% \(1\) \|/);
    const html = readFileSync(path.join(out, 'report.html'), 'utf8');
    expect(html).not.toContain('<pre>');
    expect(html).toMatch(/<table>[\s\S]*<th scope="row">stock<\/th>/);

    // The HTML is self-contained and its charts render in a real browser.
    const browser = await chromium.launch({
      executablePath: '/usr/bin/chromium',
      args: [
        '--headless',
        '--no-sandbox',
        '--disable-gpu',
        '--disable-background-networking',
        '--disable-component-update',
        '--no-first-run',
      ],
    });
    try {
      const page = await browser.newPage();
      await page.goto(`file://${path.join(out, 'report.html')}`);
      expect(await page.locator('table').count()).toBeGreaterThanOrEqual(3);
      const charts = await page.locator('figure.chart svg').count();
      expect(charts).toBe(6);
      const marks = await page.locator('figure.chart svg path, figure.chart svg rect').count();
      expect(marks).toBeGreaterThan(20);
      const box = await page.locator('figure.chart svg').first().boundingBox();
      expect(box!.width).toBeGreaterThan(100);
    } finally {
      await browser.close();
    }

    // `report` regenerates the same reports from results.json alone.
    rmSync(path.join(out, 'report.md'));
    expect(kvmigrate(['report', out]).code).toBe(0);
    expect(existsSync(path.join(out, 'report.md'))).toBe(true);

    // The simulator against these real runs: the same policies on the same RAM, link and budget.
    const v = kvmigrate(['sim', '--validate', out]);
    expect(v.code, v.stderr).toBe(0);
    process.stdout.write(`\nsimulator vs this real --quick run:\n${v.stdout}\n`);
    const rows = v.stdout.split('\n').filter((l) => /^\| (random:200|idle) \|/.test(l));
    // Every cell with a completed run: stock never completes random:200 (asserted above).
    expect(rows.length).toBe(3);
    expect(v.stdout).toMatch(/median \|error\|: total [+−]\d+%/);
  });

  it('names what is wrong: a malformed results.json, an unknown workload or policy', () => {
    const bad = path.join(out, 'bad');
    rmSync(bad, { recursive: true, force: true });
    spawnSync('mkdir', ['-p', bad]);
    writeFileSync(path.join(bad, 'results.json'), JSON.stringify({ version: 1, runs: 'nope' }));
    const r = kvmigrate(['report', bad]);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/^kvmigrate: .*results\.json is malformed at /);
    const w = kvmigrate(['bench', '--workloads', 'random:x', '--out', bad]);
    expect(w.stderr).toMatch(/^kvmigrate: unknown workload 'random:x'/);
    const p = kvmigrate(['bench', '--policies', 'stock,best', '--out', bad]);
    expect(p.stderr).toMatch(/^kvmigrate: unknown policy 'best'/);
  });
});
