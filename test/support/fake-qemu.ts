import { mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';

/**
 * A scripted QMP peer that plays one QEMU (source or destination) for the safety tests: it keeps
 * a small migration state, answers the commands the controller sends, records them, and can
 * misbehave on cue — stay silent, drop the connection, send garbage, or vanish.
 * Behaviour tests of real migrations use real QEMU; this is for what real QEMU will not do on demand.
 */
export interface FakeQemuState {
  runState: string;
  migration: Record<string, unknown>;
  ramBytes: number;
  parameters: Record<string, number>;
  capabilities: Record<string, boolean>;
}

export type Reply =
  | { return: unknown }
  | { error: { class: string; desc: string } }
  /** Answer nothing (a busy or hung QEMU). */
  | 'silent'
  /** Close the connection instead of answering. */
  | 'drop'
  /** Send a line that is not JSON. */
  | 'garbage';

/** Overrides one command's reply; return undefined for the default behaviour. */
export type Script = (command: string, args: Record<string, unknown>, q: FakeQemu) => Reply | undefined;

const GREETING =
  '{"QMP": {"version": {"qemu": {"major": 10, "minor": 0, "micro": 2}}, "capabilities": []}}\r\n';

export class FakeQemu {
  readonly socketPath: string;
  readonly received: { command: string; args: Record<string, unknown> }[] = [];
  readonly state: FakeQemuState;
  private readonly dir: string;
  private readonly conns = new Set<net.Socket>();
  private server: net.Server | undefined;
  script: Script | undefined;

  private constructor(state: Partial<FakeQemuState>) {
    this.dir = mkdtempSync(path.join(tmpdir(), 'kvm-fake-qemu-'));
    this.socketPath = path.join(this.dir, 'qmp.sock');
    this.state = {
      runState: 'running',
      migration: {},
      ramBytes: 512 * 2 ** 20,
      parameters: { 'downtime-limit': 300, 'max-bandwidth': 134217728, 'max-postcopy-bandwidth': 0 },
      capabilities: { events: false, 'postcopy-ram': false, 'auto-converge': false, xbzrle: false },
      ...state,
    };
  }

  static async start(state: Partial<FakeQemuState> = {}, script?: Script): Promise<FakeQemu> {
    const q = new FakeQemu(state);
    q.script = script;
    await q.listen();
    return q;
  }

  /** Commands received, by name. */
  commands(): string[] {
    return this.received.map((r) => r.command);
  }

  /** Sends an event to every connected client. */
  emit(event: string, data: Record<string, unknown> = {}): void {
    const now = Date.now();
    const line = JSON.stringify({
      event,
      data,
      timestamp: { seconds: Math.floor(now / 1000), microseconds: (now % 1000) * 1000 },
    });
    for (const c of this.conns) c.write(line + '\r\n');
  }

  /** Drops every client connection; the monitor keeps listening (QEMU lives on). */
  dropClients(): void {
    for (const c of this.conns) c.destroy();
    this.conns.clear();
  }

  /** The process is gone: nothing listens on the monitor any more. */
  vanish(): void {
    this.dropClients();
    this.server?.close();
    this.server = undefined;
  }

  close(): void {
    this.vanish();
    rmSync(this.dir, { recursive: true, force: true });
  }

  private listen(): Promise<void> {
    const server = net.createServer((sock) => this.serve(sock));
    this.server = server;
    return new Promise((resolve) => server.listen(this.socketPath, resolve));
  }

  private serve(sock: net.Socket): void {
    this.conns.add(sock);
    sock.setEncoding('utf8');
    sock.on('error', () => undefined);
    sock.on('close', () => this.conns.delete(sock));
    sock.write(GREETING);
    let buf = '';
    sock.on('data', (chunk: string) => {
      buf += chunk;
      let nl;
      while ((nl = buf.indexOf('\n')) >= 0) {
        const msg = JSON.parse(buf.slice(0, nl)) as {
          execute: string;
          id?: string;
          arguments?: Record<string, unknown>;
        };
        buf = buf.slice(nl + 1);
        this.answer(sock, msg);
      }
    });
  }

  private answer(
    sock: net.Socket,
    msg: { execute: string; id?: string; arguments?: Record<string, unknown> },
  ): void {
    const args = msg.arguments ?? {};
    if (msg.execute !== 'qmp_capabilities') this.received.push({ command: msg.execute, args });
    const reply = this.script?.(msg.execute, args, this) ?? this.standard(msg.execute, args);
    if (reply === 'silent') return;
    if (reply === 'drop') {
      sock.destroy();
      return;
    }
    if (reply === 'garbage') {
      sock.write('this is not JSON\r\n');
      return;
    }
    sock.write(JSON.stringify({ ...reply, id: msg.id }) + '\r\n');
  }

  /** What QEMU would say, for the commands the controller uses. */
  private standard(command: string, args: Record<string, unknown>): Reply {
    const s = this.state;
    const ok = { return: {} };
    switch (command) {
      case 'qmp_capabilities':
        return ok;
      case 'query-status':
        return { return: { status: s.runState, running: s.runState === 'running' } };
      case 'query-migrate':
        return { return: s.migration };
      case 'query-memory-size-summary':
        return { return: { 'base-memory': s.ramBytes } };
      case 'query-migrate-capabilities':
        return {
          return: Object.entries(s.capabilities).map(([capability, state]) => ({ capability, state })),
        };
      case 'query-migrate-parameters':
        return { return: s.parameters };
      case 'migrate-set-capabilities':
        for (const c of args.capabilities as { capability: string; state: boolean }[])
          s.capabilities[c.capability] = c.state;
        return ok;
      case 'migrate-set-parameters':
        Object.assign(s.parameters, args);
        return ok;
      case 'migrate':
        s.migration = { status: 'active' };
        return ok;
      case 'migrate-incoming':
        return ok;
      case 'migrate_cancel':
        if (String(s.migration.status ?? '').startsWith('postcopy'))
          return { error: { class: 'GenericError', desc: 'Postcopy is running, cannot cancel' } };
        s.migration = { ...s.migration, status: 'cancelled' };
        if (s.runState !== 'running') s.runState = 'running';
        return ok;
      case 'migrate-start-postcopy':
        return ok;
      case 'cont':
        s.runState = 'running';
        return ok;
      case 'stop':
        s.runState = 'paused';
        return ok;
      case 'calc-dirty-rate':
        return ok;
      case 'query-dirty-rate':
        return { return: { status: 'measuring' } };
      default:
        return { error: { class: 'CommandNotFound', desc: `The command ${command} has not been found` } };
    }
  }
}

/** A `query-migrate` reply with RAM counters. */
export function migrating(
  status: string,
  ram: Partial<{ transferred: number; remaining: number; syncs: number }> = {},
): Record<string, unknown> {
  return {
    status,
    'total-time': 1000,
    ram: {
      transferred: ram.transferred ?? 1e8,
      remaining: ram.remaining ?? 1e8,
      total: 512 * 2 ** 20,
      duplicate: 0,
      normal: (ram.transferred ?? 1e8) / 4096,
      'dirty-sync-count': ram.syncs ?? 1,
      mbps: 1000,
    },
  };
}
