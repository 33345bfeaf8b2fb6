import { describe, expect, it } from 'vitest';
import { formatRate, parseRate } from '../../src/cli/rate.js';

describe('parseRate: rates as operators write them, in bytes/s', () => {
  it.each([
    ['200mbit', 25_000_000],
    ['1gbit', 125_000_000],
    ['2.5gbit', 312_500_000],
    ['500kbit', 62_500],
    ['1Gbit', 125_000_000],
    ['100M', 100_000_000],
    ['100MB/s', 100_000_000],
    ['64Mi', 64 * 2 ** 20],
    ['64MiB/s', 64 * 2 ** 20],
    ['1Gi', 2 ** 30],
    ['512Ki', 512 * 1024],
    ['1G', 1e9],
    ['10k', 10_000],
    ['10K', 10_000],
    [' 1gbit ', 125_000_000],
  ])('%s → %d', (text, bps) => {
    expect(parseRate(text)).toBe(bps);
  });

  it.each([
    ['100', /give a unit \(a bare number is MiB\/s to virsh/],
    ['100mbps', /write 'mbit' for megabits or 'M' for megabytes/],
    ['1Gbps', /write 'mbit' for megabits/],
    ['100m', /'m' is milli in Kubernetes quantities/],
    ['100mi', /'m' is milli/],
    ['fast', /use e\.g\. 200mbit/],
    ['-5mbit', /use e\.g\. 200mbit/],
    ['1mbitB/s', /use e\.g\. 200mbit/],
    ['0mbit', /must be at least 1 byte\/s/],
    ['2000gbit', /at most 1000gbit/],
  ])('%s is refused', (text, why) => {
    expect(() => parseRate(text, '--bandwidth')).toThrow(why);
    expect(() => parseRate(text, '--bandwidth')).toThrow(/^bad --bandwidth /);
  });

  it('formats both ways operators think of a rate', () => {
    expect(formatRate(25_000_000)).toBe('200 Mbit/s (23.8 MiB/s)');
    expect(formatRate(312_500_000)).toBe('2.5 Gbit/s (298 MiB/s)');
  });
});
