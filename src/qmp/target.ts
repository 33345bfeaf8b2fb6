import { QmpConnectionError } from './errors.js';

export type QmpTarget = { kind: 'unix'; path: string } | { kind: 'tcp'; host: string; port: number };

/**
 * Parses how users name a QMP endpoint: `unix:PATH`, a path (contains `/`), `tcp:HOST:PORT` or `HOST:PORT`.
 */
export function parseQmpTarget(spec: string): QmpTarget {
  const s = spec.trim();
  if (s.startsWith('unix:')) return { kind: 'unix', path: s.slice('unix:'.length) };
  const tcp = s.startsWith('tcp:') ? s.slice('tcp:'.length) : s;
  const m = /^(\[[^\]]+\]|[^:/]+):(\d{1,5})$/.exec(tcp);
  if (m && !s.includes('/')) {
    const port = Number(m[2]);
    if (port < 1 || port > 65535) throw new QmpConnectionError(`QMP address ${spec}: port must be 1-65535`);
    return { kind: 'tcp', host: m[1]!.replace(/^\[|\]$/g, ''), port };
  }
  if (s.includes('/') || s.endsWith('.sock')) return { kind: 'unix', path: s };
  throw new QmpConnectionError(
    `QMP address '${spec}' is neither a socket path nor HOST:PORT (e.g. /run/vm.qmp or 127.0.0.1:4444)`,
  );
}

export function describeTarget(t: QmpTarget): string {
  return t.kind === 'unix' ? t.path : `${t.host}:${t.port}`;
}
