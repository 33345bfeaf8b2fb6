import { describe, expect, it } from 'vitest';
import { benchConfig, BENCH_CONFIGS, BenchConfigSchema, summaryConfig } from '../../src/bench/config.js';
import { csvCell, csvLine } from '../../src/bench/csv.js';
import { assertPublishable, dirtyPaths, isUnderDocs, porcelainPaths } from '../../src/bench/provenance.js';
import { reportHtml, reportMarkdown, resultsCsv } from '../../src/bench/report.js';
import { ResultsSchema, type Results, type RunRecord } from '../../src/bench/results.js';
import { benchConfigOf, optionsFromConfig } from '../../src/bench/run.js';
import { geoRatiosOf, medianRatio, summarize } from '../../src/bench/summary.js';
import { runRecord } from '../support/run-record.js';
import { escapeHtml, htmlTable, markdownTable, toHtml, toMarkdown } from '../../src/bench/tables.js';

const run = runRecord;

function results(runs: RunRecord[], workloads: string[], summaryWorkloads?: string[]): Results {
  const base = {
    workloads,
    policies: ['stock', 'relaxed', 'frs'],
    ramMiB: 512,
    link: '1gbit',
    reps: 1,
    downtimeBudgetMs: 300,
    deadlineS: 20,
    out: '/tmp/x',
  };
  return ResultsSchema.parse({
    version: 1,
    createdAt: '2026-11-27T00:00:00.000Z',
    environment: {
      qemu: 'QEMU 10',
      kernelPackage: 'k',
      hostKernel: 'h',
      cpu: 'c',
      cores: 2,
      accel: 'tcg',
      node: 'v20',
    },
    matrix: { ...base, postcopyPermitted: false },
    config: benchConfigOf({ ...base, summaryWorkloads }),
    provenance: { commit: 'abcdef1234567890', dirty: false, commits: ['abcdef1234567890'] },
    relaxedLimitMs: 2000,
    runs,
  });
}

describe('CSV cells a spreadsheet would run', () => {
  it('prefixes text starting with = + - @ tab or CR with an apostrophe', () => {
    for (const bad of ['=1+1', '+cmd', '-2+3', '@SUM(A1)', '\tx', '\rx'])
      expect(csvCell(bad).replace(/^"|"$/g, '').startsWith(`'${bad[0]}`)).toBe(true);
    expect(csvCell('=HYPERLINK("http://x")')).toBe(`"'=HYPERLINK(""http://x"")"`);
  });

  it('leaves numbers, booleans and ordinary text alone, quotes separators', () => {
    expect(csvCell(-12.5)).toBe('-12.5');
    expect(csvCell(0)).toBe('0');
    expect(csvCell(false)).toBe('false');
    expect(csvCell(null)).toBe('');
    expect(csvCell(undefined)).toBe('');
    expect(csvCell('relaxed(2000)')).toBe('relaxed(2000)');
    expect(csvCell('a,b')).toBe('"a,b"');
    expect(csvCell('a\nb')).toBe('"a\nb"');
    expect(csvCell('say "hi"')).toBe('"say ""hi"""');
    expect(csvCell('a=b')).toBe('a=b');
    expect(csvLine(['x', 1, null, '=2'])).toBe("x,1,,'=2");
  });

  it('results.csv escapes a hostile reason and keeps one line per run', () => {
    const r = results(
      [run({ workload: 'random:200', policy: 'stock', reason: '=cmd|"/c calc"!A1' })],
      ['random:200'],
    );
    const lines = resultsCsv(r).trim().split('\n');
    expect(lines).toHaveLength(2);
    expect(lines[0]).toContain('totalStallMs,longestSilenceMs,slowdown');
    expect(lines[1]!.endsWith(`"'=cmd|""/c calc""!A1"`)).toBe(true);
  });
});

describe('report tables', () => {
  const t = {
    head: ['policy', 'total s'],
    rows: [
      ['<b>x</b> & "y"', '1.00'],
      ['a|b', '2'],
    ],
  };

  it('renders HTML tables with escaped cells, header cells and numeric alignment', () => {
    const h = htmlTable(t);
    expect(h).toMatch(
      /^<table>\n<thead><tr><th scope="col">policy<\/th><th scope="col" class="num">total s<\/th><\/tr><\/thead>/,
    );
    expect(h).toContain(
      '<th scope="row">&lt;b&gt;x&lt;/b&gt; &amp; &quot;y&quot;</th><td class="num">1.00</td>',
    );
    expect(h).not.toContain('<b>x</b>');
    expect(h.match(/<tr>/g)).toHaveLength(3);
    expect(escapeHtml(`'`)).toBe('&#39;');
  });

  it('pads short rows rather than shifting columns', () => {
    expect(htmlTable({ head: ['a', 'b', 'c'], rows: [['1']] })).toContain(
      '<th scope="row">1</th><td class="num"></td><td class="num"></td>',
    );
  });

  it('renders the same blocks as Markdown, pipes escaped, alignment kept', () => {
    expect(markdownTable(t)).toBe(
      '| policy | total s |\n|---|---:|\n| <b>x</b> & "y" | 1.00 |\n| a\\|b | 2 |',
    );
    expect(markdownTable({ ...t, align: ['left', 'left'] }).split('\n')[1]).toBe('|---|---|');
    const blocks = [
      { kind: 'heading' as const, level: 2 as const, text: 'A & B' },
      { kind: 'paragraph' as const, text: '**bold** and `code` <x>' },
    ];
    expect(toMarkdown(blocks)).toBe('## A & B\n\n**bold** and `code` <x>\n');
    expect(toHtml(blocks)).toBe('<h2>A &amp; B</h2>\n<p><b>bold</b> and <code>code</code> &lt;x&gt;</p>');
  });
});

describe('summary over a fixed workload set', () => {
  const workloads = ['random:200', 'rate:200:20000'];
  const runs = [
    run({ workload: 'random:200', policy: 'stock', success: false }),
    run({ workload: 'random:200', policy: 'relaxed(2000)', totalStallMs: 2000, totalTimeMs: 20_000 }),
    run({ workload: 'random:200', policy: 'frs', totalStallMs: 1000, totalTimeMs: 10_000 }),
    run({ workload: 'rate:200:20000', policy: 'stock', totalStallMs: 100 }),
    run({ workload: 'rate:200:20000', policy: 'relaxed(2000)', totalStallMs: 100, totalTimeMs: 10_000 }),
    run({ workload: 'rate:200:20000', policy: 'frs', totalStallMs: 400, totalTimeMs: 10_000 }),
  ];

  it('takes the geometric mean over every configured workload, not only where stock failed', () => {
    const sum = summarize(results(runs, workloads));
    const frs = sum.perPolicy.find((p) => p.policy === 'frs')!;
    // random: stall 0.5×, rate: 4× → geometric mean 1.41; with the old filter it was 0.5.
    expect(frs.geoVsRelaxed!.stall.estimate).toBeCloseTo(Math.sqrt(0.5 * 4), 9);
    expect(frs.geoVsRelaxed!.total.estimate).toBeCloseTo(Math.sqrt(0.5 * 1), 9);
    // One run per cell: no interval, so no verdict either way.
    expect(frs.geoVsRelaxed!.stall.lo).toBeNaN();
    expect(sum.summary.workloads).toEqual(workloads);
    expect(sum.summary.statistic).toBe('geomean-of-median-ratios-vs-relaxed');
  });

  it('a policy with no ratio on one workload gets no mean, and the report says why', () => {
    const sum = summarize(results(runs, workloads));
    const stock = sum.perPolicy.find((p) => p.policy === 'stock')!;
    expect(stock.geoVsRelaxed).toBeUndefined();
    expect(stock.missing).toEqual(['random:200']);
    expect(reportMarkdown(results(runs, workloads))).toContain('No ratio: stock (random:200)');
  });

  it('honours a narrower set fixed in the config', () => {
    const sum = summarize(results(runs, workloads, ['random:200']));
    expect(sum.perPolicy.find((p) => p.policy === 'frs')!.geoVsRelaxed!.stall.estimate).toBeCloseTo(0.5, 9);
  });

  it('ranks and rates by total stall; SLO success is in the headline table', () => {
    const sum = summarize(results(runs, workloads));
    const cell = sum.cells.find((c) => c.workload === 'random:200' && c.policy === 'frs')!;
    expect(cell.stallMs.median).toBe(1000);
    expect(cell.longestSilenceMs.median).toBe(150);
    const md = reportMarkdown(results(runs, workloads));
    expect(md).toContain('| policy | success | SLO success (stall ≤ 300 ms) |');
    expect(md).toMatch(/\| frs \| 100% \| 0% \| −29% \? \| \+41% \? \|/);
    expect(md).toContain('Provenance: commit `abcdef123456`, clean tree.');
  });

  it('zero stalls on both sides are a tie; a zero or infinite ratio voids the mean', () => {
    expect(medianRatio(0, 0)).toBe(1);
    expect(medianRatio(10, 0)).toBe(Infinity);
    const a = run({ workload: 'w', policy: 'a', totalStallMs: 0 });
    const b = run({ workload: 'w', policy: 'b', totalStallMs: 100 });
    const failed = run({ workload: 'w', policy: 'c', success: false });
    expect(
      geoRatiosOf(
        [
          { a: [b], b: [b] },
          { a: [a], b: [b] },
        ],
        'k',
      )!.stall.estimate,
    ).toBeNaN();
    expect(geoRatiosOf([{ a: [a], b: [a] }], 'k')!.stall.estimate).toBe(1);
    expect(
      geoRatiosOf(
        [
          { a: [b], b: [b] },
          { a: [failed], b: [b] },
        ],
        'k',
      ),
    ).toBeUndefined();
    expect(geoRatiosOf([], 'k')).toBeUndefined();
  });

  it('falls back to the recorded guestDowntimeMs for results without a total stall, and says so', () => {
    const old = runs.map(
      ({ totalStallMs: _t, longestSilenceMs: _l, slowdown: _s, ...r }) =>
        ({ ...r, guestDowntimeMs: r.success ? 777 : null }) as RunRecord,
    );
    const sum = summarize(results(old, workloads));
    expect(sum.legacyDowntime).toBe(true);
    expect(sum.cells.find((c) => c.workload === 'random:200' && c.policy === 'frs')!.stallMs.median).toBe(
      777,
    );
    expect(reportMarkdown(results(old, workloads))).toContain('some runs carry no total stall');
  });
});

describe('report.html', () => {
  it('is self-contained, with HTML tables and no Markdown in a <pre>', async () => {
    const runs = [
      run({ workload: 'random:200', policy: 'stock', success: false }),
      run({ workload: 'random:200', policy: 'frs <script>' }),
    ];
    const html = await reportHtml(results(runs, ['random:200']));
    expect(html).not.toContain('<pre>');
    expect(html).not.toMatch(/\|---/);
    expect(html.match(/<table>/g)!.length).toBeGreaterThanOrEqual(2);
    expect(html).toContain('<th scope="row">frs &lt;script&gt;</th>');
    expect(html).not.toContain('frs <script>');
    expect(html).not.toMatch(/<script|<link|src="http|href="http/);
    expect(html.match(/<figure class="chart"/g)).toHaveLength(6);
  });
});

describe('bench config and provenance', () => {
  it('the committed configs parse and put every workload in the summary', () => {
    for (const name of Object.keys(BENCH_CONFIGS)) {
      const c = benchConfig(name);
      expect(BenchConfigSchema.safeParse(c).success).toBe(true);
      expect(c.summary.workloads).toEqual(c.workloads);
      expect(c.reps).toBeGreaterThanOrEqual(5);
    }
    expect(benchConfigOf(optionsFromConfig(benchConfig('postcopy'), { out: '/tmp/x' }))).toEqual(
      benchConfig('postcopy'),
    );
    expect(() => benchConfig('nope')).toThrow(/unknown bench config 'nope'/);
    expect(() => summaryConfig(['a'], ['b'])).toThrow(/not in the run: b/);
  });

  it('reads paths from git status, renames and quoted names included', () => {
    const out = porcelainPaths(' M src/a.ts\n?? docs/results/x.json\nR  old.ts -> new.ts\n?? "we ird.ts"\n');
    expect(out).toEqual(['src/a.ts', 'docs/results/x.json', 'new.ts', 'we ird.ts']);
    expect(dirtyPaths(out, 'docs/results')).toEqual(['src/a.ts', 'new.ts', 'we ird.ts']);
    expect(dirtyPaths(['docs/results-postcopy/x'], 'docs/results')).toEqual(['docs/results-postcopy/x']);
    expect(dirtyPaths(out, null)).toHaveLength(4);
  });

  it('refuses to write into docs/ from a dirty tree, in one line', () => {
    expect(isUnderDocs('/r', '/r/docs/results')).toBe(true);
    expect(isUnderDocs('/r', '/r/docs')).toBe(true);
    expect(isUnderDocs('/r', '/r/docsx')).toBe(false);
    expect(isUnderDocs('/r', '/tmp/out')).toBe(false);
    const dirty = { commit: 'abc', dirty: true, dirtyPaths: ['src/a.ts'], root: '/r' };
    expect(() => assertPublishable(dirty, '/r/docs/results')).toThrow(
      /^refusing to write into docs\/results from a dirty tree \(src\/a\.ts\): commit first$/,
    );
    expect(() => assertPublishable(dirty, '/tmp/out')).not.toThrow();
    expect(() => assertPublishable({ ...dirty, dirty: false }, '/r/docs/results')).not.toThrow();
    expect(() => assertPublishable({ ...dirty, root: null }, '/r/docs/results')).not.toThrow();
  });
});

describe('against the strongest baseline (issue 17)', () => {
  // relaxed(L*) runs are the ladder's at L* (2000 here).
  const ladder = (workload: string, rep: number, totalStallMs: number) =>
    run({
      workload,
      policy: 'relaxed(2000)',
      policyName: 'relaxed',
      policyConfig: { downtimeLimitMs: 2000 },
      role: 'ladder',
      rep,
      key: `ladder|${workload}|2000|${rep}`,
      totalStallMs,
    });
  const reps = [0, 1, 2, 3, 4];
  const runs = (workload: string, policy: string, stall: number, o: Partial<RunRecord> = {}) =>
    reps.map((rep) =>
      run({
        workload,
        policy,
        rep,
        key: `matrix|${workload}|${policy}|${rep}`,
        totalStallMs: stall + rep,
        ...o,
      }),
    );

  it('picks, per workload, the baseline with the lowest median stall among those that completed every run', () => {
    const r = results(
      [
        ...reps.map((rep) => ladder('a', rep, 2000 + rep)),
        ...reps.map((rep) => ladder('b', rep, 2000 + rep)),
        // proxmox is best on a; on b it stalls least but failed a run: not eligible, xen is.
        ...runs('a', 'proxmox', 1000),
        ...runs('b', 'proxmox', 500).map((x, i) =>
          i === 0 ? { ...x, success: false, sloSuccess: false } : x,
        ),
        ...runs('a', 'xen', 1500),
        ...runs('b', 'xen', 1800),
        ...runs('a', 'adaptive', 500),
        ...runs('b', 'adaptive', 1800),
        // A bench variant of ours is ours too; a rule's variant is not a baseline.
        ...runs('a', 'adaptive[throttle=true]', 250, { policyName: 'adaptive' }),
        ...runs('b', 'adaptive[throttle=true]', 900, { policyName: 'adaptive' }),
        ...runs('a', 'proxmox[xbzrle=false]', 100, { policyName: 'proxmox' }),
      ],
      ['a', 'b'],
    );
    const md = reportMarkdown(r);
    expect(md).toMatch(/\| adaptive\[throttle=true\] \| a\s+\| −75%/);
    expect(md).toMatch(/\| adaptive\[throttle=true\] \| b\s+\| −50%/);
    expect(md).toContain('## Against the strongest baseline');
    expect(md).toMatch(/\| a\s+\| proxmox\s+\| 1002 ms/);
    expect(md).toMatch(/\| b\s+\| xen\s+\| 1802 ms/);
    // adaptive: half proxmox's stall on a, a tie with xen on b; the geometric mean ≈ −29%.
    expect(md).toMatch(/\| adaptive \| a\s+\| −50%/);
    expect(md).toMatch(/\| adaptive \| b\s+\| tie \+0%/);
    expect(md).toMatch(/\| adaptive \| geometric mean\s+\| −29%/);
  });

  it('is absent from results without production rules (the older benches stay as they were)', () => {
    const r = results([...reps.map((rep) => ladder('a', rep, 2000)), ...runs('a', 'frs', 1000)], ['a']);
    expect(reportMarkdown(r)).not.toContain('strongest baseline');
  });
});
