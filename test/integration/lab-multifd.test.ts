import { describe, expect, it } from 'vitest';
import { migrateLab } from '../../src/lab/lab.js';
import { parseLink } from '../../src/lab/link.js';
import { parseWorkload } from '../../src/lab/workload.js';
import { resolvePolicy } from '../../src/policy/index.js';
import { withLab } from './helpers.js';

describe('lab migrations over multifd channels', () => {
  it('4 channels on both sides: completed, 0 pages differ, guest check passes; post-copy refused', async () => {
    const opts = { workload: parseWorkload('rate:64:2000'), ramMiB: 256, link: parseLink('1gbit') };
    await withLab({ ...opts, multifdChannels: 4 }, async (lab) => {
      for (const vm of [lab.source, lab.destination]) {
        const caps = await vm.qmp.execute<{ capability: string; state: boolean }[]>(
          'query-migrate-capabilities',
        );
        expect(caps.find((c) => c.capability === 'multifd')?.state).toBe(true);
        const params = await vm.qmp.execute<Record<string, unknown>>('query-migrate-parameters');
        expect(params['multifd-channels']).toBe(4);
      }
      expect(lab.info.multifdChannels).toBe(4);
      const session = { policy: resolvePolicy('stock'), downtimeBudgetMs: 300, deadlineMs: 30_000 };
      await expect(migrateLab(lab, { ...session, postcopyPermitted: true })).rejects.toThrow(
        /not yet compatible with multifd/,
      );
      const r = await migrateLab(lab, session);
      expect(r.migration.outcome).toBe('completed');
      expect(r.verification!.ram!.differingPages).toBe(0);
      expect(r.verification!.ram!.pagesCompared).toBe((256 * 2 ** 20) / 4096);
      expect(r.verification!.guestCheck.ok).toBe(true);
      expect(r.success).toBe(true);
    });
  });
});
