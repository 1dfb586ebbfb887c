// One client connection from accept to close: negotiation, then transmission,
// then an orderly close. Errors here end this connection only. A watchdog
// drops a client that stops making progress (limits.ts): while negotiating, one
// that neither sends nor reads for the stall timeout; afterwards, one that
// leaves its replies untaken that long.

import type { Socket } from 'node:net';
import type { ExportProvider } from '../block.js';
import { ByteReader, EndOfStream } from './byte-reader.js';
import { negotiate } from './handshake.js';
import { Transmission } from './transmission.js';
import type { SharedBudget } from './budget.js';
import type { NbdLimits } from './limits.js';

/** How long a closing socket may take to flush its replies before it is destroyed. */
const CLOSE_GRACE_MS = 5000;

const QUIET_CODES = new Set(['EPIPE', 'ECONNRESET']);

export class Connection {
  private readonly reader: ByteReader;
  private transmission: Transmission | undefined;
  /** The client said goodbye (ABORT or DISC): a reset after that is expected, not news. */
  private farewell = false;
  private stopped = false;
  private negotiating = true;
  /** Last time the client sent bytes or took some of ours, while negotiating. */
  private lastHeard = Date.now();
  private lastUnsent = 0;
  private readonly watchdog: NodeJS.Timeout;

  constructor(
    readonly id: number,
    private readonly socket: Socket,
    private readonly provider: ExportProvider,
    private readonly maxOptions: number,
    private readonly limits: NbdLimits,
    private readonly shared: SharedBudget,
    private readonly logger: (msg: string) => void,
  ) {
    this.reader = new ByteReader(socket);
    socket.on('error', (err: NodeJS.ErrnoException) => {
      if (QUIET_CODES.has(err.code ?? '') && (this.farewell || this.stopped)) return;
      this.log(`socket error: ${err.code ?? err.message}`);
    });
    const heard = () => {
      if (this.negotiating) this.lastHeard = Date.now();
    };
    socket.on('data', heard);
    socket.on('drain', heard);
    // Checked a few times per timeout, so a stalled client goes within 1.25 timeouts.
    this.watchdog = setInterval(() => this.check(), Math.max(10, Math.floor(limits.stallTimeoutMs / 4)));
    this.watchdog.unref();
  }

  private check(): void {
    const now = Date.now();
    const limit = this.limits.stallTimeoutMs;
    if (this.stopped || this.socket.destroyed) return;
    if (this.negotiating) {
      const unsent = this.socket.writableLength;
      if (unsent < this.lastUnsent) this.lastHeard = now;
      this.lastUnsent = unsent;
      if (now - this.lastHeard >= limit) this.drop(`no progress in negotiation for ${now - this.lastHeard} ms`);
      return;
    }
    const t = this.transmission;
    const stalled = t ? t.stalledFor(now) : 0;
    if (t && stalled >= limit) this.drop(`the client took none of its replies for ${stalled} ms (${t.replyBacklog} bytes waiting)`);
  }

  /** Close at once; requests already running still finish (and their replies are discarded). */
  private drop(why: string): void {
    this.log(`${why}: dropping the connection`);
    this.stopped = true;
    this.reader.cancel();
    this.transmission?.stop();
    this.socket.destroy();
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
      this.negotiating = false;
      if ('ended' in neg) {
        if (neg.ended === 'abort') this.farewell = true;
        else this.log(`negotiation ended: ${neg.reason}`);
        return;
      }
      this.log(`export ${JSON.stringify(neg.name)} (${neg.device.readOnly ? 'read-only' : 'read-write'}, ${neg.device.size} bytes, structured replies ${neg.structuredReplies ? 'on' : 'off'})`);
      if (this.stopped) return;
      this.transmission = new Transmission(this.socket, this.reader, neg, this.limits, this.shared, (m) => this.log(m));
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
      this.negotiating = false;
      await this.close(graceful);
      clearInterval(this.watchdog);
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
