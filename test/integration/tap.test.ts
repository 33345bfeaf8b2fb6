import { describe, expect, it } from 'vitest';
import { migrateLab } from '../../src/lab/lab.js';
import { parseLink } from '../../src/lab/link.js';
import { findWorkloadPages } from '../../src/lab/ram-compare.js';
import { parseWorkload } from '../../src/lab/workload.js';
import { resolvePolicy } from '../../src/policy/index.js';
import { withLab } from './helpers.js';

const gbit = parseLink('1gbit');

describe('the migration tap on real QEMU', () => {
  it('relays a migration unchanged (integrity passes) and counts the pages QEMU counts, pass by pass', async () => {
    await withLab(
      { workload: parseWorkload('random:200'), ramMiB: 512, link: gbit, tap: true },
      async (lab) => {
        const r = await migrateLab(lab, {
          policy: resolvePolicy('mp'),
          downtimeBudgetMs: 300,
          deadlineMs: 40_000,
        });
        expect(r.migration.outcome).toBe('completed');
        expect(r.migration.regionSource).toBe('tap');
        expect(r.verification!.ram!.differingPages).toBe(0);
        expect(r.verification!.guestCheck.ok).toBe(true);
        expect(r.tap!.state).toBe('done');
        // Total pages: exact.
        const q = await lab.source.qmp.execute<{ ram: { normal: number; duplicate: number } }>(
          'query-migrate',
        );
        expect(r.tap!.normalPages).toBe(q.ram.normal);
        expect(r.tap!.zeroPages).toBe(q.ram.duplicate);
        // Per pass, aligned by stream position (QEMU's `transferred` is the stream offset): after the
        // bulk pass, what QEMU counted between two syncs is what the tap parsed between those offsets.
        let offset = 0;
        for (const p of r.migration.passes) {
          const start = offset;
          offset += p.bytesSent;
          if (p.pass === 1 || p.endMs - p.startMs < 200) continue;
          const tapPages = lab.tap!.pagesAtByte(offset) - lab.tap!.pagesAtByte(start);
          const qemuPages = p.normalPages + p.zeroPages;
          expect(
            Math.abs(tapPages - qemuPages),
            `pass ${p.pass}: tap ${tapPages} vs QEMU ${qemuPages}`,
          ).toBeLessThan(256 + qemuPages * 0.02);
        }
      },
    );
  });

  it('finds the hot set of hotcold:32:256:90 (paced so that cold pages are not all rewritten every pass)', async () => {
    const workload = parseWorkload('hotcold:32:256:90:200000');
    await withLab({ workload, ramMiB: 512, link: gbit, tap: true }, async (lab) => {
      const r = await migrateLab(lab, {
        policy: resolvePolicy('switch-at-pass', { pass: 9 }),
        downtimeBudgetMs: 300,
        deadlineMs: 40_000,
      });
      expect(r.migration.outcome).toBe('completed');
      // Pages sent in every scan round after the bulk one = the hot set; the last round is
      // the stop-and-copy's partial one.
      const rounds = lab.tap!.rounds.slice(1, -1);
      expect(rounds.length).toBeGreaterThanOrEqual(4);
      const everyPass: number[] = [];
      for (let pg = 0; pg < (512 * 2 ** 20) / 4096; pg++) {
        const n = rounds.filter((b) => b[pg >> 3]! & (1 << (pg & 7))).length;
        if (n === rounds.length) everyPass.push(pg);
      }
      // Ground truth from guest RAM: workload pages carry their index; the first 8192 are the hot 32 MiB.
      const truth = await findWorkloadPages(lab.destination.pid, await lab.ramRanges(lab.destination));
      const hot = new Set([...truth].filter(([, index]) => index < 8192).map(([gpaPage]) => gpaPage));
      expect(hot.size).toBe(8192);
      const found = everyPass.filter((pg) => hot.has(pg)).length;
      const recall = found / hot.size;
      const precision = found / everyPass.length;
      expect(recall, `recall ${recall}`).toBeGreaterThan(0.95);
      expect(precision, `precision ${precision}`).toBeGreaterThan(0.8);
    });
  });
});
