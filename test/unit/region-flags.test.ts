import { describe, expect, it } from 'vitest';
import { checkRegionFlags } from '../../src/cli/region-sources.js';
import { UsageError } from '../../src/util/errors.js';

describe('the region flags are checked before anything is touched, whatever the policy', () => {
  it('--qemu-pid with --no-regions or --tap contradicts itself: one line', () => {
    expect(() => checkRegionFlags({ qemuPid: process.pid, regions: false })).toThrow(
      /--qemu-pid names a process to sample, --no-regions turns sampling off/,
    );
    expect(() => checkRegionFlags({ qemuPid: process.pid, tap: true })).toThrow(UsageError);
  });

  it('a --qemu-pid that is no process, or no QEMU, is bad input', () => {
    expect(() => checkRegionFlags({ qemuPid: 2 ** 22 + 7 })).toThrow(/no such process/);
    // This test runner is a live process, but not QEMU.
    expect(() => checkRegionFlags({ qemuPid: process.pid })).toThrow(/not a QEMU process/);
  });

  it('no --qemu-pid: nothing to check', () => {
    expect(() => checkRegionFlags({ regions: false, tap: true })).not.toThrow();
  });
});
