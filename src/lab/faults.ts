import { spawn } from 'node:child_process';
import { setTimeout as sleep } from 'node:timers/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Decision, Progress, SessionOptions } from '../migration/session.js';
import { recoverAt } from '../migration/recover.js';
import { resolvePolicy } from '../policy/index.js';
import { leaksOf } from './clean.js';
import { Lab, migrateLab, type LabOptions } from './lab.js';
import { parseLink } from './link.js';
import { longestGap } from './serial.js';
import { parseWorkload } from './workload.js';

/** Where the guest is expected to run after the fault: `either` when both ends are correct outcomes. */
export type Expected = 'source' | 'destination' | 'either' | 'lost';

export interface FaultRow {
  case: string;
  policy: string;
  expected: Expected;
  outcome: string;
  /** Which side runs the guest afterwards (beating), `none`, or `both` (the worst). */
  runsOn: 'source' | 'destination' | 'none' | 'both';
  integrity: 'ok' | 'FAIL' | '-';
  guestDowntimeMs: number | undefined;
  leaks: string[];
  reason: string;
  /** Where the controller's result says the guest runs (`unknown`: no result was printed). */
  reported: 'source' | 'destination' | 'none' | 'unknown';
  postcopyRecoveries?: number;
  /** The fault was actually injected (its trigger fired): a case whose fault never happened proves nothing. */
  injected: boolean;
  ok: boolean;
}

interface FaultCase {
  name: string;
  policy: string;
  expected: Expected;
  run: (lab: Lab) => Promise<CaseResult>;
}

/** What a case's controller reported (its result, or `recover`'s report): read from data, never from text. */
interface CaseResult {
  outcome: string;
  reason: string;
  /** Where the controller says the guest runs; the row's `runsOn` is what the consoles show. */
  guestRunsOn: 'source' | 'destination' | 'none' | 'unknown';
  guestDowntimeMs?: number;
  postcopyRecoveries?: number;
  injected: boolean;
}

const memoryIntensive: LabOptions = {
  workload: parseWorkload('random:100'),
  ramMiB: 256,
  link: parseLink('1gbit'),
};

/**
 * A session hook that injects the fault once, the first time `when` holds; `fired` says whether
 * the injection completed (the kill sent, the link cut or reshaped), not only whether it began.
 */
type Trigger<T> = ((x: T) => void) & { began: boolean; fired: boolean };
const once = <T>(when: (x: T) => boolean, act: () => unknown): Trigger<T> => {
  const trigger = Object.assign(
    (x: T) => {
      if (trigger.began || !when(x)) return;
      trigger.began = true;
      void Promise.resolve()
        .then(act)
        .then(
          () => (trigger.fired = true),
          () => undefined,
        );
    },
    { began: false, fired: false },
  );
  return trigger;
};
const fired = (hook: unknown) => (hook as Partial<Trigger<unknown>> | undefined)?.fired === true;

/** A lab migration under `policy` with a fault injected by the session hooks `hooks(lab)`. */
function inProcess(
  name: string,
  policy: string,
  expected: Expected,
  hooks: (lab: Lab, abort: AbortController) => Partial<SessionOptions>,
  policyOpts: Record<string, unknown> = {},
): FaultCase {
  return {
    name,
    policy: Object.keys(policyOpts).length ? `${policy}(${Object.values(policyOpts).join(',')})` : policy,
    expected,
    run: async (lab) => {
      const abort = new AbortController();
      const injected = hooks(lab, abort);
      const r = await migrateLab(lab, {
        policy: resolvePolicy(policy, policyOpts),
        downtimeBudgetMs: 300,
        deadlineMs: 40_000,
        postcopyPermitted: policy === 'postcopy-after',
        signal: abort.signal,
        ...injected,
      });
      return {
        outcome: r.migration.outcome,
        reason: r.migration.reason,
        guestRunsOn: r.migration.guestRunsOn,
        guestDowntimeMs: r.guestDowntimeMs,
        postcopyRecoveries: r.migration.postcopyRecoveries,
        injected: fired(injected.onProgress) || fired(injected.onDecision),
      };
    },
  };
}

const bin = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../bin/kvmigrate.js');

/**
 * The controller as a separate process (`kvmigrate migrate` on the lab's QMP sockets), sent
 * `signal` once its stderr matches `when` (+ delayMs); after SIGKILL, `kvmigrate recover`'s code.
 */
function controllerProcess(
  name: string,
  args: string[],
  when: RegExp,
  signal: NodeJS.Signals,
  expected: Expected,
  delayMs = 0,
): FaultCase {
  return {
    name,
    policy: args[0] === '--switch-at-pass' ? `switch-at-pass(${args[1]})` : args.slice(1).join(' '),
    expected,
    run: async (lab) => {
      lab.source.releaseQmp();
      lab.destination.releaseQmp();
      const child = spawn(
        process.execPath,
        [
          bin, 'migrate',
          '--src', lab.source.spec.qmpSocket, '--dst', lab.destination.spec.qmpSocket,
          '--uri', lab.migrateUri, '--incoming', lab.migrateUri, '--deadline', '40',
          ...args,
        ], // prettier-ignore
        { stdio: ['ignore', 'pipe', 'pipe'] },
      );
      let stderr = '';
      let stdout = '';
      child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
      const exited = new Promise<void>((r) => child.once('exit', () => r()));
      // Without --json: the progress and decision lines the trigger waits for go to stderr (--json
      // silences them); the result is still the JSON document on stdout.
      let injected = false;
      child.stderr.on('data', (d: Buffer) => {
        stderr += d.toString();
        if (!injected && when.test(stderr)) {
          injected = true;
          setTimeout(() => child.kill(signal), delayMs);
        }
      });
      await exited;
      let result: CaseResult;
      if (signal === 'SIGKILL') {
        const report = await recoverAt(lab.source.spec.qmpSocket, lab.destination.spec.qmpSocket);
        result = {
          outcome: report?.running === 'destination' ? 'completed' : 'cancelled',
          reason: `recover: ${report?.did ?? 'neither side answers QMP'}`,
          guestRunsOn: report?.running ?? 'unknown',
          injected,
        };
      } else {
        // The result is the JSON document on stdout.
        const parsed = (() => {
          try {
            return JSON.parse(stdout) as {
              outcome?: string;
              reason?: string;
              guestRunsOn?: CaseResult['guestRunsOn'];
            };
          } catch {
            return {};
          }
        })();
        result = {
          outcome: parsed.outcome ?? 'unknown',
          reason:
            parsed.reason ?? `no result on stdout (exit); stderr: ${stderr.trim().split('\n').at(-1) ?? ''}`,
          guestRunsOn: parsed.guestRunsOn ?? 'unknown',
          injected,
        };
      }
      await lab.source.reconnectQmp();
      if (lab.destination.alive) await lab.destination.reconnectQmp().catch(() => undefined);
      return result;
    },
  };
}

/**
 * The matrix. Each case gets a fresh lab; `random:100` on 256 MiB over 1 Gbit never converges by
 * itself (its ~100 MiB dirty set takes ~0.8 s to send, the budget is 300 ms), and half the RAM of
 * the benchmark's guest keeps each case's boot, bulk pass and checks short.
 */
export const FAULT_CASES: FaultCase[] = [
  inProcess('destination killed in the bulk pass', 'stock', 'source', (lab) => ({
    onProgress: once<Progress>(
      (p) => p.pass === 1 && p.elapsedMs > 800,
      () => lab.destination.kill('SIGKILL'),
    ),
  })),
  inProcess('destination killed in a later pass', 'stock', 'source', (lab) => ({
    onProgress: once<Progress>(
      (p) => p.pass >= 3,
      () => lab.destination.kill('SIGKILL'),
    ),
  })),
  inProcess(
    'destination killed during stop-and-copy',
    'switch-at-pass',
    'source',
    (lab) => ({
      // QEMU answers no QMP during stop-and-copy (big lock): time it from our decision instead.
      onDecision: once<Decision>(
        (d) => d.action.kind === 'switchover',
        async () => {
          await sleep(400);
          lab.destination.kill('SIGKILL');
        },
      ),
    }),
    { pass: 2 },
  ),
  inProcess(
    'destination killed during post-copy',
    'postcopy-after',
    'lost',
    (lab) => ({
      onDecision: once<Decision>(
        (d) => d.action.kind === 'postcopy',
        async () => {
          await sleep(300);
          lab.destination.kill('SIGKILL');
        },
      ),
    }),
    { pass: 1 },
  ),
  inProcess(
    'link cut during post-copy, restored after 3 s (recovered)',
    'postcopy-after',
    'destination',
    (lab) => ({
      // Pause a silent post-copy after 1 s rather than 5 s, so the 3 s cut exercises the recovery.
      postcopyRecovery: { stallMs: 1000 },
      onDecision: once<Decision>(
        (d) => d.action.kind === 'postcopy',
        async () => {
          await sleep(300);
          await lab.link!.cut();
          // The restore runs on its own: the fault is the cut.
          setTimeout(() => void lab.link!.restore(), 3000);
        },
      ),
    }),
    { pass: 1 },
  ),
  inProcess('link cut', 'stock', 'source', (lab) => ({
    stallTimeoutMs: 5000,
    onProgress: once<Progress>(
      (p) => p.pass >= 2,
      () => lab.link!.cut(),
    ),
  })),
  inProcess('link cut, restored after 3 s', 'frs', 'either', (lab) => ({
    onProgress: once<Progress>(
      (p) => p.pass >= 2,
      async () => {
        await lab.link!.cut();
        setTimeout(() => void lab.link!.restore(), 3000);
      },
    ),
  })),
  inProcess('link slowed 4× mid-migration', 'frs', 'either', (lab) => ({
    onProgress: once<Progress>(
      (p) => p.pass >= 2,
      () => {
        const link = parseLink(lab.info.link);
        return lab.link!.shape({ ...link, rateMbit: (link.rateMbit ?? 1000) / 4 });
      },
    ),
  })),
  inProcess("the controller's QMP connection to the source dropped", 'frs', 'destination', (lab) => ({
    onProgress: once<Progress>(
      (p) => p.pass >= 2,
      () => lab.source.qmp.close(),
    ),
  })),
  inProcess('interrupted (SIGINT/SIGTERM path) in the bulk pass', 'frs', 'source', (_lab, abort) => ({
    onProgress: once<Progress>(
      (p) => p.pass === 1 && p.elapsedMs > 800,
      () => abort.abort(),
    ),
  })),
  inProcess(
    'interrupted (SIGINT/SIGTERM path) after the switchover decision',
    'switch-at-pass',
    'either',
    (_lab, abort) => ({
      onDecision: once<Decision>(
        (d) => d.action.kind === 'switchover',
        () => abort.abort(),
      ),
    }),
    { pass: 2 },
  ),
  controllerProcess(
    'controller SIGINT in a later pass',
    ['--policy', 'stock'],
    /active pass 3:/,
    'SIGINT',
    'source',
  ),
  controllerProcess(
    'controller SIGTERM in the bulk pass',
    ['--policy', 'stock'],
    /active pass 1:/,
    'SIGTERM',
    'source',
    800,
  ),
  controllerProcess(
    'controller SIGKILL in the bulk pass, then recover',
    ['--policy', 'stock'],
    /active pass 1:/,
    'SIGKILL',
    'source',
    800,
  ),
  controllerProcess(
    'controller SIGKILL in a later pass, then recover',
    ['--policy', 'stock'],
    /active pass 3:/,
    'SIGKILL',
    'source',
  ),
  controllerProcess(
    'controller SIGINT during post-copy (post-copy is never cancelled)',
    ['--policy', 'postcopy-after'],
    /: postcopy —/,
    'SIGINT',
    'destination',
    300,
  ),
  controllerProcess(
    'controller SIGKILL during post-copy, then recover',
    ['--policy', 'postcopy-after'],
    /: postcopy —/,
    'SIGKILL',
    'destination',
    300,
  ),
  controllerProcess(
    'controller SIGKILL after the switchover decision, then recover',
    ['--switch-at-pass', '2'],
    /: switchover —/,
    'SIGKILL',
    'either',
    100,
  ),
];

/** Which side runs the guest: running per QMP and beating on its console. */
async function whereRuns(lab: Lab): Promise<FaultRow['runsOn']> {
  const running = async (side: 'source' | 'destination') => {
    const vm = lab[side];
    if (!vm.alive) return false;
    const s = await vm.qmp.execute<{ status: string }>('query-status').catch(() => undefined);
    if (s?.status !== 'running') return false;
    const console = side === 'source' ? lab.sourceConsole : lab.destinationConsole;
    const since = performance.now();
    await new Promise((r) => setTimeout(r, 400));
    return console.beatsAfter(since).length >= 3;
  };
  const [src, dst] = [await running('source'), await running('destination')];
  return src && dst ? 'both' : src ? 'source' : dst ? 'destination' : 'none';
}

export async function runFaultCase(c: FaultCase): Promise<FaultRow> {
  const lab = await Lab.start(memoryIntensive);
  const pids = [lab.source.pid, lab.destination.pid];
  let row: Omit<FaultRow, 'leaks' | 'ok'>;
  try {
    const t0 = performance.now();
    const r = await c.run(lab);
    if (lab.source.qmp.isClosed) await lab.source.reconnectQmp();
    const runsOn = await whereRuns(lab);
    const console = runsOn === 'source' ? lab.sourceConsole : lab.destinationConsole;
    const integrity =
      runsOn === 'source' || runsOn === 'destination'
        ? (await console.integrityCheck()).ok
          ? 'ok'
          : 'FAIL'
        : '-';
    row = {
      case: c.name,
      policy: c.policy,
      expected: c.expected,
      outcome: r.outcome,
      runsOn,
      integrity,
      // The controller-process cases have no lab result: the heartbeat gap over the whole case.
      guestDowntimeMs:
        r.guestDowntimeMs ??
        (runsOn === 'source' || runsOn === 'destination'
          ? longestGap(
              [...lab.sourceConsole.heartbeats, ...lab.destinationConsole.heartbeats].sort(
                (a, b) => a.at - b.at,
              ),
              t0,
              performance.now(),
            )
          : undefined),
      reason: r.reason,
      reported: r.guestRunsOn,
      postcopyRecoveries: r.postcopyRecoveries,
      injected: r.injected,
    };
  } finally {
    await lab.destroy();
  }
  const leaks = await leaksOf(lab.info.id, pids);
  const placed =
    c.expected === 'lost'
      ? row.runsOn === 'none' && row.reported === 'none'
      : (c.expected === 'either'
          ? row.runsOn === 'source' || row.runsOn === 'destination'
          : row.runsOn === c.expected) && row.integrity === 'ok';
  return { ...row, leaks, ok: row.injected && placed && leaks.length === 0 };
}

export function faultTable(rows: FaultRow[]): string {
  const lines = [
    '| case | policy | outcome | guest runs on | integrity | guest downtime ms | leaks | |',
    '|---|---|---|---|---|---:|---|---|',
    ...rows.map(
      (r) =>
        `| ${r.case} | ${r.policy} | ${r.outcome} | ${r.runsOn}${r.expected === 'either' ? '' : ` (expected ${r.expected})`} | ${r.integrity} | ${r.guestDowntimeMs?.toFixed(0) ?? '–'} | ${r.leaks.join(', ') || 'none'} | ${r.ok ? 'ok' : r.injected ? 'FAIL' : 'FAIL: the fault was never injected'} |`,
    ),
  ];
  return lines.join('\n');
}
