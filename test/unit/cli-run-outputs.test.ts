import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { main } from '../../src/cli/main.js';
import { EventLineSchema, MigrationResultSchema } from '../../src/core/schema.js';
import { EXIT } from '../../src/util/errors.js';
import { FakeQemu, migrating, type Script } from '../support/fake-qemu.js';

// migrate's --events, --metrics and control socket flags end to end (in-process CLI, scripted peers).

const open: { close(): void }[] = [];
const dirs: string[] = [];
afterEach(() => {
  sourceScript = iterating;
  while (open.length) open.pop()!.close();
  while (dirs.length) rmSync(dirs.pop()!, { recursive: true, force: true });
});

function tempDir(): string {
  const dir = mkdtempSync(path.join(tmpdir(), 'kvm-cli-out-'));
  dirs.push(dir);
  return dir;
}

/** Iterates until the deadline cancels it (a second is enough). */
const iterating: Script = (cmd, _a, q) => {
  if (cmd !== 'query-migrate' || q.state.migration.status === undefined) return undefined;
  if (q.state.migration.status === 'cancelled') return undefined;
  const n = ((q.state.migration.n as number | undefined) ?? 0) + 1;
  q.state.migration = { ...migrating('active', { syncs: 1 + Math.floor(n / 5), transferred: n * 1e7 }), n };
  return { return: q.state.migration };
};

async function kvmigrate(...args: string[]): Promise<{ code: number; out: string; err: string }> {
  return kvmigrateWatching(() => undefined, ...args);
}

let sourceScript: Script = iterating;

/** Runs migrate in-process; `watch` sees stdout and stderr so far while it runs. */
async function kvmigrateWatching(
  watch: (now: () => { out: string; err: string }) => void,
  ...args: string[]
): Promise<{ code: number; out: string; err: string }> {
  const src = await FakeQemu.start({}, sourceScript);
  const dst = await FakeQemu.start({ runState: 'inmigrate' });
  open.push(src, dst);
  let out = '';
  let err = '';
  const o = vi.spyOn(process.stdout, 'write').mockImplementation((c) => ((out += String(c)), true));
  const e = vi.spyOn(process.stderr, 'write').mockImplementation((c) => ((err += String(c)), true));
  const before = process.exitCode;
  watch(() => ({ out, err }));
  try {
    process.exitCode = undefined;
    await main([
      'node', 'kvmigrate', 'migrate',
      '--src', src.socketPath, '--dst', dst.socketPath, '--uri', 'tcp:127.0.0.1:1',
      '--deadline', '1', ...args,
    ]); // prettier-ignore
    return { code: Number(process.exitCode ?? 0), out, err };
  } finally {
    o.mockRestore();
    e.mockRestore();
    process.exitCode = before;
  }
}

function parseEvents(text: string) {
  return text
    .trimEnd()
    .split('\n')
    .map((l) => {
      const raw: unknown = JSON.parse(l);
      const parsed = EventLineSchema.parse(raw);
      expect(parsed).toEqual(raw);
      return parsed;
    });
}

describe('kvmigrate migrate --events / --metrics / --control-socket', () => {
  it('--events -: stdout is the NDJSON stream alone, the result its last line', async () => {
    const r = await kvmigrate('--events', '-', '--json', '--no-control-socket');
    expect(r.code, r.err).toBe(EXIT.migrationFailed);
    const events = parseEvents(r.out);
    const last = events.at(-1)!;
    expect(last).toMatchObject({ type: 'outcome', result: { outcome: 'cancelled', exitCode: 1 } });
    expect(events.filter((e) => e.type === 'outcome')).toHaveLength(1);
  });

  it('--events FILE with --json: the printed result equals the stream last line', async () => {
    const file = path.join(tempDir(), 'ev.ndjson');
    const r = await kvmigrate('--events', file, '--json', '--no-control-socket');
    expect(r.code, r.err).toBe(EXIT.migrationFailed);
    const result: unknown = JSON.parse(r.out);
    expect(MigrationResultSchema.parse(result)).toEqual(result);
    const last = parseEvents(readFileSync(file, 'utf8')).at(-1)!;
    expect(last.type === 'outcome' && last.result).toEqual(result);
  });

  it('an error after the stream opened is its last line, as the --json error says it', async () => {
    // A reply kvmigrate cannot read (a status that is not a string): an internal error (4).
    sourceScript = (cmd) => (cmd === 'query-migrate' ? { return: { status: 42 } } : undefined);
    const file = path.join(tempDir(), 'ev.ndjson');
    const r = await kvmigrate('--events', file, '--json', '--no-control-socket');
    expect(r.code).toBe(EXIT.internal);
    const last = parseEvents(readFileSync(file, 'utf8')).at(-1)!;
    expect(last).toMatchObject({ type: 'error', error: { code: 'internal', exitCode: EXIT.internal } });
    expect(last.type === 'error' && last.error).toEqual(JSON.parse(r.out).error);
  });

  it('--events into a directory that does not exist is bad input (2), before anything starts', async () => {
    const r = await kvmigrate('--events', '/nonexistent-dir/ev.ndjson', '--no-control-socket');
    expect(r.code).toBe(EXIT.usage);
    expect(r.err).toMatch(/^kvmigrate: --events \/nonexistent-dir\/ev\.ndjson: ENOENT/);
  });

  it('--metrics: bad address is bad input; a good one is announced', async () => {
    expect((await kvmigrate('--metrics', 'localhost:99999', '--no-control-socket')).code).toBe(EXIT.usage);
    const r = await kvmigrate('--metrics', '127.0.0.1:0', '--no-control-socket');
    expect(r.err).toMatch(/^kvmigrate: metrics on http:\/\/127\.0\.0\.1:\d+\/metrics$/m);
  });

  it('--metrics-linger: the final metrics stay up that long after the result is out', async () => {
    expect((await kvmigrate('--metrics-linger', '5', '--no-control-socket')).err).toMatch(
      /--metrics-linger needs --metrics/,
    );
    let scraped: Promise<string> | undefined;
    const r = await kvmigrateWatching(
      (now) => {
        const poll = setInterval(() => {
          const { out, err } = now();
          const url = /metrics on (\S+)/.exec(err)?.[1];
          if (url && out.includes('"outcome"')) {
            clearInterval(poll);
            scraped = fetch(url).then((res) => res.text());
          }
        }, 20);
      },
      '--metrics', '127.0.0.1:0', '--metrics-linger', '1', '--json', '--no-control-socket',
    ); // prettier-ignore
    expect(r.code).toBe(EXIT.migrationFailed);
    const text = await scraped!;
    expect(text).toMatch(/^kvmigrate_migration_failed 1$/m);
    expect(text).toMatch(/^kvmigrate_migration_outcome\{outcome="cancelled",guest_runs_on="source"\} 1$/m);
  });

  it('the control socket: path on stderr at start (not with --quiet), gone at the end', async () => {
    const dir = tempDir();
    const was = process.env.XDG_RUNTIME_DIR;
    process.env.XDG_RUNTIME_DIR = dir;
    try {
      const r = await kvmigrate();
      const m = /^kvmigrate: control socket (\S+) \(kvmigrate ctl /m.exec(r.err);
      expect(m?.[1]).toBe(path.join(dir, 'kvmigrate', `${process.pid}.sock`));
      expect(existsSync(m![1]!)).toBe(false);
      const quiet = await kvmigrate('--quiet');
      expect(quiet.err).toBe('');
      expect(readdirSync(path.join(dir, 'kvmigrate'))).toEqual([]);
    } finally {
      if (was === undefined) delete process.env.XDG_RUNTIME_DIR;
      else process.env.XDG_RUNTIME_DIR = was;
    }
  });

  it('prom-client is loaded only by MigrationMetrics.create (a controller without --metrics never imports it)', () => {
    const importers: string[] = [];
    const walk = (d: string) => {
      for (const f of readdirSync(d, { withFileTypes: true })) {
        const p = path.join(d, f.name);
        if (f.isDirectory()) walk(p);
        else if (
          /\.ts$/.test(f.name) &&
          /^import(?! type)[^;]*from 'prom-client'/m.test(readFileSync(p, 'utf8'))
        )
          importers.push(p);
      }
    };
    walk('src');
    expect(importers).toEqual([]);
    expect(readFileSync('src/migration/metrics.ts', 'utf8')).toContain("await import('prom-client')");
  });
});
