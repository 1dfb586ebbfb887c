// Where `vsnap serve` listens, decided purely from the flags (tested alone).
import net from 'node:net';
import path from 'node:path';
import os from 'node:os';
import { createHash } from 'node:crypto';
import { UsageError } from '../errors.js';
import { controlSocketInStore, defaultNbdSocket } from '../store/layout.js';

export type ListenPlan = { kind: 'unix'; socketPath: string; uri: string } | { kind: 'tcp'; host: string; port: number; uri: string };

// sun_path holds 108 bytes on Linux, including the terminating NUL.
const MAX_SUN_PATH = 107;

export function isLoopback(host: string): boolean {
  if (host === 'localhost') return true;
  if (net.isIPv4(host)) return host.startsWith('127.');
  if (net.isIPv6(host)) return host === '::1' || host === '0:0:0:0:0:0:0:1';
  return false;
}

export function planListen(o: { socket?: string; listen?: string; allowRemote?: boolean }, storeDir: string): ListenPlan {
  if (o.socket && o.listen) throw new UsageError('--socket and --listen: give one or the other');
  if (o.listen !== undefined) {
    const m = /^(?:\[([^\]]+)\]|([^:]+)):(\d{1,5})$/.exec(o.listen);
    if (!m || Number(m[3]) > 65535) throw new UsageError(`--listen: must be HOST:PORT, e.g. 127.0.0.1:10809 or [::1]:10809 (got ${JSON.stringify(o.listen)})`);
    const host = m[1] ?? m[2];
    if (!isLoopback(host) && !o.allowRemote) {
      throw new UsageError(`--listen: ${host} is not a loopback address; NBD has no authentication here, so pass --allow-remote to listen on it anyway`);
    }
    const port = Number(m[3]);
    const uriHost = net.isIPv6(host) ? `[${host}]` : host;
    return { kind: 'tcp', host, port, uri: `nbd://${uriHost}:${port}/` };
  }
  const socketPath = path.resolve(o.socket ?? defaultNbdSocket(storeDir));
  if (Buffer.byteLength(socketPath) > MAX_SUN_PATH) {
    throw new UsageError(`--socket: ${socketPath} is longer than a Unix socket path may be (${MAX_SUN_PATH} bytes); give a shorter --socket`);
  }
  return { kind: 'unix', socketPath, uri: `nbd+unix:///?socket=${socketPath}` };
}

/** The control socket: in the store when the path fits, else a per-store name in the temp directory. */
export function controlSocketPath(storeDir: string): string {
  const p = controlSocketInStore(storeDir);
  if (Buffer.byteLength(p) <= MAX_SUN_PATH) return p;
  return path.join(os.tmpdir(), `vsnap-${createHash('sha256').update(storeDir).digest('hex').slice(0, 16)}.sock`);
}

/** The NBD URI of one export of a served volume (the export name goes in the URI's path). */
export function exportUri(plan: ListenPlan, exportName: string): string {
  const name = encodeURI(exportName);
  if (plan.kind === 'tcp') return `${plan.uri}${name}`;
  return `nbd+unix:///${name}?socket=${plan.socketPath}`;
}
