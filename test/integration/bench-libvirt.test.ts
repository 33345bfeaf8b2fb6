import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { leaksOf } from '../../src/lab/clean.js';
import { readResults } from '../../src/bench/results.js';
import { kvmigrateChild } from '../support/cli.js';

// `kvmigrate bench --driver …` on the real lab: the lab guest as a domain on a real libvirt 11
// pair (started once per bench), migrated through libvirt, every completed run verified byte for
// byte; and the same units through the QMP driver, interleaved, side by side in the report.

const out = mkdtempSync(path.join(os.tmpdir(), 'kvm-bench-libvirt-'));
afterAll(() => rmSync(out, { recursive: true, force: true }));

/** `kvmigrate …` as a child; `interruptWhen` sends SIGINT `afterMs` after stderr matches it. */
const kvmigrate = (args: string[], interruptWhen?: RegExp, afterMs = 0) =>
  kvmigrateChild(args, { interruptWhen, afterMs }).exited;

/** The pair the bench started, from its log line: `libvirt pair <id>: daemons <pid>/<pid> up in …`. */
function pairOf(stderr: string): { id: string; pids: number[] } {
  const m = /libvirt pair (\S+): daemons (\d+)\/(\d+) up/.exec(stderr);
  expect(m, stderr).not.toBeNull();
  return { id: m![1]!, pids: [Number(m![2]), Number(m![3])] };
}

/** The guests' QEMU PIDs are gone with their daemons; what is left under the pair's tag is a leak. */
async function expectNothingLeft(stderr: string): Promise<void> {
  const { id, pids } = pairOf(stderr);
  expect(await leaksOf(id, pids)).toEqual([]);
}

describe('kvmigrate bench --driver', () => {
  it('both: each policy through QMP and through libvirt, interleaved, verified byte for byte, side by side', async () => {
    const dir = path.join(out, 'both');
    const r = await kvmigrate([
      'bench', '--driver', 'both', '--reps', '1', '--workloads', 'random:100', '--policies', 'frs,mp',
      '--ram', '256', '--deadline', '30', '--out', dir,
    ]); // prettier-ignore
    expect(r.code, r.stderr).toBe(0);
    const results = readResults(path.join(dir, 'results.json'));
    // The config records the drivers (the first is the reference); every run its own.
    expect(results.config?.drivers).toEqual(['qmp', 'libvirt']);
    expect(results.runs).toHaveLength(4);
    expect(results.runs.map((x) => `${x.policy}@${x.driver}`).sort()).toEqual([
      'frs@libvirt',
      'frs@qmp',
      'mp@libvirt',
      'mp@qmp',
    ]);
    // Interleaved: a policy's two drivers run back to back, the one going first alternating.
    expect(results.runs.map((x) => x.policy)).toEqual(['frs', 'frs', 'mp', 'mp']);
    expect(results.runs[0]!.driver).not.toBe(results.runs[2]!.driver);
    for (const run of results.runs) {
      expect(run.outcome, `${run.key}: ${run.reason}`).toBe('completed');
      expect(run.verification, run.key).toBe('byte-for-byte');
      expect(run.differingPages, run.key).toBe(0);
      expect(run.guestCheckOk, run.key).toBe(true);
      expect(run.success, run.key).toBe(true);
      // The guest's stall measured the same way under both drivers: at least the switchover's silence.
      expect(run.totalStallMs!, run.key).toBeGreaterThan(0);
      expect(run.longestSilenceMs!, run.key).toBeGreaterThan(0);
      expect(run.passTimeline.length, run.key).toBeGreaterThanOrEqual(2);
      expect(
        run.decisions.some((d) => d.kind === 'switchover'),
        run.key,
      ).toBe(true);
    }
    const report = readFileSync(path.join(dir, 'report.md'), 'utf8');
    expect(report).toMatch(/## Drivers\n/);
    expect(report).toMatch(/\| random:100 \| frs \| libvirt \| 1 completed \| 100% \| 1 \|/);
    expect(report).toMatch(/\| random:100 \| mp \| qmp \| 1 completed \| 100% \| 1 \|.*\(reference\)/);
    // The main tables are the reference driver's runs: one run per policy there.
    expect(report).toMatch(/\| frs \| 100% \(1\) \|/);
    const csv = readFileSync(path.join(dir, 'results.csv'), 'utf8');
    expect(csv.split('\n')[0]).toContain(',role,driver,');
    expect(csv).toMatch(/,matrix,libvirt,true,/);
    await expectNothingLeft(r.stderr);
  });

  it('libvirt, interrupted (Ctrl-C) while a guest migrates: nothing recorded for it, the pair cleaned up', async () => {
    const dir = path.join(out, 'interrupted');
    const r = await kvmigrate(
      [
        'bench', '--driver', 'libvirt', '--reps', '1', '--workloads', 'random:100', '--policies', 'stock',
        '--ram', '256', '--deadline', '60', '--out', dir,
      ], // prettier-ignore
      /guest \S+: random:100 on 256 MiB, beating/,
      // The guest beats 1 s on the source before `migrate`: 4 s after it boots, stock is migrating.
      4000,
    );
    expect(r.interrupted, r.stderr).toBe(true);
    expect(r.stderr).toMatch(/SIGINT: cancelling the migration and cleaning up/);
    // The migration had started: the interrupt cancelled it through libvirt (and it is not a result).
    expect(r.stderr).toMatch(/→ cancelled \(verified: none\)/);
    expect(r.stderr).toMatch(/\(interrupted: partial\)/);
    expect(r.code, r.stderr).toBe(0);
    const results = readResults(path.join(dir, 'results.json'));
    expect(results.config?.drivers).toEqual(['libvirt']);
    expect(results.runs).toEqual([]);
    await expectNothingLeft(r.stderr);
  });
});
