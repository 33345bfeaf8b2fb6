import { describe, expect, it } from 'vitest';
import { migrateLab } from '../../src/lab/lab.js';
import { parseLink } from '../../src/lab/link.js';
import { findWorkloadPage, writeGuestPage } from '../../src/lab/ram-compare.js';
import { parseWorkload } from '../../src/lab/workload.js';
import { resolvePolicy } from '../../src/policy/index.js';
import { withLab } from './helpers.js';

const gbit = parseLink('1gbit');

describe('lab migrations on real QEMU over the emulated 1 Gbit link', () => {
  it('an idle 256 MiB guest migrates: completed, 0 pages differ, guest check passes', async () => {
    await withLab({ workload: parseWorkload('idle'), ramMiB: 256, link: gbit }, async (lab) => {
      const r = await migrateLab(lab, {
        policy: resolvePolicy('stock'),
        downtimeBudgetMs: 300,
        deadlineMs: 30_000,
      });
      expect(r.migration.outcome).toBe('completed');
      expect(r.verification!.ram!.differingPages).toBe(0);
      expect(r.verification!.ram!.pagesCompared).toBe((256 * 2 ** 20) / 4096);
      expect(r.verification!.guestCheck.ok).toBe(true);
      expect(r.verification!.heartbeatResumed).toBe(true);
      expect(r.guestDowntimeMs).toBeGreaterThan(0);
      expect(r.success).toBe(true);
      expect(r.migration.passes.length).toBeGreaterThanOrEqual(2);
      expect(r.migration.passes[0]!.pass).toBe(1);
      // What the link carried matches what QEMU says it sent (within TCP/IP overhead).
      expect(r.linkBytes!).toBeGreaterThan(r.migration.transferredBytes * 0.98);
      expect(r.linkBytes!).toBeLessThan(r.migration.transferredBytes * 1.1);
      // The destination runs, the source is left stopped: exactly one guest.
      expect((await lab.source.qmp.execute<{ status: string }>('query-status')).status).toBe('postmigrate');
      expect((await lab.destination.qmp.execute<{ status: string }>('query-status')).status).toBe('running');
    });
  });

  it('random:200 on 512 MiB with a 300 ms limit never converges; at the deadline it is cancelled and the source runs on', async () => {
    await withLab({ workload: parseWorkload('random:200'), ramMiB: 512, link: gbit }, async (lab) => {
      const r = await migrateLab(lab, {
        policy: resolvePolicy('stock'),
        downtimeBudgetMs: 300,
        deadlineMs: 10_000,
      });
      expect(r.migration.outcome).toBe('cancelled');
      expect(r.migration.reason).toMatch(/deadline/);
      expect(r.sourceRunsOn).toBe(true);
      expect(r.sourceCheck?.ok).toBe(true);
      expect(r.success).toBe(false);
      // Never converging: after the bulk pass every pass leaves far more dirty than 300 ms of link time.
      const later = r.migration.passes.slice(1, -1);
      expect(later.length).toBeGreaterThanOrEqual(3);
      for (const p of later) expect(p.dirtyAtEndBytes).toBeGreaterThan(p.bandwidthBps * 0.3 * 2);
      expect((await lab.source.qmp.execute<{ status: string }>('query-status')).status).toBe('running');
      // QEMU ends an incoming migration that was cancelled by exiting: no second guest.
      await lab.destination.exited;
      expect(lab.destination.alive).toBe(false);
    });
  });

  // One pass is enough here: frs/mp/adaptive switch at other passes in study-policies.test.ts.
  for (const k of [3]) {
    it(`random:200 with switchover forced at pass ${k} completes and verifies`, async () => {
      await withLab({ workload: parseWorkload('random:200'), ramMiB: 512, link: gbit }, async (lab) => {
        const r = await migrateLab(lab, {
          policy: resolvePolicy('switch-at-pass', { pass: k }),
          downtimeBudgetMs: 300,
          deadlineMs: 40_000,
        });
        expect(r.migration.outcome).toBe('completed');
        expect(r.migration.decisions.map((d) => d.action.kind)).toContain('switchover');
        expect(r.migration.decisions.find((d) => d.action.kind === 'switchover')!.pass).toBe(k);
        expect(r.verification!.ram!.differingPages).toBe(0);
        expect(r.verification!.guestCheck.ok).toBe(true);
        expect(r.verification!.heartbeatResumed).toBe(true);
        // The dirty set (~200 MiB) goes in the stop-and-copy: the guest feels it.
        expect(r.migration.qemuDowntimeMs).toBeGreaterThan(300);
        expect(r.guestDowntimeMs!).toBeGreaterThanOrEqual(r.migration.qemuDowntimeMs * 0.8);
        expect(r.migration.actionLatencyMs).toBeDefined();
        expect(r.success).toBe(true);
      });
    });
  }

  it('post-copy moves every page: with the destination held paused, 0 pages differ from the source at the switch', async () => {
    // In a benchmark post-copy run the destination runs before completion, so only the guest's own
    // check can verify it; held paused, the source pushes every page it still held and the two
    // RAMs can be compared at one instant.
    await withLab({ workload: parseWorkload('random:200'), ramMiB: 512, link: gbit }, async (lab) => {
      const r = await migrateLab(
        lab,
        {
          policy: resolvePolicy('postcopy-after', { pass: 1 }),
          downtimeBudgetMs: 300,
          deadlineMs: 40_000,
          postcopyPermitted: true,
        },
        { holdDestinationInPostcopy: true },
      );
      expect(r.migration.outcome).toBe('completed');
      expect(r.migration.postcopy).toBe(true);
      expect(r.verification!.ram!.differingPages).toBe(0);
      expect(r.verification!.ram!.pagesCompared).toBeGreaterThan(100_000);
      expect(r.verification!.guestCheck.ok).toBe(true);
      expect(r.success).toBe(true);
    });
  });

  it('a broken migration is caught by both checks: the byte compare and the guest’s own', async () => {
    // idle writes each page once, so a page made stale on the paused destination stays stale.
    await withLab({ workload: parseWorkload('idle'), ramMiB: 256, link: gbit }, async (lab) => {
      let corrupted: { index: number } | undefined;
      const r = await migrateLab(
        lab,
        { policy: resolvePolicy('stock'), downtimeBudgetMs: 300, deadlineMs: 30_000 },
        {
          beforeVerify: async (l) => {
            const page = await findWorkloadPage(l.destination.pid, await l.ramRanges(l.destination));
            expect(page).toBeDefined();
            const stale = Buffer.alloc(8);
            stale.writeBigUInt64LE(page!.gen - 1n); // the generation of an older write
            await writeGuestPage(l.destination.pid, page!.hva + 8, stale);
            corrupted = page;
          },
        },
      );
      expect(r.migration.outcome).toBe('completed');
      expect(r.verification!.ram!.differingPages).toBe(1);
      expect(r.verification!.guestCheck.ok).toBe(false);
      expect(r.verification!.guestCheck.line).toMatch(
        new RegExp(`CHECK FAIL bad=1 first=${corrupted!.index} `),
      );
      expect(r.success).toBe(false);
    });
  });
});
