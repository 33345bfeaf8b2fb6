import { describe, expect, it } from 'vitest';
import { migrateLab } from '../../src/lab/lab.js';
import { parseLink } from '../../src/lab/link.js';
import { parseWorkload } from '../../src/lab/workload.js';
import { resolvePolicy } from '../../src/policy/index.js';
import { withLab } from './helpers.js';

const gbit = parseLink('1gbit');
const session = (policy: string, deadlineMs = 40_000) => ({
  policy: resolvePolicy(policy),
  downtimeBudgetMs: 300,
  deadlineMs,
});

describe('frs, mp and adaptive on memory-intensive guests (512 MiB, 1 Gbit, 300 ms budget)', () => {
  // frs counts dirty pages and is blind to where they are, so one guest shows it; mp and adaptive
  // classify the regions, so each pattern (uniform, hot/cold, moving) is a different path for them.
  for (const [workload, policies] of [
    ['random:200', ['frs', 'mp', 'adaptive']],
    ['hotcold:32:256:90', ['mp', 'adaptive']],
    ['sweep:256:400', ['mp', 'adaptive']],
  ] as const) {
    // That stock cannot finish these guests is lab-migrate.test.ts's (random:200) and every bench
    // run's; here only that the policies do.
    it(`${workload}: ${policies.join(', ')} complete it, verified`, async () => {
      const lab = { workload: parseWorkload(workload), ramMiB: 512, link: gbit };
      for (const policy of policies) {
        await withLab(lab, async (l) => {
          const r = await migrateLab(l, session(policy));
          expect(r.migration.outcome, `${policy}: ${r.migration.reason}`).toBe('completed');
          const switched = r.migration.decisions.find((d) => d.action.kind === 'switchover');
          expect(switched?.action.reason).toMatch(new RegExp(`^${policy}`));
          if (policy !== 'frs') expect(r.migration.regionSource).toBe('sampling');
          expect(r.verification!.ram!.differingPages).toBe(0);
          expect(r.verification!.guestCheck.ok).toBe(true);
          expect(r.success).toBe(true);
        });
      }
    });
  }
});

describe('frs, mp and adaptive leave converging guests to QEMU', () => {
  // A guest that dirties 20,000 pages/s over 200 MiB (~80 MB/s, well under the link) converges
  // under stock: a policy that fired here would be guessing. (An idle guest is the trivial case
  // of the same; lab-migrate.test.ts runs it.)
  for (const [workload, ram] of [['rate:200:20000', 512]] as const) {
    it(`${workload}: no policy acts beyond a switchover that fits twice the budget; it completes`, async () => {
      for (const policy of ['frs', 'mp', 'adaptive']) {
        await withLab({ workload: parseWorkload(workload), ramMiB: ram, link: gbit }, async (l) => {
          const r = await migrateLab(l, session(policy));
          expect(r.migration.outcome, `${policy}: ${r.migration.reason}`).toBe('completed');
          // When the dirty set plateaus just under what QEMU's own check lets through, a policy may
          // switch over first (adaptive did once, at 33 MiB ≈ 280 ms): allowed, but nothing costlier,
          // and never a switch that leaves far more than the budget to send.
          const acted = r.migration.decisions.filter((d) => d.action.kind !== 'continue');
          expect(acted.filter((d) => d.action.kind !== 'switchover')).toEqual([]);
          if (acted.length) expect(r.migration.qemuDowntimeMs).toBeLessThan(2 * 300);
          expect(r.success).toBe(true);
        });
      }
    });
  }
});

describe('adaptive: the options beyond switch-now', () => {
  it('waits for the quiet phase of a bursty guest (burst:200:1000:2500) where frs stops-and-copies the burst', async () => {
    const lab = { workload: parseWorkload('burst:200:1000:2500'), ramMiB: 512, link: gbit };
    const downtime: Record<string, number> = {};
    let frsForced = false;
    for (const policy of ['frs', 'adaptive']) {
      await withLab(lab, async (l) => {
        const r = await migrateLab(l, session(policy));
        expect(r.migration.outcome, `${policy}: ${r.migration.reason}`).toBe('completed');
        expect(r.verification!.ram!.differingPages).toBe(0);
        expect(r.success).toBe(true);
        downtime[policy] = r.guestDowntimeMs!;
        // Where the migration starts in the burst cycle varies: QEMU may converge by itself in a
        // quiet phase (the policy then does nothing); if adaptive forces the switch, it waited first.
        const ds = r.migration.decisions;
        const forced = ds.some((d) => d.action.kind === 'switchover');
        if (policy === 'frs') frsForced = forced;
        if (policy === 'adaptive' && forced)
          expect(ds.some((d) => /wait for a quiet phase/.test(d.action.reason))).toBe(true);
      });
    }
    // Measured: ~350 ms vs ~1850 ms when frs stops-and-copies a burst. Only then is there an
    // ordering to check: when frs started in a quiet phase and QEMU converged alone, both stalls
    // are near zero and differ by the machine's noise (hundreds of ms on a loaded 2-core host).
    if (frsForced) expect(downtime.adaptive!).toBeLessThan(downtime.frs!);
  });

  it('with --allow-postcopy post-copies a guest whose working set cannot fit the budget, and logs its prediction', async () => {
    await withLab({ workload: parseWorkload('random:200'), ramMiB: 512, link: gbit }, async (l) => {
      const r = await migrateLab(l, { ...session('adaptive'), postcopyPermitted: true });
      expect(r.migration.outcome, r.migration.reason).toBe('completed');
      expect(r.migration.postcopy).toBe(true);
      const pc = r.migration.decisions.find((d) => d.action.kind === 'postcopy')!;
      expect(pc.action.reason).toMatch(/^adaptive: .* → post-copy now/);
      expect(pc.action.kind === 'postcopy' && pc.action.prediction?.bytes).toBeGreaterThan(0);
      expect(r.verification!.guestCheck.ok).toBe(true);
      expect(r.success).toBe(true);
    });
  });
});
