import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildGuestImage } from '../../src/lab/image.js';
import { QemuVm } from '../../src/qemu/index.js';
import { QmpClient, QmpError } from '../../src/qmp/index.js';

describe('QMP client against a real QEMU', () => {
  let vm: QemuVm;
  let dir: string;
  beforeAll(async () => {
    const { image } = await buildGuestImage();
    dir = mkdtempSync(path.join(os.tmpdir(), 'kvmm-qmptest-'));
    vm = await QemuVm.launch({
      name: 'kvmm-qmptest',
      ramMiB: 128,
      vcpus: 1,
      accel: 'tcg',
      kernel: image.kernel,
      initrd: image.initrd,
      append: 'console=ttyS0 quiet kvmw=idle',
      qmpSocket: path.join(dir, 'qmp'),
      serialSocket: path.join(dir, 'serial'),
      serialLog: path.join(dir, 'console.log'),
      stderrLog: path.join(dir, 'stderr.log'),
      startPaused: true,
    });
  });
  afterAll(async () => {
    await vm?.destroy();
    rmSync(dir, { recursive: true, force: true });
  });

  it('negotiates, runs commands concurrently and reports QEMU’s version', async () => {
    expect((vm.qmp.greeting.version as { qemu: { major: number } }).qemu.major).toBeGreaterThanOrEqual(8);
    const [status, mem, kvm] = await Promise.all([
      vm.qmp.execute<{ status: string }>('query-status'),
      vm.qmp.execute<{ 'base-memory': number }>('query-memory-size-summary'),
      vm.qmp.execute<{ enabled: boolean }>('query-kvm'),
    ]);
    expect(status.status).toBe('prelaunch');
    expect(mem['base-memory']).toBe(128 * 2 ** 20);
    expect(kvm.enabled).toBe(false);
  });

  it('delivers events: cont → RESUME, stop → STOP', async () => {
    const resumed = vm.qmp.nextEvent((e) => e.event === 'RESUME', 5000);
    await vm.qmp.execute('cont');
    await expect(resumed).resolves.toMatchObject({ event: 'RESUME' });
    const stopped = vm.qmp.nextEvent((e) => e.event === 'STOP', 5000);
    await vm.qmp.execute('stop');
    await expect(stopped).resolves.toMatchObject({ event: 'STOP' });
  });

  it('turns QEMU’s error replies into QmpError', async () => {
    const err = await vm.qmp.execute('no-such-command').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(QmpError);
    expect(err).toMatchObject({ errorClass: 'CommandNotFound', command: 'no-such-command' });
    const bad = await vm.qmp
      .execute('migrate-set-parameters', { 'downtime-limit': 3_000_000 })
      .catch((e: unknown) => e);
    expect((bad as QmpError).desc).toMatch(/downtime_limit|downtime-limit/);
  });

  it('runs HMP commands (gpa2hva finds guest RAM)', async () => {
    expect(await vm.qmp.hmp('gpa2hva 0x100000')).toMatch(
      /Host virtual address for 0x100000 \(pc\.ram\) is 0x[0-9a-f]+/,
    );
  });

  it('a second client while the first is connected gets a clear error (QEMU serves one at a time)', async () => {
    const err = await QmpClient.connect(vm.spec.qmpSocket, { timeoutMs: 500 }).catch((e: Error) => e);
    expect((err as Error).message).toMatch(/did not send a QMP greeting .*another client/);
  });
});
