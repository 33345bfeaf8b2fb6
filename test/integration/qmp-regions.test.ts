import { describe, expect, it } from 'vitest';
import { parseLink } from '../../src/lab/link.js';
import { parseWorkload } from '../../src/lab/workload.js';
import type { MigrationResult } from '../../src/migration/session.js';
import { EXIT } from '../../src/util/errors.js';
import { expectOneGuestRuns, withLab } from './helpers.js';
import { kvmigrateChild } from '../support/cli.js';

// mp outside the lab (issue 17 item 5): `kvmigrate migrate` on two QEMUs' unix QMP sockets finds
// the source QEMU as the process listening on its socket (QEMU runs in the lab's network
// namespace, kvmigrate outside it) and samples its guest RAM, so mp classifies on region sets
// instead of running as frs. No --tap, nothing told but the socket paths.

const kvmigrate = (args: string[]) => kvmigrateChild(args).exited;

describe('migrate on unix QMP sockets: region sets from the source QEMU found behind its socket', () => {
  it('mp classifies on sampled regions (not its FRS fallback) and completes', async () => {
    const spec = { workload: parseWorkload('random:200'), ramMiB: 512, link: parseLink('1gbit') };
    await withLab(spec, async (lab) => {
      lab.source.releaseQmp();
      lab.destination.releaseQmp();
      const r = await kvmigrate([
        'migrate',
        '--src', lab.source.spec.qmpSocket, '--dst', lab.destination.spec.qmpSocket,
        '--uri', lab.migrateUri, '--incoming', lab.migrateUri,
        '--policy', 'mp', '--no-control-socket',
      ]); // prettier-ignore
      await lab.source.reconnectQmp();
      await lab.destination.reconnectQmp();
      expect(r.code, r.stderr).toBe(EXIT.ok);
      expect(r.stderr).toContain(`region sets by sampling QEMU ${lab.source.pid}'s guest RAM (512 MiB`);
      expect(r.stderr).not.toMatch(/has none|runs as frs/);
      const result = JSON.parse(r.stdout.trim().split('\n').at(-1)!) as MigrationResult;
      const reasons = result.decisions.map((d) => d.action.reason);
      console.log(`mp via QMP with sampled regions: ${reasons.join(' | ')}`);
      expect(result).toMatchObject({ outcome: 'completed', regionSource: 'sampling' });
      expect(reasons.some((x) => x.startsWith('mp[sampling]'))).toBe(true);
      expect(reasons.some((x) => /no region source/.test(x))).toBe(false);
      await expectOneGuestRuns(lab, 'destination');
    });
  });
});
