import { describe, expect, it } from 'vitest';
import { buildCpio } from '../../src/lab/cpio.js';
import { formatLink, parseLink } from '../../src/lab/link.js';
import { formatWorkload, parseWorkload } from '../../src/lab/workload.js';

describe('workload strings', () => {
  it('parses every form and round-trips', () => {
    for (const w of [
      'idle',
      'random:200',
      'hotcold:32:256:90',
      'rate:200:20000',
      'sweep:256:400',
      'phase:256:64:5',
    ]) {
      expect(formatWorkload(parseWorkload(w))).toBe(w);
    }
    expect(parseWorkload('hotcold:32:256:90')).toEqual({
      kind: 'hotcold',
      hotMib: 32,
      coldMib: 256,
      hotPct: 90,
    });
  });

  it.each([
    ['bogus', /no workload named 'bogus'/],
    ['random', /random takes 1 number/],
    ['random:1.5', /whole numbers/],
    ['random:0', /at least 1 MiB/],
    ['hotcold:32:256:150', /hotPct is at most 100/],
    ['phase:64:128:5', /must fit/],
  ])('rejects %s', (w, re) => {
    expect(() => parseWorkload(w)).toThrow(re);
  });
});

describe('link strings', () => {
  it('parses rates and options', () => {
    expect(parseLink('1gbit')).toEqual({ rateMbit: 1000 });
    expect(parseLink('2.5gbit')).toEqual({ rateMbit: 2500 });
    expect(parseLink('256mbit,delay=1ms')).toEqual({ rateMbit: 256, delayMs: 1 });
    expect(parseLink('none')).toEqual({});
    expect(formatLink(parseLink('1gbit,delay=1ms,loss=0.5%'))).toBe('1gbit,delay=1ms,loss=0.5%');
    expect(() => parseLink('fast')).toThrow(/bad link 'fast'/);
    expect(() => parseLink('1gbit,jitter=3')).toThrow(/bad link option 'jitter=3'/);
  });
});

describe('cpio (newc) writer', () => {
  it('writes headers the kernel reads: magic, 4-byte alignment, trailer', () => {
    const out = buildCpio([
      { kind: 'dir', path: 'bin' },
      { kind: 'file', path: 'init', data: Buffer.from('#!/bin/sh\n'), mode: 0o755 },
      { kind: 'chardev', path: 'dev/console', major: 5, minor: 1 },
    ]);
    expect(out.subarray(0, 6).toString()).toBe('070701');
    expect(out.length % 4).toBe(0);
    expect(out.includes(Buffer.from('TRAILER!!!\0'))).toBe(true);
    // The file record: mode 0100755, size 10.
    const at = out.indexOf(Buffer.from('init\0')) - 110;
    const header = out.subarray(at, at + 110).toString();
    expect(parseInt(header.slice(14, 22), 16)).toBe(0o100755);
    expect(parseInt(header.slice(54, 62), 16)).toBe(10);
    // Same input, same bytes: the image cache relies on it.
    expect(buildCpio([{ kind: 'dir', path: 'bin' }]).equals(buildCpio([{ kind: 'dir', path: 'bin' }]))).toBe(
      true,
    );
  });
});
