import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { readTrace, traceClasses } from '../../src/sim/trace.js';
import { kvmigrateSync } from '../support/cli.js';

const dir = mkdtempSync(path.join(os.tmpdir(), 'kvm-record-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const kvmigrate = (args: string[]) => kvmigrateSync(args);

describe('kvmigrate record → sim --trace', () => {
  it('records a real guest into a valid trace that the simulator replays', () => {
    const file = path.join(dir, 'random200.jsonl');
    const r = kvmigrate(['record', '--workload', 'random:200', '--duration', '6', '--out', file]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/wrote .*random200\.jsonl: \d+ dirty-rate samples, \d+ passes \(cancelled\)/);
    const trace = readTrace(file);
    expect(trace.header).toMatchObject({ format: 'kvmigrate-trace', version: 1, ramBytes: 512 * 2 ** 20 });
    expect(trace.records.filter((x) => x.type === 'sample').length).toBeGreaterThanOrEqual(4);
    // The writer's 200 MiB working set is what the trace's page class holds (calc-dirty-rate samples).
    const writer = traceClasses(trace)[1]!;
    expect((writer.pages * 4096) / 2 ** 20).toBeGreaterThan(120);
    expect((writer.pages * 4096) / 2 ** 20).toBeLessThan(300);

    const sim = kvmigrate(['sim', '--trace', file, '--policies', 'stock,frs', '--deadline', '30']);
    expect(sim.code, sim.stderr).toBe(0);
    expect(sim.stdout).toMatch(/stock\s+cancelled/);
    expect(sim.stdout).toMatch(/frs\s+completed/);
  });
});
