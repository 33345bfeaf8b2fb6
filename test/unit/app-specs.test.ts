import { describe, expect, it } from 'vitest';
import { UsageError } from '../../src/util/errors.js';
import {
  formatLabWorkload,
  isAppWorkload,
  labWorkloadFootprintMib,
  parseLabWorkload,
  parseWorkload,
} from '../../src/util/specs.js';

describe('app workload specs', () => {
  it('app:pgbench takes an optional scale and client count, defaults written out by format', () => {
    expect(parseLabWorkload('app:pgbench')).toEqual({ kind: 'app', app: 'pgbench', scale: 5, clients: 4 });
    expect(parseLabWorkload('app:pgbench:20')).toEqual({
      kind: 'app',
      app: 'pgbench',
      scale: 20,
      clients: 4,
    });
    expect(parseLabWorkload(' app:pgbench:5:8 ')).toEqual({
      kind: 'app',
      app: 'pgbench',
      scale: 5,
      clients: 8,
    });
    expect(formatLabWorkload(parseLabWorkload('app:pgbench'))).toBe('app:pgbench:5:4');
  });

  it('app:memcached takes an optional cache size, client count and value size', () => {
    expect(parseLabWorkload('app:memcached')).toEqual({
      kind: 'app',
      app: 'memcached',
      mib: 192,
      clients: 4,
      valueKiB: 16,
    });
    expect(parseLabWorkload('app:memcached:256:2:64')).toMatchObject({ mib: 256, clients: 2, valueKiB: 64 });
    expect(formatLabWorkload(parseLabWorkload('app:memcached:100'))).toBe('app:memcached:100:4:16');
  });

  it('format and parse are inverses, synthetic workloads included', () => {
    for (const text of [
      'app:pgbench:3:2',
      'app:memcached:64:1:8',
      'random:200',
      'hotcold:32:256:90',
      'idle',
    ]) {
      expect(formatLabWorkload(parseLabWorkload(text))).toBe(text);
    }
    expect(isAppWorkload(parseLabWorkload('random:200'))).toBe(false);
    expect(isAppWorkload(parseLabWorkload('app:pgbench'))).toBe(true);
  });

  it.each([
    ['app', /name the application/],
    ['app:mysql', /no application named 'mysql'/],
    ['app:pgbench:x', /whole numbers/],
    ['app:pgbench:0', /at least 1/],
    ['app:pgbench:1:2:3', /at most 2 number/],
    ['app:memcached:64:4:2000', /at most 1000 KiB/],
    ['app:memcached:1:2:3:4', /at most 3 number/],
  ])('%s is refused in one line', (text, why) => {
    const err = (() => {
      try {
        parseLabWorkload(text);
      } catch (e) {
        return e;
      }
    })();
    expect(err).toBeInstanceOf(UsageError);
    expect((err as Error).message).toMatch(why);
    expect((err as Error).message).toMatch(/app:pgbench\[:<scale>\[:<clients>\]\]/);
    expect((err as Error).message).not.toContain('\n');
  });

  it('an unknown synthetic name lists the app forms too', () => {
    expect(() => parseLabWorkload('nosuch')).toThrow(/no workload named 'nosuch'.*app:memcached/);
  });

  it('the simulator’s parser refuses app workloads with the reason', () => {
    expect(() => parseWorkload('app:pgbench')).toThrow(/real application: it runs only in the lab/);
  });

  it('footprints: the database grows with its scale, the cache with its size', () => {
    expect(labWorkloadFootprintMib(parseLabWorkload('app:pgbench:10'))).toBeGreaterThan(
      labWorkloadFootprintMib(parseLabWorkload('app:pgbench:2')),
    );
    expect(labWorkloadFootprintMib(parseLabWorkload('app:memcached:192'))).toBeGreaterThan(192);
    // The defaults fit the lab's 512 MiB guest with ~96 MiB for the kernel.
    expect(labWorkloadFootprintMib(parseLabWorkload('app:pgbench'))).toBeLessThanOrEqual(512 - 96);
    expect(labWorkloadFootprintMib(parseLabWorkload('app:memcached'))).toBeLessThanOrEqual(512 - 96);
    // Measured: scale 10 fills a 512 MiB guest's tmpfs while pgbench -i loads it.
    expect(labWorkloadFootprintMib(parseLabWorkload('app:pgbench:10'))).toBeGreaterThan(512 - 96);
    expect(labWorkloadFootprintMib(parseLabWorkload('app:pgbench:10'))).toBeLessThanOrEqual(1024 - 96);
  });
});
