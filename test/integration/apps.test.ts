import { setTimeout as sleep } from 'node:timers/promises';
import { describe, expect, it } from 'vitest';
import { migrateLab } from '../../src/lab/lab.js';
import { parseLink } from '../../src/lab/link.js';
import { resolvePolicy } from '../../src/policy/index.js';
import { parseLabWorkload } from '../../src/util/specs.js';
import { withLab } from './helpers.js';

// Real applications inside the lab guest (the app image: PostgreSQL + pgbench, memcached + our
// load generator), migrated under frs on the emulated 1 Gbit link. Small data sets keep each
// test to about a minute of boot on a shared 2-core host.
const gbit = parseLink('1gbit');

describe('real applications in the lab guest, migrated on real QEMU', () => {
  for (const spec of ['app:pgbench:2:4', 'app:memcached:32:2:16']) {
    it(`${spec}: migrates under frs, verifies byte for byte, its latency is measured and it runs on`, async () => {
      await withLab(
        { workload: parseLabWorkload(spec), ramMiB: 512, link: gbit, appReadyTimeoutMs: 240_000 },
        async (lab) => {
          const r = await migrateLab(lab, {
            policy: resolvePolicy('frs'),
            downtimeBudgetMs: 300,
            deadlineMs: 90_000,
          });
          expect(r.migration.outcome).toBe('completed');
          expect(r.verification!.ram!.differingPages).toBe(0);
          expect(r.verification!.guestCheck.ok).toBe(true);
          expect(r.verification!.heartbeatResumed).toBe(true);
          expect(r.success).toBe(true);

          // The application's own latency over the migration window, on the host's clock.
          const a = r.appLatency!;
          expect(a).toBeDefined();
          expect(a.requests).toBeGreaterThan(0);
          expect(a.baseline.requests).toBeGreaterThan(0);
          expect(a.p99Ms!).toBeGreaterThan(0);
          expect(a.maxMs!).toBeGreaterThanOrEqual(a.p99Ms!);
          expect(a.maxMs!).toBeGreaterThanOrEqual(a.guestClock.maxMs!);
          expect(a.complete).toBe(true);
          // The guest's clock stood still during the stop-and-copy: some request spanned it
          // and took about that much longer than the guest measured.
          expect(a.longestPauseInRequestMs).toBeGreaterThan(r.migration.qemuDowntimeMs * 0.5);

          // The application runs on at the destination: new requests complete there.
          const before = lab.destinationConsole.app.samples.length;
          const deadline = performance.now() + 20_000;
          while (lab.destinationConsole.app.samples.length < before + 10 && performance.now() < deadline)
            await sleep(100);
          expect(lab.destinationConsole.app.samples.length).toBeGreaterThanOrEqual(before + 10);
          expect(lab.destinationConsole.lines.filter((l) => l.text.startsWith('ERROR'))).toEqual([]);
        },
      );
    }, 420_000);
  }
});
