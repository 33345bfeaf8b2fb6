import { afterAll, describe, expect, it } from 'vitest';
import { FAULT_CASES, faultTable, runFaultCase, type FaultRow } from '../../src/lab/faults.js';
import { migrateLab } from '../../src/lab/lab.js';
import { parseLink } from '../../src/lab/link.js';
import { parseWorkload } from '../../src/lab/workload.js';
import { resolvePolicy } from '../../src/policy/index.js';
import { withLab } from '../integration/helpers.js';

// Fault injection on real QEMU: one fault per case, then exactly one guest must run with its memory
// intact (the guest's own check), and nothing of the lab may be left (withLab checks).
const link = parseLink('1gbit');

describe('fault matrix (kvmigrate lab faults): exactly one guest runs, intact, nothing leaks', () => {
  const rows: FaultRow[] = [];
  afterAll(() => {
    if (rows.length) process.stdout.write(`\n${faultTable(rows)}\n`);
  });
  for (const c of FAULT_CASES) {
    it(`${c.name} [${c.policy}] → ${c.expected}`, async () => {
      const row = await runFaultCase(c);
      rows.push(row);
      // A fault whose trigger never fired proves nothing (the migration just ran to its end).
      expect(row.injected, 'the fault was injected').toBe(true);
      expect(row.leaks).toEqual([]);
      expect(row.runsOn).not.toBe('both');
      if (c.expected === 'lost') {
        // Post-copy's known hazard: reported as such, and the stale source is not resumed.
        expect(row.reported).toBe('none');
        expect(row.runsOn).toBe('none');
      } else {
        expect(row.integrity).toBe('ok');
        if (c.expected !== 'either') expect(row.runsOn).toBe(c.expected);
      }
      // What the controller reports agrees with what the consoles show.
      if (row.reported !== 'unknown') expect(row.reported).toBe(row.runsOn);
      if (/recovered/.test(c.name)) expect(row.postcopyRecoveries).toBeGreaterThanOrEqual(1);
      expect(row.ok).toBe(true);
    });
  }
});

describe('the emulated link', () => {
  it('shaping the link with what the kernel lacks keeps the old shaping and says why', async () => {
    await withLab({ workload: parseWorkload('idle'), ramMiB: 256, link }, async (lab) => {
      const err = await lab.link!.shape({ ...link, lossPct: 1 }).catch((e: Error) => e);
      if (err) expect(err.message).toMatch(/^cannot shape the emulated link: /);
      const r = await migrateLab(lab, {
        policy: resolvePolicy('stock'),
        downtimeBudgetMs: 300,
        deadlineMs: 30_000,
      });
      expect(r.success).toBe(true);
      // Still shaped: ~1 Gbit/s, not loopback speed.
      const mbit = (r.migration.transferredBytes * 8) / (r.migration.totalTimeMs / 1000) / 1e6;
      expect(mbit).toBeLessThan(1100);
    });
  });
});
