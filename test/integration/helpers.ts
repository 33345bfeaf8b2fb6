import { expect } from 'vitest';
import { findLeftovers } from '../../src/lab/clean.js';
import { Lab, type LabOptions } from '../../src/lab/lab.js';

/** Starts a lab, runs `fn`, always tears it down, then checks nothing of it survives. */
export async function withLab<T>(opts: LabOptions, fn: (lab: Lab) => Promise<T>): Promise<T> {
  const lab = await Lab.start(opts);
  const pids = [lab.source.pid, lab.destination.pid];
  try {
    return await fn(lab);
  } finally {
    await lab.destroy();
    const left = await findLeftovers();
    expect(left.qemuPids.filter((p) => pids.includes(p))).toEqual([]);
    expect(left.netns.filter((n) => n.includes(lab.info.id))).toEqual([]);
    expect(left.links.filter((l) => l.includes(lab.info.id))).toEqual([]);
    expect(left.dirs.filter((d) => d.includes(lab.info.id))).toEqual([]);
  }
}
