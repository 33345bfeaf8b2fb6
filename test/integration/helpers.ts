import { expect } from 'vitest';
import { leaksOf } from '../../src/lab/clean.js';
import { Lab, type LabOptions } from '../../src/lab/lab.js';

/** Starts a lab, runs `fn`, always tears it down, then checks nothing of it survives. */
export async function withLab<T>(opts: LabOptions, fn: (lab: Lab) => Promise<T>): Promise<T> {
  const lab = await Lab.start(opts);
  const pids = [lab.source.pid, lab.destination.pid];
  try {
    return await fn(lab);
  } finally {
    await lab.destroy();
    expect(await leaksOf(lab.info.id, pids)).toEqual([]);
  }
}

/** Exactly one guest runs afterwards, beating and with its memory intact. */
export async function expectOneGuestRuns(lab: Lab, where: 'source' | 'destination') {
  const [vm, other, console] =
    where === 'source'
      ? [lab.source, lab.destination, lab.sourceConsole]
      : [lab.destination, lab.source, lab.destinationConsole];
  expect((await vm.qmp.execute<{ status: string }>('query-status')).status).toBe('running');
  if (other.alive) {
    const s = await other.qmp.execute<{ status: string }>('query-status').catch(() => ({ status: 'gone' }));
    expect(s.status).not.toBe('running');
  }
  const since = performance.now();
  await new Promise((r) => setTimeout(r, 300));
  expect(console.beatsAfter(since).length).toBeGreaterThanOrEqual(3);
  expect((await console.integrityCheck()).ok).toBe(true);
}
