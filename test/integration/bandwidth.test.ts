import { describe, expect, it } from 'vitest';
import { migrateLab } from '../../src/lab/lab.js';
import { parseLink } from '../../src/lab/link.js';
import { parseWorkload } from '../../src/lab/workload.js';
import { resolvePolicy } from '../../src/policy/index.js';
import { qemuRateForWireCap } from '../../src/cli/rate.js';
import { withLab } from './helpers.js';

// --bandwidth is the operator's cap: QEMU's max-bandwidth for this migration, measured on the
// veth's own byte counter, and put back as it was afterwards.
describe('a bandwidth cap is respected and put back', () => {
  it('200 Mbit/s on a 1 Gbit link: no 1 s window above the cap; max-bandwidth restored', async () => {
    await withLab(
      { workload: parseWorkload('rate:64:2000'), ramMiB: 256, link: parseLink('1gbit') },
      async (lab) => {
        const qmp = lab.source.qmp;
        const before = ((await qmp.execute('query-migrate-parameters')) as { 'max-bandwidth': number })[
          'max-bandwidth'
        ];
        const capBps = 200e6 / 8;
        const samples: { at: number; bytes: number }[] = [];
        let sampling = true;
        const sampler = (async () => {
          while (sampling) {
            samples.push({ at: performance.now(), bytes: await lab.link!.txBytes() });
            await new Promise((r) => setTimeout(r, 250));
          }
        })();
        const r = await migrateLab(lab, {
          policy: resolvePolicy('stock'),
          downtimeBudgetMs: 300,
          deadlineMs: 60_000,
          // What `--bandwidth 200mbit` gives QEMU.
          maxBandwidthBps: qemuRateForWireCap(capBps),
        });
        sampling = false;
        await sampler;
        expect(r.success).toBe(true);
        // Windows of 1 s while QEMU iterates (it lifts the cap for the final stop-and-copy).
        const stoppedAt = r.migration.clock.sourceCompletedAt ?? r.migration.clock.endedAt;
        const precopy = samples.filter((s) => s.at <= stoppedAt - 500);
        let worst = 0;
        for (let i = 0; i < precopy.length; i++) {
          const j = precopy.findIndex((s) => s.at >= precopy[i]!.at + 1000);
          if (j < 0) break;
          worst = Math.max(
            worst,
            (precopy[j]!.bytes - precopy[i]!.bytes) / ((precopy[j]!.at - precopy[i]!.at) / 1000),
          );
        }
        console.log(
          `cap 200 Mbit/s: worst 1 s window ${((worst * 8) / 1e6).toFixed(0)} Mbit/s over ${precopy.length} samples`,
        );
        expect(precopy.length).toBeGreaterThan(8);
        expect(worst).toBeLessThanOrEqual(capBps);
        const after = ((await qmp.execute('query-migrate-parameters')) as { 'max-bandwidth': number })[
          'max-bandwidth'
        ];
        expect(after).toBe(before);
      },
    );
  });
});
