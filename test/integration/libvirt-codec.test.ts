import { describe, expect, it } from 'vitest';
import { MigrationInfoSchema } from '../../src/core/sample.js';
import { JOB_TYPE, toMigrationInfo } from '../../src/libvirt/job-stats.js';
import { parseLocalUri, LibvirtUsageError } from '../../src/libvirt/index.js';
import { sameDaemon } from '../../src/libvirt/uri.js';
import { DomainName, DowntimeMs, input, reply } from '../../src/libvirt/checks.js';
import { LibvirtError } from '../../src/libvirt/errors.js';
import { PARAM, XdrError, XdrReader, XdrWriter } from '../../src/libvirt/xdr.js';

// The libvirt driver's pure parts: the XDR codec's bounds, the job-stats → query-migrate mapping
// and the URI rules. (Everything that talks to libvirt is tested against real daemons.)

describe('XDR codec', () => {
  it('round-trips typed parameters of every type, padded to 4 bytes', () => {
    const buf = new XdrWriter()
      .params([
        { name: 'i', type: PARAM.int, value: -5 },
        { name: 'u', type: PARAM.uint, value: 4_000_000_000 },
        { name: 'l', type: PARAM.llong, value: -(2n ** 40n) },
        { name: 'ul', type: PARAM.ullong, value: 2n ** 63n },
        { name: 'd', type: PARAM.double, value: 1.5 },
        { name: 'b', type: PARAM.boolean, value: true },
        { name: 'migrate_uri', type: PARAM.string, value: 'tcp://10.0.0.2:49152' },
      ])
      .toBuffer();
    expect(buf.length % 4).toBe(0);
    const p = new XdrReader(buf).params();
    expect(p).toEqual({
      i: -5,
      u: 4_000_000_000,
      l: -(2 ** 40),
      ul: 2n ** 63n,
      d: 1.5,
      b: true,
      migrate_uri: 'tcp://10.0.0.2:49152',
    });
  });

  it('refuses lengths over their bounds and truncated messages instead of allocating', () => {
    expect(() => new XdrReader(new XdrWriter().uint(5_000_000).toBuffer()).string()).toThrow(XdrError);
    expect(() => new XdrReader(new XdrWriter().uint(100).toBuffer()).params(64)).toThrow(/over the bound 64/);
    expect(() => new XdrReader(new XdrWriter().uint(8).toBuffer()).string()).toThrow(/truncated/);
    const badType = new XdrWriter().uint(1).string('x').int(99).toBuffer();
    expect(() => new XdrReader(badType).params()).toThrow(/unknown typed parameter type 99/);
  });
});

describe('job statistics as query-migrate', () => {
  const running = {
    operation: 5, time_elapsed: 4200, downtime: 310, setup_time: 12, memory_total: 537_264_128,
    memory_processed: 700_000_000, memory_remaining: 200_000_000, memory_constant: 60_000, memory_normal: 170_000,
    memory_iteration: 6, memory_dirty_rate: 48_000, memory_bps: 117_000_000, memory_page_size: 4096,
  }; // prettier-ignore

  it('maps a running job field by field (mbps from bytes/s; downtime while running is expected-downtime)', () => {
    const info = toMigrationInfo(JOB_TYPE.unbounded, running, { state: 'running', reason: 'migrated' });
    expect(info).toEqual({
      status: 'active',
      'total-time': 4200,
      'expected-downtime': 310,
      'setup-time': 12,
      ram: {
        transferred: 700_000_000, remaining: 200_000_000, total: 537_264_128, duplicate: 60_000, normal: 170_000,
        'dirty-sync-count': 6, 'dirty-pages-rate': 48_000, mbps: 936,
      },
    }); // prettier-ignore
    expect(MigrationInfoSchema.safeParse(info).success).toBe(true);
  });

  it('tells setup, post-copy and the final words apart', () => {
    expect(toMigrationInfo(JOB_TYPE.unbounded, { memory_total: 0, time_elapsed: 3 })).toEqual({
      status: 'setup',
      'total-time': 3,
    });
    expect(toMigrationInfo(JOB_TYPE.unbounded, running, { state: 'paused', reason: 'postcopy' }).status).toBe(
      'postcopy-active',
    );
    expect(
      toMigrationInfo(JOB_TYPE.unbounded, running, { state: 'paused', reason: 'postcopy-failed' }).status,
    ).toBe('postcopy-paused');
    const done = toMigrationInfo(JOB_TYPE.completed, { ...running, downtime: 1824 });
    expect(done.status).toBe('completed');
    expect(done.downtime).toBe(1824);
    expect(toMigrationInfo(JOB_TYPE.none, {})).toEqual({ status: 'none' });
    expect(toMigrationInfo(JOB_TYPE.failed, { errmsg: 'boom' })).toEqual({
      status: 'failed',
      'error-desc': 'boom',
    });
    expect(toMigrationInfo(JOB_TYPE.cancelled, {}).status).toBe('cancelled');
  });

  it('rejects values that are not counts', () => {
    expect(() => toMigrationInfo(JOB_TYPE.unbounded, { ...running, memory_remaining: -1 })).toThrow();
    expect(() => toMigrationInfo(JOB_TYPE.unbounded, { ...running, memory_total: 'lots' })).toThrow();
  });
});

describe('libvirt URIs', () => {
  it('accepts the local system daemon, with or without a socket path', () => {
    expect(parseLocalUri('qemu:///system').socketPath).toBe('/run/libvirt/libvirt-sock');
    expect(parseLocalUri('qemu+unix:///system?socket=/tmp/x/libvirt-sock').socketPath).toBe(
      '/tmp/x/libvirt-sock',
    );
  });

  it('refuses remote transports, session URIs, relative sockets and unknown parameters in one line', () => {
    for (const uri of ['qemu+ssh://h/system', 'qemu+tls://h/system', 'qemu:///session', 'qemu+unix:///system?socket=rel', 'qemu:///system?mode=legacy']) {
      expect(() => parseLocalUri(uri)).toThrow(LibvirtUsageError);
    }
  }); // prettier-ignore

  it('knows a destination on the source daemon is the same host', () => {
    const src = parseLocalUri('qemu+unix:///system?socket=/tmp/a/libvirt-sock');
    expect(sameDaemon(src, 'qemu+unix:///system?socket=/tmp/a/../a/libvirt-sock')).toBe(true);
    expect(sameDaemon(src, 'qemu+unix:///system?socket=/tmp/b/libvirt-sock')).toBe(false);
    expect(sameDaemon(src, 'qemu+tcp://other/system')).toBe(false);
  });
});

describe('checks at the edges', () => {
  it('bad input is a one-line usage error; an unreadable reply is a one-line libvirt error', () => {
    expect(() => input(DomainName, 'a/b', 'domain name')).toThrow(LibvirtUsageError);
    expect(() => input(DomainName, 'a/b', 'domain name')).toThrow(
      /^bad domain name "a\/b": a domain name has no slash/,
    );
    expect(() => input(DowntimeMs, 3_000_000, 'max downtime (ms)')).toThrow(LibvirtUsageError);
    expect(input(DowntimeMs, 300, 'max downtime (ms)')).toBe(300);
    const truncated = () => reply('job statistics', () => new XdrReader(Buffer.alloc(2)).int());
    expect(truncated).toThrow(LibvirtError);
    expect(truncated).toThrow(/^libvirt sent job statistics this driver cannot read: message truncated/);
  });
});
