import { setTimeout as sleep } from 'node:timers/promises';
import { resolveEnding, type DestinationVerdict, type GuestRunsOn } from '../core/ending.js';
import { isPostcopyStatus, PRECOPY_STATUSES } from '../core/sample.js';
import type { LibvirtClient } from './client.js';
import { UnknownDomainError } from './errors.js';

export interface LibvirtRecoveryReport {
  found: string;
  did: string;
  running: GuestRunsOn;
}

async function state(client: LibvirtClient | undefined, domain: string) {
  if (!client) return { where: 'unreachable' as const };
  try {
    const s = await client.domainState(domain);
    const job = await client.jobStats(domain).catch(() => ({ status: 'none' }));
    return { where: 'present' as const, state: s.state, reason: s.reason, job: job.status ?? 'none' };
  } catch (err) {
    if (err instanceof UnknownDomainError) return { where: 'absent' as const };
    return { where: 'unreachable' as const, why: (err as Error).message };
  }
}

/**
 * After a controller died while steering a libvirt migration: the same rules as the controller
 * (core/ending.ts) on what both daemons say. A pre-copy job still running is aborted (the domain
 * runs on at the source); a post-copy is waited for; the source is resumed only when its guest
 * never left or the destination provably does not hold it.
 */
export async function recoverLibvirt(
  source: LibvirtClient | undefined,
  destination: LibvirtClient | undefined,
  domain: string,
  waitMs = 120_000,
): Promise<LibvirtRecoveryReport> {
  let src = await state(source, domain);
  const dst0 = await state(destination, domain);
  const found = `source: ${describe(src)}; destination: ${describe(dst0)}`;
  const did: string[] = [];
  const job = () => (src.where === 'present' ? src.job : 'none');
  if (src.where === 'present' && PRECOPY_STATUSES.has(job())) {
    await source!.abortJob(domain).catch(() => undefined);
    did.push('aborted the pre-copy job');
  }
  const postcopy = isPostcopyStatus(job()) || (src.where === 'present' && src.reason === 'postcopy');
  const deadline = performance.now() + waitMs;
  do {
    await sleep(200);
    src = await state(source, domain);
  } while (src.where === 'present' && job() !== 'none' && performance.now() < deadline);
  const dst = await state(destination, domain);
  const verdict: { verdict: DestinationVerdict; detail: string } =
    dst.where === 'absent'
      ? { verdict: 'gone', detail: 'no such domain on the destination' }
      : dst.where === 'unreachable'
        ? { verdict: 'unknown', detail: 'the destination daemon does not answer' }
        : dst.reason === 'postcopy-failed' || dst.reason === 'postcopy' || dst.reason === 'migration'
          ? { verdict: 'unknown', detail: `the destination domain is ${dst.state}/${dst.reason}` }
          : { verdict: 'completed', detail: `the destination domain is ${dst.state}` };
  // A domain that left the source is gone from it (transient) or shut off there (persistent).
  const left = src.where === 'absent' || (src.where === 'present' && src.state === 'shutoff');
  const sourceRunState = left ? 'postmigrate' : src.where === 'present' ? src.state : undefined;
  const ending = resolveEnding({
    sourceStatus: left ? 'completed' : src.where === 'present' ? 'cancelled' : 'unknown',
    sourceRunState,
    postcopy,
    destination: verdict,
    sourceWasRunning: true,
  });
  if (ending.resume === 'source') await source!.resume(domain);
  if (ending.resume === 'destination' && dst.where === 'present' && dst.state === 'paused')
    await destination!.resume(domain);
  did.push(ending.resume === 'none' ? `started nothing (${ending.reason})` : `resumed the ${ending.resume}`);
  return { found, did: did.join('; '), running: ending.guestRunsOn };
}

function describe(s: Awaited<ReturnType<typeof state>>): string {
  if (s.where !== 'present') return s.where === 'absent' ? 'no such domain' : 'unreachable';
  return `${s.state}/${s.reason}, job ${s.job}`;
}
