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
