import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import {
  EventLineSchema,
  MigrationResultSchema,
  SimRunLineSchema,
  jsonSchemas,
} from '../../src/core/schema.js';
import { EventWriter } from '../../src/migration/events.js';
import { MigrationMetrics } from '../../src/migration/metrics.js';
import { MigrationSession } from '../../src/migration/session.js';
import { resolvePolicy } from '../../src/policy/index.js';
import { QmpClient } from '../../src/qmp/index.js';
import { runSweep, simRunLine } from '../../src/sim/sweep.js';
import { FakeQemu, migrating, type Script } from '../support/fake-qemu.js';

// The machine-readable contract (issue 15 item 3): the committed JSON Schema files are what the
// zod schemas generate; an --events stream parses line by line and ends with the result; sim --json
// uses migrate --json's names.

const open: { close(): void }[] = [];
const dirs: string[] = [];
afterEach(() => {
  while (open.length) open.pop()!.close();
  while (dirs.length) rmSync(dirs.pop()!, { recursive: true, force: true });
});

/** A source that iterates one pass per poll until the downtime-limit is raised, then completes. */
export function convergingOnSwitch(): Script {
  let syncs = 0;
  let switched = false;
  return (cmd, args, q) => {
    if (cmd === 'migrate-set-parameters' && Number(args['downtime-limit']) >= 100_000) switched = true;
    if (cmd !== 'query-migrate' || q.state.migration.status === undefined) return undefined;
    if (switched) {
      q.state.runState = 'postmigrate';
      q.state.migration = { ...migrating('completed', { syncs, remaining: 0 }), downtime: 42 };
      return undefined;
    }
    syncs++;
    return { return: migrating('active', { syncs, transferred: syncs * 1e8, remaining: 5e8 - syncs * 1e7 }) };
  };
}

export const destinationCompletes: Script = (cmd, _a, q) => {
  if (cmd === 'query-migrate') q.state.runState = 'paused';
  return cmd === 'query-migrate' ? { return: { status: 'completed' } } : undefined;
};

async function peers(src: Script, dst: Script) {
  const source = await FakeQemu.start({}, src);
  const destination = await FakeQemu.start({ runState: 'inmigrate' }, dst);
  open.push(source, destination);
  const [s, d] = await Promise.all([
    QmpClient.connect(source.socketPath, { commandTimeoutMs: 2000 }),
    QmpClient.connect(destination.socketPath, { commandTimeoutMs: 2000 }),
  ]);
  open.push(s, d);
  return { source, destination, s, d };
}

describe('JSON Schema files', () => {
  it('docs/schema/*.json are what the zod schemas generate (npm run schema)', () => {
    for (const [name, schema] of Object.entries(jsonSchemas())) {
      const committed: unknown = JSON.parse(readFileSync(path.join('docs', 'schema', name), 'utf8'));
      expect(committed, `docs/schema/${name} is stale: run npm run schema`).toEqual(schema);
    }
  });
});

describe('--events', () => {
  it('every line parses against the schema, in order, and the last is the outcome, equal to the result', async () => {
    const { s, d } = await peers(convergingOnSwitch(), destinationCompletes);
    const dir = mkdtempSync(path.join(tmpdir(), 'kvm-events-'));
    dirs.push(dir);
    const file = path.join(dir, 'events.ndjson');
    const writer = EventWriter.open({ kind: 'file', path: file });
    const metrics = await MigrationMetrics.create(
      { policy: 'switch-at-pass', source: 'src', destination: 'dst', migrateUri: 'tcp:127.0.0.1:1' },
      { processMetrics: false },
    );
    const result = await new MigrationSession({
      source: s,
      destination: d,
      migrateUri: 'tcp:127.0.0.1:1',
      incomingUri: 'tcp:127.0.0.1:1',
      policy: resolvePolicy('switch-at-pass', { pass: 3 }),
      downtimeBudgetMs: 300,
      deadlineMs: 20_000,
      pollMs: 10,
      destinationTimeoutMs: 1500,
      onEvent: (e) => {
        writer.write(e);
        metrics.observe(e);
      },
    }).run();
    writer.close();

    const text = readFileSync(file, 'utf8');
    expect(text.endsWith('\n')).toBe(true);
    const lines = text.trimEnd().split('\n');
    const parsed = lines.map((l, i) => {
      const raw: unknown = JSON.parse(l);
      const r = EventLineSchema.safeParse(raw);
      expect(r.success, `line ${i + 1}: ${l.slice(0, 200)} ${r.error?.message}`).toBe(true);
      // Nothing undocumented: what the schema keeps is the whole line.
      expect(r.data).toEqual(raw);
      return r.data!;
    });
    const types = new Set(parsed.map((p) => p.type));
    for (const t of ['status', 'progress', 'pass', 'decision', 'command', 'outcome'] as const)
      expect(types, t).toContain(t);
    // Wall-clock times never go back; the outcome is last, exactly once, and is the result.
    const times = parsed.map((p) => Date.parse(p.time));
    expect(times).toEqual([...times].sort((a, b) => a - b));
    expect(parsed.filter((p) => p.type === 'outcome')).toHaveLength(1);
    const last = parsed.at(-1)!;
    expect(last.type).toBe('outcome');
    const json: unknown = JSON.parse(JSON.stringify(result));
    expect(last.type === 'outcome' && last.result).toEqual(json);

    // The result itself: the schema's, with the new fields.
    expect(MigrationResultSchema.parse(json)).toEqual(json);
    expect(result).toMatchObject({
      schemaVersion: 1,
      outcome: 'completed',
      guestRunsOn: 'destination',
      exitCode: 0,
      endpoints: { source: s.target.kind === 'unix' ? s.target.path : '', migrateUri: 'tcp:127.0.0.1:1' },
    });
    expect(Date.parse(result.endedAt) - Date.parse(result.startedAt)).toBeCloseTo(result.wallMs, -1);
    expect(Math.abs(Date.parse(result.startedAt) - Date.now())).toBeLessThan(60_000);

    // The same events counted as Prometheus metrics.
    const m = await metrics.text();
    expect(m).toMatch(/^kvmigrate_migration_passes_total \d+$/m);
    expect(m).toMatch(/^kvmigrate_migration_decisions_total\{kind="switchover"\} 1$/m);
    expect(m).toMatch(/^kvmigrate_migration_commands_total\{kind="setDowntimeLimit"\} 1$/m);
    expect(m).toMatch(/^kvmigrate_migration_succeeded 1$/m);
    expect(m).toMatch(/^kvmigrate_migration_outcome\{outcome="completed",guest_runs_on="destination"\} 1$/m);
    expect(m).toMatch(/^kvmigrate_migration_downtime_limit_seconds 2000$/m);
    expect(m).toMatch(/^kvmigrate_migration_data_processed_bytes \d+/m);
  });

  it('a cancelled run: exit code 1, the source runs; the stream still ends with the outcome', async () => {
    let polls = 0;
    const never: Script = (cmd, _a, q) => {
      if (cmd !== 'query-migrate' || q.state.migration.status === undefined) return undefined;
      if (q.state.migration.status === 'cancelled') return undefined;
      polls++;
      return { return: migrating('active', { syncs: 1 + Math.floor(polls / 3), transferred: polls * 1e7 }) };
    };
    const { s, d } = await peers(never, () => undefined);
    const lines: string[] = [];
    const result = await new MigrationSession({
      source: s,
      destination: d,
      migrateUri: 'tcp:127.0.0.1:1',
      policy: resolvePolicy('stock'),
      downtimeBudgetMs: 300,
      deadlineMs: 400,
      pollMs: 10,
      onEvent: (e) => lines.push(JSON.stringify({ time: new Date().toISOString(), ...e })),
    }).run();
    expect(result).toMatchObject({ outcome: 'cancelled', guestRunsOn: 'source', exitCode: 1 });
    for (const l of lines) expect(EventLineSchema.safeParse(JSON.parse(l)).success, l).toBe(true);
    expect(JSON.parse(lines.at(-1)!)).toMatchObject({ type: 'outcome', result: { outcome: 'cancelled' } });
  });
});

describe('sim --json', () => {
  it('uses the names migrate --json uses for the same things', () => {
    const opts = {
      workloads: ['random:200'],
      ramMiB: [512],
      links: ['1gbit'],
      policies: ['stock', 'frs'],
      downtimeBudgetMs: 300,
      deadlineS: 60,
    };
    for (const run of runSweep(opts)) {
      const line = JSON.parse(JSON.stringify(simRunLine(opts, run))) as unknown;
      expect(SimRunLineSchema.parse(line)).toEqual(line);
      const r = (line as { result: Record<string, unknown> }).result;
      // Every result field is one of migrate --json's, with its meaning, except the guest's downtime.
      const resultKeys = Object.keys(MigrationResultSchema.shape);
      for (const k of Object.keys(r)) if (k !== 'guestDowntimeMs') expect(resultKeys).toContain(k);
      expect(Array.isArray(r.passes)).toBe(true);
      expect(r.policy).toBe(run.policyName);
    }
  });
});
