// The listening side: a Unix or TCP socket, a Connection per client, and an
// orderly close. Which exports exist is entirely the provider's business.

import fs from 'node:fs';
import net from 'node:net';
import { OperationError, UsageError } from '../errors.js';
import type { ExportProvider } from '../block.js';
import { Connection } from './connection.js';
import { SharedBudget } from './budget.js';
import { resolveLimits, type NbdLimits } from './limits.js';

export interface NbdServerOptions {
  /** Where connection events and failed requests are reported (default: nowhere). */
  log?: (msg: string) => void;
  /**
   * Options a client may send before choosing an export. Default: 1024, or more
   * when there are many exports, since `nbdinfo --list` sends one INFO per export.
   */
  maxOptions?: number;
  /** Connection, memory and stall limits; each one left out takes its default (limits.ts). */
  limits?: Partial<NbdLimits>;
}

export type ListenAddress = { socketPath: string } | { host: string; port: number };

export interface NbdServer {
  /** Start accepting; resolves the address (socket path, or host:port with the real port). */
  listen(where: ListenAddress): Promise<string>;
  /** Stop accepting, answer every request already read, close all connections, remove the Unix socket file. */
  close(): Promise<void>;
  /** Open client connections, negotiating or transmitting. */
  readonly connections: number;
  /** Request and reply bytes held for clients now (counted against limits.totalBytes). */
  readonly bytesHeld: number;
}

export function createNbdServer(provider: ExportProvider, opts: NbdServerOptions = {}): NbdServer {
  return new Server(provider, opts);
}

class Server implements NbdServer {
  private server: net.Server | undefined;
  /** Each open connection with the promise that settles when it has closed. */
  private readonly open = new Map<Connection, Promise<void>>();
  private nextId = 1;
  private closing: Promise<void> | undefined;
  /** The socket file we created, identified by inode so close() never removes a successor's. */
  private socketFile: { path: string; ino: number } | undefined;
  private readonly log: (msg: string) => void;
  private readonly limits: NbdLimits;
  /** Request and reply bytes held for all connections. */
  private readonly budget: SharedBudget;
  /** The last time a connection was refused for the count, so a flood logs once a second. */
  private lastRefusal = 0;

  constructor(
    private readonly provider: ExportProvider,
    private readonly opts: NbdServerOptions,
  ) {
    this.log = opts.log ?? (() => {});
    this.limits = resolveLimits(opts.limits);
    this.budget = new SharedBudget(this.limits.totalBytes);
  }

  get connections(): number {
    return this.open.size;
  }

  get bytesHeld(): number {
    return this.budget.used;
  }

  async listen(where: ListenAddress): Promise<string> {
    if (this.server || this.closing) throw new Error('NBD server: listen() called twice');
    const server = net.createServer((socket) => this.accept(socket));
    this.server = server;
    try {
      if ('socketPath' in where) {
        await removeStaleSocket(where.socketPath);
        await listenOn(server, { path: where.socketPath });
        // The socket exists with umask permissions for the moment between bind and chmod; the
        // store directory's own permissions are what keep others out in that window.
        fs.chmodSync(where.socketPath, 0o600);
        this.socketFile = { path: where.socketPath, ino: fs.statSync(where.socketPath).ino };
        this.log(`nbd: listening on ${where.socketPath}`);
        return where.socketPath;
      }
      await listenOn(server, { host: where.host, port: where.port });
      const a = server.address() as net.AddressInfo;
      const addr = a.family === 'IPv6' ? `[${a.address}]:${a.port}` : `${a.address}:${a.port}`;
      this.log(`nbd: listening on ${addr}`);
      return addr;
    } catch (err) {
      this.server = undefined;
      server.close();
      throw err;
    }
  }

  private accept(socket: net.Socket): void {
    if (this.closing) {
      socket.destroy();
      return;
    }
    if (this.open.size >= this.limits.maxConnections) {
      // NBD has no way to refuse before negotiation: closing is the answer.
      const now = Date.now();
      if (now - this.lastRefusal >= 1000) this.log(`nbd: ${this.open.size} connections open, the limit: refusing a new one`);
      this.lastRefusal = now;
      socket.destroy();
      return;
    }
    socket.setNoDelay(true);
    const maxOptions = this.opts.maxOptions ?? Math.max(1024, 2 * this.provider.list().length + 64);
    const conn = new Connection(this.nextId++, socket, this.provider, maxOptions, this.limits, this.budget, this.log);
    const done = conn.run().finally(() => this.open.delete(conn));
    this.open.set(conn, done);
  }

  close(): Promise<void> {
    this.closing ??= this.shutdown();
    return this.closing;
  }

  private async shutdown(): Promise<void> {
    const server = this.server;
    if (!server) return;
    const stopped = new Promise<void>((resolve) => server.close(() => resolve()));
    const running = [...this.open];
    for (const [conn] of running) conn.stop();
    await Promise.all(running.map(([, done]) => done));
    await stopped;
    if (this.socketFile) {
      const { path, ino } = this.socketFile;
      try {
        if (fs.lstatSync(path).ino === ino) fs.unlinkSync(path);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
      }
    }
    this.log('nbd: closed');
  }
}

function listenOn(server: net.Server, opts: net.ListenOptions): Promise<void> {
  return new Promise((resolve, reject) => {
    const onError = (err: Error) => reject(err);
    server.once('error', onError);
    server.listen(opts, () => {
      server.off('error', onError);
      resolve();
    });
  });
}

/** Remove a socket file left by a server that died, but never a live server's socket or a non-socket. */
async function removeStaleSocket(path: string): Promise<void> {
  let st: fs.Stats;
  try {
    st = fs.lstatSync(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw err;
  }
  if (!st.isSocket()) throw new UsageError(`--socket: ${path} exists and is not a socket (refusing to replace it)`);
  const live = await new Promise<boolean>((resolve) => {
    const probe = net.connect({ path });
    probe.once('connect', () => {
      probe.destroy();
      resolve(true);
    });
    probe.once('error', () => resolve(false));
  });
  if (live) throw new OperationError(`${path} is in use by a running server`);
  fs.unlinkSync(path);
}
