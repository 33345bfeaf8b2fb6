import { z } from 'zod';
import { ActionSchema, PassRecordSchema } from '../policy/types.js';
import type { Command, Decision, WorkingSetSample } from './controller.js';
import type { MigrationResult, Progress, RunEvent } from './result.js';

/**
 * The machine-readable contract of kvmigrate, defined once: the result JSON (`migrate --json`,
 * the `migration` of `lab migrate --json`), the `--events` NDJSON lines, `sim --json` lines and the
 * control socket's protocol. `npm run schema` writes the JSON Schema files in docs/schema/ from
 * these; a unit test fails when the committed files differ.
 *
 * `schemaVersion` changes when a field is renamed, removed or changes meaning; new fields may be
 * added within a version (consumers should ignore fields they do not know).
 */
export const SCHEMA_VERSION = 1 as const;

const ms = (what: string) => z.number().describe(what);

// Named once in the JSON Schema files ($defs), referenced wherever they recur.
const PassSchema = PassRecordSchema.meta({
  id: 'PassRecord',
  description: 'One pass: the interval during which dirty-sync-count has one value; pass 1 is the bulk copy',
});
const ActSchema = ActionSchema.meta({
  id: 'Action',
  description: 'What a policy, the safety chain or the operator decided, with its reason',
});

export const OutcomeSchema = z
  .enum(['completed', 'failed', 'cancelled'])
  .describe(
    'The outcome code: completed (the guest moved), cancelled (stopped before completion; the source runs on), failed (see guestRunsOn)',
  );
export const GuestRunsOnSchema = z
  .enum(['source', 'destination', 'none'])
  .describe('Where the guest runs when the controller is done; none: the operator decides');

export const DecisionSchema = z
  .object({
    atMs: ms('ms since `migrate`'),
    pass: z.number().int().nonnegative(),
    action: ActSchema,
  })
  .meta({
    id: 'Decision',
    description: 'One logged decision of the policy, the safety chain or the operator',
  });

export const CommandSchema = z
  .discriminatedUnion('kind', [
    z.object({ kind: z.literal('setDowntimeLimit'), downtimeLimitMs: z.number().positive() }),
    z.object({ kind: z.literal('startPostcopy') }),
    z.object({ kind: z.literal('stopSource') }),
    z.object({ kind: z.literal('cancel') }),
    z
      .object({ kind: z.literal('pausePostcopy') })
      .describe('migrate-pause both sides (post-copy link went silent)'),
    z.object({ kind: z.literal('recoverPostcopy') }).describe('migrate-recover, then migrate with resume'),
    z
      .object({ kind: z.literal('setThrottle'), percent: z.number().min(0).max(99) })
      .describe("the vCPU throttle, % (auto-converge's parameters)"),
  ])
  .meta({ id: 'Command', description: 'What the controller did to QEMU' });

export const WorkingSetSampleSchema = z
  .object({
    seconds: z.number().describe('calc-dirty-rate window, s'),
    bytes: z.number().nonnegative().describe('bytes dirtied within the window'),
    atMs: ms('ms since `migrate`'),
  })
  .meta({
    id: 'WorkingSetSample',
    description: 'One calc-dirty-rate result: a point of the working-set curve',
  });

export const ProgressSchema = z
  .object({
    elapsedMs: ms('ms since `migrate`'),
    status: z.string().describe("QEMU's migration status"),
    pass: z.number().int().nonnegative(),
    remainingBytes: z.number().nonnegative(),
    transferredBytes: z.number().nonnegative(),
    ramBytes: z.number().nonnegative(),
    bandwidthBps: z.number().nonnegative().describe('bytes/s'),
    dirtyPagesRate: z.number().describe("QEMU's dirty-pages-rate, pages/s"),
    lastDecision: DecisionSchema.optional(),
  })
  .meta({ id: 'Progress', description: 'One poll of the migration, as the controller saw it' });

export const EndpointsSchema = z
  .object({
    source: z.string().describe("the source's QMP endpoint (socket path or HOST:PORT)"),
    destination: z.string().describe("the destination's QMP endpoint"),
    migrateUri: z.string().describe('where the source sent the migration stream'),
    incomingUri: z.string().optional().describe('what migrate-incoming was given on the destination'),
  })
  .describe('Which QEMUs took part');

const isoTime = (what: string) => z.iso.datetime().describe(`${what} (ISO 8601, UTC)`);

export const MigrationResultSchema = z
  .object({
    schemaVersion: z.literal(SCHEMA_VERSION),
    outcome: OutcomeSchema,
    guestRunsOn: GuestRunsOnSchema,
    reason: z.string().describe('why it ended this way, in words'),
    exitCode: z
      .union([z.literal(0), z.literal(1), z.literal(3)])
      .describe(
        'what `kvmigrate migrate` exits with: 0 completed with the guest on the destination, 1 not completed with the source running, 3 anything else (the operator decides)',
      ),
    startedAt: isoTime('when `migrate` was issued'),
    endedAt: isoTime('when the controller saw the end'),
    endpoints: EndpointsSchema,
    qemuStatus: z.string().describe("QEMU's last migration status on the source"),
    policy: z.string().describe('policy name'),
    policyConfig: z.unknown().describe("the policy's options, as resolved"),
    downtimeBudgetMs: z.number(),
    deadlineMs: z.number(),
    ramBytes: z.number().nonnegative(),
    totalTimeMs: ms("QEMU's total-time, ms"),
    wallMs: ms('from `migrate` to the end as the controller saw it, ms'),
    qemuDowntimeMs: ms("QEMU's downtime (stop-and-copy pause), ms"),
    setupTimeMs: z.number(),
    transferredBytes: z.number().nonnegative(),
    passes: z.array(PassSchema),
    decisions: z.array(DecisionSchema),
    actionLatencyMs: ms(
      'from the first forcing action (switchover/postcopy/pause) to QEMU leaving active, ms',
    ).optional(),
    regionSource: z.enum(['tap', 'sampling', 'model']).optional(),
    postcopy: z.boolean().describe('the migration went through post-copy'),
    postcopyRecoveries: z
      .number()
      .int()
      .nonnegative()
      .optional()
      .describe('how many times a post-copy paused by a broken link was resumed'),
    controllerCpuPct: z.number().describe('controller CPU time ÷ wall time, % of one core'),
    workingSetSamples: z.array(WorkingSetSampleSchema).optional(),
    clock: z
      .object({
        startedAt: z.number(),
        sourceCompletedAt: z.number().optional(),
        destinationCompletedAt: z.number().optional(),
        endedAt: z.number(),
      })
      .describe("the controller's monotonic clock (performance.now(), ms): for intervals, not dates"),
    error: z.string().optional(),
  })
  .meta({ id: 'MigrationResult', description: 'One migration as kvmigrate reports it (migrate --json)' });

const line = <K extends string, T extends z.ZodRawShape>(type: K, shape: T, what: string) =>
  z
    .object({ time: isoTime('wall-clock time the line was written'), type: z.literal(type), ...shape })
    .describe(what);

/** One line of the `--events` NDJSON stream: a RunEvent with its wall-clock time. */
export const EventLineSchema = z
  .discriminatedUnion('type', [
    line('pass', { pass: PassSchema }, 'a pass ended (a dirty-bitmap sync)'),
    line('decision', { decision: DecisionSchema }, 'a decision was logged'),
    line('command', { command: CommandSchema, atMs: ms('ms since `migrate`') }, 'a command was sent'),
    line('status', { status: z.string(), atMs: ms('ms since `migrate`') }, "QEMU's migration status changed"),
    line('workingSet', { sample: WorkingSetSampleSchema }, 'a working-set (calc-dirty-rate) sample'),
    line('progress', { progress: ProgressSchema }, 'one poll of the migration'),
    line(
      'outcome',
      { result: MigrationResultSchema },
      'the end: the same object as the result JSON; last, unless an error line follows it',
    ),
    line(
      'error',
      {
        error: z.object({
          code: z.string().describe('stable code, as in --json errors (e.g. setup, usage, internal)'),
          message: z.string(),
          exitCode: z.number().int().describe('what the command exits with'),
        }),
      },
      'the command ended with an error (nothing follows): the same as its --json error',
    ),
  ])
  .describe('One line of the kvmigrate --events NDJSON stream');
export type EventLine = z.infer<typeof EventLineSchema>;

/** `sim --json`: one line per simulated run, with the result under the names `migrate --json` uses. */
export const SimRunLineSchema = z
  .object({
    schemaVersion: z.literal(SCHEMA_VERSION),
    workload: z.string(),
    ramMiB: z.number(),
    link: z.string(),
    policyLabel: z.string().describe('the policy as the sweep names it, e.g. relaxed(500)'),
    result: MigrationResultSchema.pick({
      outcome: true,
      guestRunsOn: true,
      reason: true,
      policy: true,
      policyConfig: true,
      downtimeBudgetMs: true,
      deadlineMs: true,
      ramBytes: true,
      totalTimeMs: true,
      qemuDowntimeMs: true,
      transferredBytes: true,
      passes: true,
      decisions: true,
      postcopy: true,
    }).extend({
      guestDowntimeMs: ms(
        'what the guest feels in the model (after post-copy: the switch and remote faults), ms',
      ),
    }),
  })
  .describe('One simulated migration (sim --json)');
export type SimRunLine = z.infer<typeof SimRunLineSchema>;

// ---- the control socket (kvmigrate ctl) ---------------------------------------------------------

export const ControlRequestSchema = z
  .discriminatedUnion('op', [
    z.object({ op: z.literal('status') }),
    z.object({ op: z.literal('force-complete') }),
    z.object({ op: z.literal('postcopy') }),
    z.object({ op: z.literal('abort') }),
    z.object({ op: z.literal('set-downtime'), ms: z.number().int().positive().max(2_000_000) }),
  ])
  .describe('One request line on the control socket');
export type ControlRequest = z.infer<typeof ControlRequestSchema>;

export const ControlStatusSchema = z.object({
  elapsedMs: z.number(),
  pass: z.number().int().nonnegative(),
  status: z.string(),
  downtimeLimitMs: z.number(),
  postcopy: z.boolean().describe('post-copy may have begun (latched)'),
  remainingBytes: z.number().optional(),
  transferredBytes: z.number().optional(),
  bandwidthBps: z.number().optional(),
  lastDecision: DecisionSchema.optional(),
});

export const ControlResponseSchema = z
  .object({
    accepted: z.boolean().describe('the request was carried out (status: always, once it could be read)'),
    detail: z.string().describe('what was done, or why not, in words'),
    error: z
      .enum(['bad-request', 'not-started'])
      .optional()
      .describe('bad-request: the line is not a request; not-started: the migration has not begun'),
    status: ControlStatusSchema.optional(),
  })
  .describe('One response line on the control socket');
export type ControlResponse = z.infer<typeof ControlResponseSchema>;

/** The JSON Schema files `npm run schema` writes under docs/schema/, by file name. */
export function jsonSchemas(): Record<string, unknown> {
  const gen = (s: z.ZodType, title: string) => ({
    title: `kvmigrate ${title} (schemaVersion ${SCHEMA_VERSION})`,
    ...z.toJSONSchema(s, { target: 'draft-2020-12', unrepresentable: 'any' }),
  });
  return {
    'results.schema.json': gen(MigrationResultSchema, 'result'),
    'events.schema.json': gen(EventLineSchema, 'events line'),
    'sim-run.schema.json': gen(SimRunLineSchema, 'sim --json line'),
    'control-request.schema.json': gen(ControlRequestSchema, 'control socket request'),
    'control-response.schema.json': gen(ControlResponseSchema, 'control socket response'),
  };
}

// The TypeScript types and the schemas must describe the same objects (checked by the compiler).
// Optional fields count too: the keys must be the same, not only the assignability.
type Same<A, B> = [A] extends [B]
  ? [B] extends [A]
    ? [keyof A] extends [keyof B]
      ? [keyof B] extends [keyof A]
        ? true
        : false
      : false
    : false
  : false;
const resultMatches: Same<z.infer<typeof MigrationResultSchema>, MigrationResult> = true;
type WithoutTime<E> = E extends unknown ? Omit<E, 'time'> : never;
// The error line is the CLI's, not the session's: every other line is a RunEvent.
const eventMatches: Same<WithoutTime<Exclude<EventLine, { type: 'error' }>>, RunEvent> = true;
const partsMatch: [
  Same<z.infer<typeof ProgressSchema>, Progress>,
  Same<z.infer<typeof DecisionSchema>, Decision>,
  Same<z.infer<typeof CommandSchema>, Command>,
  Same<z.infer<typeof WorkingSetSampleSchema>, WorkingSetSample>,
] = [true, true, true, true];
void partsMatch;
void resultMatches;
void eventMatches;
