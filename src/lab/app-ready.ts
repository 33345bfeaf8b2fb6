import { setTimeout as sleep } from 'node:timers/promises';
import type { QemuVm } from '../qemu/index.js';
import { LabError } from '../util/errors.js';
import type { SerialConsole } from './serial.js';

/**
 * Waits until the app guest's load runs (`APP READY`, guest/appload.c): the database loaded or
 * the cache filled, and the first request done. Fails on the app's own `ERROR app:` line, or when
 * QEMU exits, with the console log's path. Then lets the load run `warmupMs` (default 6 s) so the
 * application is past its start-up (a cache's first requests after filling, pgbench's first
 * transactions) and the latency baseline before `migrate` (5 s) sees it steady. Returns how long
 * it waited, ms.
 */
export async function waitForAppReady(
  c: SerialConsole,
  vm: QemuVm,
  timeoutMs: number,
  log: (line: string) => void = () => undefined,
  warmupMs = 6000,
): Promise<number> {
  const t0 = performance.now();
  let ready = false;
  let error: string | undefined;
  const onLine = (text: string) => {
    if (text.startsWith('APP READY')) ready = true;
    else if (text.startsWith('APP ')) log(`guest: ${text.slice(4)}`);
    else if (text.startsWith('ERROR')) error ??= text.slice(6);
  };
  for (const l of c.lines) onLine(l.text);
  c.on('line', onLine);
  try {
    for (;;) {
      if (error !== undefined) throw new LabError(`the guest application failed: ${error}`);
      if (ready) {
        await sleep(warmupMs);
        return performance.now() - t0;
      }
      if (!vm.alive) throw new LabError(`QEMU (${vm.spec.name}) exited while the guest application started`);
      if (performance.now() - t0 > timeoutMs)
        throw new LabError(
          `the guest application did not start its load within ${Math.round(timeoutMs / 1000)} s (see ${vm.spec.serialLog})`,
        );
      await sleep(100);
    }
  } finally {
    c.off('line', onLine);
  }
}
