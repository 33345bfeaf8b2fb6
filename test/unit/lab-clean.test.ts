import { mkdirSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { labIdOf, makeLabDir, splitByOwner } from '../../src/lab/clean.js';

describe('lab clean leaves the labs of running processes alone', () => {
  it('reads the lab id out of every kind of leftover name', () => {
    expect(labIdOf('kvmm-ab12cd34')).toBe('ab12cd34');
    expect(labIdOf('/tmp/kvmm-ab12cd34-Xy9z')).toBe('ab12cd34');
    expect(labIdOf('kvmm-ab12cd34-src')).toBe('ab12cd34');
    expect(labIdOf('kvmmab12cd34s')).toBe('ab12cd34');
    expect(labIdOf('/etc/libvirt/kvmm-ab12cd34-dst.conf')).toBe('ab12cd34');
    expect(labIdOf('eth0')).toBeUndefined();
  });

  it('a lab made by this (running) process is in use; one whose owner is gone is a leftover', () => {
    const mine = makeLabDir('t1live00');
    const dead = path.join(os.tmpdir(), `kvmm-t1dead00-x`);
    mkdirSync(dead, { recursive: true });
    try {
      expect(readFileSync(path.join(mine, 'owner'), 'utf8')).toMatch(new RegExp(`^${process.pid} \\d+`));
      const { orphaned, inUse } = splitByOwner({
        qemuPids: [],
        netns: ['kvmm-t1live00', 'kvmm-t1dead00'],
        links: ['kvmmt1live00s', 'kvmmt1dead00d'],
        dirs: [mine, dead],
      });
      expect(inUse.get('t1live00')).toBe(process.pid);
      expect(orphaned.netns).toEqual(['kvmm-t1dead00']);
      expect(orphaned.links).toEqual(['kvmmt1dead00d']);
      expect(orphaned.dirs).toEqual([dead]);
    } finally {
      rmSync(mine, { recursive: true, force: true });
      rmSync(dead, { recursive: true, force: true });
    }
  });
});
