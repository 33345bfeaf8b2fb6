import { MigrationTap } from '../tap/index.js';
import { UsageError } from '../util/errors.js';

/** Where a relayed migration goes on: the `tcp:HOST:PORT` the source would otherwise send to. */
export function tapUpstream(uri: string): { upstreamHost: string; upstreamPort: number } {
  const m = /^tcp:(\[[^\]]+\]|[^:]+):(\d+)$/.exec(uri);
  if (!m) throw new UsageError(`--tap needs a tcp:HOST:PORT --uri, not '${uri}'`);
  return { upstreamHost: m[1]!.replace(/^\[|\]$/g, ''), upstreamPort: Number(m[2]) };
}

/** The tap: a relay on this host that reads the migration stream on its way (`at`: its listen address). */
export async function startTap(
  at: string | true,
  upstream: ReturnType<typeof tapUpstream>,
  ramBytes: number,
): Promise<MigrationTap> {
  const [listenHost, listenPort] = typeof at === 'string' ? at.split(':') : ['127.0.0.1', '0'];
  return MigrationTap.start({ ...upstream, listenHost, listenPort: Number(listenPort), ramBytes });
}
