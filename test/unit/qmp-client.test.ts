import { mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import {
  QmpClient,
  QmpConnectionError,
  QmpError,
  QmpTimeoutError,
  parseQmpTarget,
} from '../../src/qmp/index.js';
import { MAX_LINE_CHARS } from '../../src/qmp/client.js';

// A scripted fake QMP server: the protocol edges only. Behaviour tests use real QEMU.
type Handler = (msg: { execute: string; id?: string; arguments?: unknown }, sock: net.Socket) => void;

const GREETING =
  '{"QMP": {"version": {"qemu": {"major": 10, "minor": 0, "micro": 2}}, "capabilities": []}}\r\n';
const cleanups: (() => void)[] = [];
afterEach(() => {
  while (cleanups.length) cleanups.pop()!();
});

async function fakeServer(handler: Handler, greeting = GREETING): Promise<string> {
  const dir = mkdtempSync(path.join(tmpdir(), 'kvm-qmp-test-'));
  const sockPath = path.join(dir, 'qmp.sock');
  const conns: net.Socket[] = [];
  const server = net.createServer((sock) => {
    conns.push(sock);
    sock.setEncoding('utf8');
    if (greeting) sock.write(greeting);
    let buf = '';
    sock.on('data', (chunk: string) => {
      buf += chunk;
      let nl;
      while ((nl = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        const msg = JSON.parse(line);
        if (msg.execute === 'qmp_capabilities') sock.write(`{"return": {}, "id": "${msg.id}"}\r\n`);
        else handler(msg, sock);
      }
    });
    sock.on('error', () => {});
  });
  await new Promise<void>((r) => server.listen(sockPath, r));
  cleanups.push(() => {
    conns.forEach((c) => c.destroy());
    server.close();
    rmSync(dir, { recursive: true, force: true });
  });
  return sockPath;
}

describe('QmpClient against a scripted server', () => {
  it('matches concurrent replies by id, even out of order', async () => {
    const held: { id: string; n: number }[] = [];
    const sock = await fakeServer((msg, s) => {
      held.push({ id: msg.id!, n: (msg.arguments as { n: number }).n });
      if (held.length === 3)
        for (const h of held.reverse()) s.write(`{"return": ${h.n * 10}, "id": "${h.id}"}\r\n`);
    });
    const qmp = await QmpClient.connect(sock);
    cleanups.push(() => qmp.close());
    const replies = await Promise.all([1, 2, 3].map((n) => qmp.execute<number>('echo', { n })));
    expect(replies).toEqual([10, 20, 30]);
  });

  it('delivers events interleaved with replies and handles lines split across reads', async () => {
    const sock = await fakeServer((msg, s) => {
      const ev =
        '{"timestamp": {"seconds": 100, "microseconds": 5000}, "event": "MIGRATION_PASS", "data": {"pass": 2}}\r\n';
      const reply = `{"return": {"status": "active"}, "id": "${msg.id}"}\r\n`;
      const all = ev + reply;
      // Byte by byte in three writes, splitting inside both messages.
      s.write(all.slice(0, 17));
      setTimeout(() => s.write(all.slice(17, ev.length + 9)), 5);
      setTimeout(() => s.write(all.slice(ev.length + 9)), 10);
    });
    const qmp = await QmpClient.connect(sock);
    cleanups.push(() => qmp.close());
    const events: unknown[] = [];
    qmp.on('event', (e) => events.push(e));
    const reply = await qmp.execute('query-migrate');
    expect(reply).toEqual({ status: 'active' });
    expect(events).toHaveLength(1);
    expect(events[0]).toMatchObject({ event: 'MIGRATION_PASS', data: { pass: 2 }, qemuTimeMs: 100005 });
  });

  it('turns error replies into QmpError with class, desc and command', async () => {
    const sock = await fakeServer((msg, s) =>
      s.write(`{"error": {"class": "GenericError", "desc": "Migration is disabled"}, "id": "${msg.id}"}\r\n`),
    );
    const qmp = await QmpClient.connect(sock);
    cleanups.push(() => qmp.close());
    const err = await qmp.execute('migrate', { uri: 'tcp:x:1' }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(QmpError);
    expect(err).toMatchObject({
      errorClass: 'GenericError',
      desc: 'Migration is disabled',
      command: 'migrate',
    });
  });

  it('fails pending commands when the socket closes mid-command, and later ones too', async () => {
    const sock = await fakeServer((_msg, s) => s.destroy());
    const qmp = await QmpClient.connect(sock);
    const err = await qmp.execute('query-status').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(QmpConnectionError);
    await expect(qmp.execute('query-status')).rejects.toBeInstanceOf(QmpConnectionError);
  });

  it('garbage on the socket after the greeting fails the connection with a clear error', async () => {
    const sock = await fakeServer((_msg, s) => s.write('\u0000\u0001 {{{ not json at all\r\n'));
    const qmp = await QmpClient.connect(sock);
    const err = await qmp.execute('query-status').catch((e: Error) => e);
    expect(err).toBeInstanceOf(QmpConnectionError);
    expect((err as Error).message).toMatch(/sent something that is not JSON/);
    expect(qmp.isClosed).toBe(true);
  });

  it('times out a command that gets no reply, and keeps working afterwards', async () => {
    const sock = await fakeServer((msg, s) => {
      if (msg.execute === 'slow') return;
      s.write(`{"return": "ok", "id": "${msg.id}"}\r\n`);
    });
    const qmp = await QmpClient.connect(sock);
    cleanups.push(() => qmp.close());
    await expect(qmp.execute('slow', undefined, { timeoutMs: 50 })).rejects.toBeInstanceOf(QmpTimeoutError);
    await expect(qmp.execute('fast')).resolves.toBe('ok');
  });

  it('rejects a socket that is not QMP with a clear message', async () => {
    const sock = await fakeServer(() => {}, 'SSH-2.0-OpenSSH_9.2\r\n');
    const err = await QmpClient.connect(sock, { timeoutMs: 500 }).catch((e: Error) => e);
    expect(err).toBeInstanceOf(QmpConnectionError);
    expect((err as Error).message).toMatch(/not a QMP socket/);
  });

  it('rejects a silent socket within the timeout', async () => {
    const sock = await fakeServer(() => {}, '');
    const err = await QmpClient.connect(sock, { timeoutMs: 200 }).catch((e: Error) => e);
    expect((err as Error).message).toMatch(/did not send a QMP greeting/);
  });

  it('names a missing socket path plainly', async () => {
    const err = await QmpClient.connect('/nonexistent/dir/qmp.sock').catch((e: Error) => e);
    expect((err as Error).message).toBe(
      'cannot connect to QMP at /nonexistent/dir/qmp.sock: no such socket file',
    );
  });

  it('nextEvent resolves on a matching event', async () => {
    const sock = await fakeServer((msg, s) => {
      s.write(`{"return": {}, "id": "${msg.id}"}\r\n`);
      s.write('{"timestamp": {"seconds": 1, "microseconds": 0}, "event": "STOP", "data": {}}\r\n');
      s.write(
        '{"timestamp": {"seconds": 1, "microseconds": 0}, "event": "MIGRATION", "data": {"status": "completed"}}\r\n',
      );
    });
    const qmp = await QmpClient.connect(sock);
    cleanups.push(() => qmp.close());
    const wait = qmp.nextEvent((e) => e.event === 'MIGRATION' && e.data.status === 'completed', 1000);
    await qmp.execute('stop');
    await expect(wait).resolves.toMatchObject({ event: 'MIGRATION' });
  });
});

describe('QmpClient bounds', () => {
  it('drops a peer whose line never ends (over MAX_LINE_CHARS)', async () => {
    const sock = await fakeServer((_msg, s) => {
      s.write('{"return": "' + 'x'.repeat(MAX_LINE_CHARS + 10));
    });
    const qmp = await QmpClient.connect(sock);
    await expect(qmp.execute('query-status')).rejects.toThrow(/over \d+ characters/);
    expect(qmp.isClosed).toBe(true);
  });
});

describe('parseQmpTarget', () => {
  it('parses the forms users type', () => {
    expect(parseQmpTarget('/run/vm.qmp')).toEqual({ kind: 'unix', path: '/run/vm.qmp' });
    expect(parseQmpTarget('unix:./x')).toEqual({ kind: 'unix', path: './x' });
    expect(parseQmpTarget('127.0.0.1:4444')).toEqual({ kind: 'tcp', host: '127.0.0.1', port: 4444 });
    expect(parseQmpTarget('tcp:[::1]:4444')).toEqual({ kind: 'tcp', host: '::1', port: 4444 });
    expect(() => parseQmpTarget('nonsense')).toThrow(/neither a socket path nor HOST:PORT/);
    expect(() => parseQmpTarget('h:70000')).toThrow(/port must be/);
  });
});
