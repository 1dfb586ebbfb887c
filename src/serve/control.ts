// The control socket of `vsnap serve`: while a server holds a volume, the
// catalogue commands (create, list, show, delete, prune, status) run inside
// it, so a snapshot cuts the NBD writes in flight at one instant. One JSON
// request per connection, one JSON reply, over a Unix socket of mode 0600.
import net from 'node:net';
import fs from 'node:fs';
import { OperationError, deserializeError, serializeError, type SerializedError } from '../errors.js';
import type { KeepRules } from '../prune/plan.js';

export type ControlCall =
  | { cmd: 'create'; name?: string; expiresInMs?: number }
  | { cmd: 'list' }
  | { cmd: 'show'; ref: string }
  | { cmd: 'delete'; refs: string[] }
  | { cmd: 'prune'; rules: KeepRules; dryRun: boolean }
  | { cmd: 'status' };

type Reply = { ok: true; value: unknown } | { ok: false; error: SerializedError };

const MAX_REQUEST = 1 << 20;

export async function startControlServer(socketPath: string, handle: (call: ControlCall) => Promise<unknown>): Promise<net.Server> {
  fs.rmSync(socketPath, { force: true });
  const server = net.createServer((conn) => {
    let buf = '';
    conn.setEncoding('utf8');
    conn.on('error', () => {});
    conn.on('data', (d: string) => {
      buf += d;
      if (buf.length > MAX_REQUEST) return conn.destroy();
      const nl = buf.indexOf('\n');
      if (nl < 0) return;
      const line = buf.slice(0, nl);
      buf = '';
      let call: ControlCall;
      try {
        call = JSON.parse(line) as ControlCall;
      } catch {
        conn.end(`${JSON.stringify({ ok: false, error: { kind: 'usage', message: 'control socket: malformed request' } })}\n`);
        return;
      }
      handle(call).then(
        (value) => conn.end(`${JSON.stringify({ ok: true, value } satisfies Reply)}\n`),
        (err) => conn.end(`${JSON.stringify({ ok: false, error: serializeError(err) } satisfies Reply)}\n`),
      );
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    // umask-proof: create, then tighten before anyone could care.
    server.listen(socketPath, () => {
      fs.chmodSync(socketPath, 0o600);
      resolve();
    });
  });
  return server;
}

export function callServer(socketPath: string, call: ControlCall): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const conn = net.createConnection(socketPath);
    let buf = '';
    conn.setEncoding('utf8');
    conn.on('connect', () => conn.write(`${JSON.stringify(call)}\n`));
    conn.on('data', (d: string) => (buf += d));
    conn.on('error', (err) => reject(new OperationError(`cannot reach the server's control socket ${socketPath}: ${err.message}`)));
    conn.on('end', () => {
      let reply: Reply;
      try {
        reply = JSON.parse(buf) as Reply;
      } catch {
        reject(new OperationError(`the server closed its control socket ${socketPath} without an answer`));
        return;
      }
      if (reply.ok) resolve(reply.value);
      else reject(deserializeError(reply.error));
    });
  });
}
