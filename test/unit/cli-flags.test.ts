import { qemuRateForWireCap } from '../../src/cli/rate.js';
import { CommanderError } from 'commander';
import { z } from 'zod';
import { describe, expect, it } from 'vitest';
import { QmpUnreachableError, classifyError, errorJson } from '../../src/cli/errors.js';
import {
  checkMigrationFlags,
  regionWarning,
  type MigrationFlagValues,
} from '../../src/cli/migration-flags.js';
import { migrationExitCode } from '../../src/cli/commands/migrate.js';
import { recoveryExitCode } from '../../src/cli/commands/recover.js';
import { QmpConnectionError } from '../../src/qmp/index.js';
import { EXIT, LabError } from '../../src/util/errors.js';

const base: MigrationFlagValues = { policy: 'stock', downtimeBudget: 300, onDeadline: 'abort' };

describe('checkMigrationFlags', () => {
  it('passes the rates and deadlines through; QEMU gets a little under the wire cap', () => {
    const f = checkMigrationFlags({ ...base, bandwidth: 25e6, completionTimeoutPerGib: 150 });
    expect(f).toMatchObject({
      maxBandwidthBps: qemuRateForWireCap(25e6),
      perGiBS: 150,
      deadlineS: undefined,
      postcopyPermitted: false,
    });
  });

  it('--on-deadline postcopy needs --allow-postcopy and a policy that turns post-copy on', () => {
    expect(() => checkMigrationFlags({ ...base, onDeadline: 'postcopy' })).toThrow(/needs --allow-postcopy/);
    expect(() => checkMigrationFlags({ ...base, onDeadline: 'postcopy', allowPostcopy: true })).toThrow(
      /policy stock does not turn post-copy on/,
    );
    expect(
      checkMigrationFlags({ ...base, policy: 'mp', onDeadline: 'postcopy', allowPostcopy: true }).onDeadline,
    ).toBe('postcopy');
  });

  it('refuses contradictions with one line each', () => {
    expect(() => checkMigrationFlags({ ...base, deadline: 10, completionTimeoutPerGib: 2 })).toThrow(
      /give one/,
    );
    expect(() => checkMigrationFlags({ ...base, postcopyBandwidth: 1e6 })).toThrow(/never post-copies here/);
    expect(() => checkMigrationFlags({ ...base, policy: 'frs', switchAtPass: 3 })).toThrow(
      /drop --policy frs/,
    );
    // The default --policy with --switch-at-pass is fine.
    expect(checkMigrationFlags({ ...base, switchAtPass: 3 }, false).policy.policy.name).toBe(
      'switch-at-pass',
    );
  });

  it('warns that mp without a region source runs as frs', () => {
    const f = checkMigrationFlags({ ...base, policy: 'mp' });
    expect(regionWarning(f.policy, 300, false)).toMatch(/mp runs as frs/);
    expect(regionWarning(checkMigrationFlags(base).policy, 300, false)).toBeUndefined();
  });
});

describe('exit codes', () => {
  it('from results', () => {
    expect(migrationExitCode({ outcome: 'completed', guestRunsOn: 'destination' })).toBe(EXIT.ok);
    expect(migrationExitCode({ outcome: 'cancelled', guestRunsOn: 'source' })).toBe(EXIT.migrationFailed);
    expect(migrationExitCode({ outcome: 'failed', guestRunsOn: 'none' })).toBe(EXIT.operatorNeeded);
    // The lab: completed, but the destination failed its checks: a lost guest.
    expect(migrationExitCode({ outcome: 'completed', guestRunsOn: 'destination' }, false)).toBe(
      EXIT.operatorNeeded,
    );
    expect(migrationExitCode({ outcome: 'cancelled', guestRunsOn: 'source' }, false)).toBe(
      EXIT.migrationFailed,
    );
    expect(recoveryExitCode({ running: 'none' })).toBe(EXIT.operatorNeeded);
    expect(recoveryExitCode({ running: 'source' })).toBe(EXIT.ok);
  });

  it('from errors, with the JSON line --json prints', () => {
    expect(classifyError(new LabError('no QEMU'))).toEqual({ code: 'lab', message: 'no QEMU', exitCode: 2 });
    expect(classifyError(new QmpUnreachableError('x')).exitCode).toBe(EXIT.usage);
    expect(
      classifyError(new CommanderError(1, 'commander.unknownOption', "error: unknown option '--x'")),
    ).toEqual({
      code: 'usage',
      message: "unknown option '--x'",
      exitCode: 2,
    });
    expect(classifyError(new QmpConnectionError('closed')).exitCode).toBe(EXIT.migrationFailed);
    const bug = classifyError(new TypeError('x is undefined'));
    expect(bug).toEqual({ code: 'internal', message: 'internal error: x is undefined', exitCode: 4 });
    const zod = classifyError(z.object({ a: z.string() }).safeParse({ a: 1 }).error);
    expect(zod.message).toMatch(/^internal error: unexpected data: a: /);
    expect(zod.message).not.toContain('\n');
    expect(JSON.parse(errorJson(bug))).toEqual({ error: bug });
  });
});
