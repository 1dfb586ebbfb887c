// One client connection from accept to close: negotiation, then transmission,
// then an orderly close. Errors here end this connection only.

import type { Socket } from 'node:net';
import type { ExportProvider } from '../block.js';
import { ByteReader, EndOfStream } from './byte-reader.js';
import { negotiate } from './handshake.js';
import { Transmission } from './transmission.js';

/** How long a closing socket may take to flush its replies before it is destroyed. */
const CLOSE_GRACE_MS = 5000;

const QUIET_CODES = new Set(['EPIPE', 'ECONNRESET']);

export class Connection {
  private readonly reader: ByteReader;
  private transmission: Transmission | undefined;
  /** The client said goodbye (ABORT or DISC): a reset after that is expected, not news. */
  private farewell = false;
  private stopped = false;

  constructor(
    readonly id: number,
    private readonly socket: Socket,
    private readonly provider: ExportProvider,
    private readonly maxOptions: number,
    private readonly logger: (msg: string) => void,
  ) {
    this.reader = new ByteReader(socket);
    socket.on('error', (err: NodeJS.ErrnoException) => {
      if (QUIET_CODES.has(err.code ?? '') && (this.farewell || this.stopped)) return;
      this.log(`socket error: ${err.code ?? err.message}`);
    });
  }

  private log(msg: string): void {
    this.logger(`nbd connection ${this.id}: ${msg}`);
  }

  /** Stop reading; requests already read are answered before the socket closes (see run()). */
  stop(): void {
    this.stopped = true;
    this.reader.cancel();
    this.transmission?.stop();
  }

  /** Serve the connection; resolves once the socket is closed. Never rejects. */
  async run(): Promise<void> {
    let graceful = true;
    try {
      const neg = await negotiate(this.socket, this.reader, this.provider, { maxOptions: this.maxOptions, log: (m) => this.log(m) });
      if ('ended' in neg) {
        if (neg.ended === 'abort') this.farewell = true;
        else this.log(`negotiation ended: ${neg.reason}`);
        return;
      }
      this.log(`export ${JSON.stringify(neg.name)} (${neg.device.readOnly ? 'read-only' : 'read-write'}, ${neg.device.size} bytes, structured replies ${neg.structuredReplies ? 'on' : 'off'})`);
      if (this.stopped) return;
      this.transmission = new Transmission(this.socket, this.reader, neg, (m) => this.log(m));
      const end = await this.transmission.run();
      if (end === 'disc') this.farewell = true;
      if (end === 'protocol-error') graceful = false;
    } catch (err) {
      if (!(err instanceof EndOfStream)) {
        graceful = false;
        this.log(`internal error: ${(err as Error)?.stack ?? String(err)}`);
      } else if (err.partial > 0 && !this.stopped) {
        this.log(`client closed the connection during negotiation (${err.partial} bytes of a message received)`);
      }
    } finally {
      await this.close(graceful);
    }
  }

  private async close(graceful: boolean): Promise<void> {
    const s = this.socket;
    if (s.destroyed) return;
    const closed = new Promise<void>((resolve) => s.once('close', () => resolve()));
    if (graceful) {
      // end() sends what is queued, then FIN; a client that never reads gets destroyed after the grace.
      s.end();
      const timer = setTimeout(() => s.destroy(), CLOSE_GRACE_MS);
      timer.unref();
      await closed;
      clearTimeout(timer);
    } else {
      s.destroy();
      await closed;
    }
  }
}
