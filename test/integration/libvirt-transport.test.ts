import { execFile, spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LibvirtPair, type LibvirtLabGuest } from '../../src/lab/libvirt-pair.js';
import { parseLink } from '../../src/lab/link.js';
import { parseWorkload } from '../../src/lab/workload.js';
import { LibvirtClient } from '../../src/libvirt/index.js';
import { expectPairFound, expectPairGone, latency, timed } from './libvirt-helpers.js';

// The numbers the libvirt driver's transport was chosen on (see the top of src/libvirt/client.ts):
// libvirt's RPC spoken from Node vs `virsh` per call vs one long-lived interactive `virsh`, same
// daemon, same domain, same query (job statistics), on this 2-core host.

const execFileAsync = promisify(execFile);
const TICK_MS = 10; // USER_HZ = 100 on Linux

let pair: LibvirtPair;
let guest: LibvirtLabGuest;

beforeAll(async () => {
  pair = await LibvirtPair.start({ link: parseLink('1gbit') });
  guest = await pair.startGuest({ workload: parseWorkload('idle'), ramMiB: 128 });
});

afterAll(async () => {
  if (!pair) return;
  const pids = [pair.source.pid, pair.destination.pid, ...pair.source.qemuPids()];
  expect(pair.source.qemuPids()).toHaveLength(1);
  await expectPairFound(pair);
  await pair.destroy();
  await expectPairGone(pair, pids);
});

/** CPU ms of a process (utime + stime), or of its waited-for children (cutime + cstime). */
function cpuMs(pid: number | 'self', children = false): number {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  const [u, s] = children ? [fields[13], fields[14]] : [fields[11], fields[12]];
  return (Number(u) + Number(s)) * TICK_MS;
}

async function viaRpc(n: number) {
  const c = await LibvirtClient.open(pair.source.uri);
  const stats: number[] = [];
  const downtime: number[] = [];
  const cpu0 = process.cpuUsage();
  for (let i = 0; i < n; i++) await timed(stats, () => c.jobStats(guest.name));
  for (let i = 0; i < n; i++) await timed(downtime, () => c.setMaxDowntime(guest.name, 300));
  const cpu = process.cpuUsage(cpu0);
  await c.close();
  return {
    jobStats: latency(stats),
    setMaxDowntime: latency(downtime),
    cpuMsPerCall: (cpu.user + cpu.system) / 1000 / (2 * n),
  };
}

async function viaVirshPerCall(n: number) {
  const rtt: number[] = [];
  const cpu0 = cpuMs('self', true);
  for (let i = 0; i < n; i++) {
    await timed(rtt, () =>
      execFileAsync('virsh', ['-c', pair.source.uri, 'domjobinfo', guest.name, '--rawstats']),
    );
  }
  return { jobStats: latency(rtt), cpuMsPerCall: (cpuMs('self', true) - cpu0) / n };
}

/** One interactive virsh; each command is followed by `echo` of a marker to find the end of its reply. */
async function viaVirshShell(n: number) {
  const sh = spawn('virsh', ['-q', '-c', pair.source.uri], { stdio: ['pipe', 'pipe', 'pipe'] });
  let out = '';
  sh.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
  const ask = (i: number) =>
    new Promise<void>((resolve) => {
      // The shell echoes its input (readline), so the marker counts only where `echo` printed it.
      const marker = new RegExp(`(?<!echo )KVMM-END-${i}(?!\\d)`);
      const check = () =>
        marker.test(out) ? (sh.stdout.off('data', check), (out = ''), resolve()) : undefined;
      sh.stdout.on('data', check);
      sh.stdin.write(`domjobinfo ${guest.name} --rawstats\necho KVMM-END-${i}\n`);
    });
  await ask(0); // connected
  const rtt: number[] = [];
  const cpu0 = cpuMs(sh.pid!) + process.cpuUsage().user / 1000 + process.cpuUsage().system / 1000;
  for (let i = 1; i <= n; i++) await timed(rtt, () => ask(i));
  const cpu1 = cpuMs(sh.pid!) + process.cpuUsage().user / 1000 + process.cpuUsage().system / 1000;
  sh.kill();
  return { jobStats: latency(rtt), cpuMsPerCall: (cpu1 - cpu0) / n };
}

describe('libvirt transport: RPC vs virsh', () => {
  it('measures round trips and CPU per call; the RPC is the fastest and within the 150 ms p95 goal', async () => {
    const rpc = await viaRpc(300);
    const perCall = await viaVirshPerCall(30);
    const shell = await viaVirshShell(300);
    console.log(JSON.stringify({ rpc, virshPerCall: perCall, virshShell: shell }));
    expect(rpc.jobStats.p95Ms).toBeLessThan(150);
    expect(rpc.setMaxDowntime.p95Ms).toBeLessThan(150);
    expect(rpc.jobStats.medianMs).toBeLessThan(perCall.jobStats.medianMs);
  });
});
