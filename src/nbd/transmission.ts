// The transmission phase of one connection: read requests in order, run them
// concurrently against the device, answer each as soon as it completes (so
// replies go out of order, each with its cookie). Reading stops while too many
// requests are in flight, while this connection or the whole server holds too
// many request bytes, or while the client has not taken enough of its replies
// (limits.ts): that bounds memory against a client that writes faster than the
// device or never reads its replies. A request's payload is read only once its
// bytes are reserved, so a dropped connection never leaves a write half done:
// each WRITE either reached the device whole or never started.

import type { Socket } from 'node:net';
import { BlockError, type BlockDevice, type BlockExtent } from '../block.js';
import { EndOfStream, type ByteReader } from './byte-reader.js';
import { CMD, CMD_FLAG, ERRNO, MAX_PAYLOAD_ACCEPTED, MAX_PAYLOAD_ADVERTISED, STATE_HOLE, STATE_ZERO } from './constants.js';
import type { Negotiated } from './handshake.js';
import type { SelectedContext } from './meta-contexts.js';
import { blockStatusChunk, errorChunk, noneChunk, readChunkPieces, readReplyParts, simpleReadPieces, simpleReply } from './replies.js';
import { REQUEST_HEADER_LENGTH, checkRequest, commandName, parseRequest, type ExportState, type Request } from './requests.js';
import { ConnectionLedger, type SharedBudget, type Waiting } from './budget.js';
import type { NbdLimits } from './limits.js';
import { ReplyWriter } from './reply-writer.js';

/** A BLOCK_STATUS reply larger than this many extents is cut short, as the spec allows. */
const MAX_EXTENTS = 65536;

/** How the transmission phase ended. */
export type TransmissionEnd = 'disc' | 'eof' | 'stopped' | 'protocol-error';

export class Transmission {
  private inFlight = 0;
  private readonly pending = new Set<Promise<void>>();
  private wake: (() => void) | undefined;
  private stopping = false;
  /** A wait for shared bytes, cancelled by stop(). */
  private waiting: Waiting | undefined;
  private readonly state: ExportState;
  private readonly device: BlockDevice;
  private readonly ledger: ConnectionLedger;
  private readonly out: ReplyWriter;
  private readonly contexts: readonly SelectedContext[];
  /** READ data sent, logged when the connection ends: what a backup really read (scripts/vsnap-backup.py). */
  private readsServed = 0;
  private bytesServed = 0;

  constructor(
    private readonly socket: Socket,
    private readonly reader: ByteReader,
    neg: Negotiated,
    private readonly limits: NbdLimits,
    private readonly shared: SharedBudget,
    private readonly log: (msg: string) => void,
  ) {
    this.device = neg.device;
    this.state = {
      size: neg.device.size,
      flags: neg.flags,
      structuredReplies: neg.structuredReplies,
      metaContext: neg.contexts.length > 0,
    };
    this.contexts = neg.contexts;
    this.ledger = new ConnectionLedger(shared, limits.requestBytesPerConnection);
    // Every reply byte taken may let this connection read again.
    this.out = new ReplyWriter(socket, this.ledger, () => this.notify());
    socket.on('drain', () => this.notify());
    socket.on('close', () => {
      this.ledger.close();
      this.notify();
    });
  }

  /** Stop reading requests; those already read are still answered. */
  stop(): void {
    this.stopping = true;
    this.reader.cancel();
    this.waiting?.cancel();
    this.notify();
  }

  /** Milliseconds the client has left replies waiting without taking any (0 when none wait). */
  stalledFor(now: number): number {
    return this.out.stalledFor(now);
  }

  /** Bytes of replies the client has not taken yet. */
  get replyBacklog(): number {
    return this.out.backlog;
  }

  /** Serve until DISC, end of stream, stop() or a framing error; resolves after every request read has been answered. */
  async run(): Promise<TransmissionEnd> {
    let end: TransmissionEnd;
    try {
      end = await this.loop();
    } finally {
      this.waiting?.cancel();
      await Promise.all(this.pending);
      // The connection is closed right after this: every queued reply goes to the socket before its end().
      this.out.flush();
      // A dropped socket's 'close' may not have come yet; what it held is given back now.
      if (this.socket.destroyed) this.ledger.close();
      this.log(`served ${this.readsServed} READ requests, ${this.bytesServed} bytes`);
    }
    return end;
  }

  private async loop(): Promise<TransmissionEnd> {
    for (;;) {
      // The checks and reads below answer at once when they can (no promise
      // per request); they wait only when the client or the budget is behind.
      if (!this.admitted()) await this.admit();
      if (this.stopping || this.socket.destroyed) return 'stopped';
      let req: Request | undefined;
      try {
        req = parseRequest(this.reader.readNow(REQUEST_HEADER_LENGTH) ?? (await this.reader.read(REQUEST_HEADER_LENGTH)));
      } catch (err) {
        return this.ended(err, 'request header');
      }
      if (!req) {
        this.log('bad request magic: disconnecting');
        return 'protocol-error';
      }
      if (req.type === CMD.DISC) return 'disc';

      const verdict = checkRequest(req, this.state);
      const cost = verdict.ok ? this.costOf(req) : 0;
      if (cost > 0 && !this.reserveNow(cost) && !(await this.reserve(cost))) return 'stopped';
      let payload: Buffer[] | undefined;
      if (req.type === CMD.WRITE) {
        if (!verdict.ok && req.length > MAX_PAYLOAD_ACCEPTED) {
          // Skipping gigabytes to keep framing is not worth it; say why, then leave.
          this.log(`${verdict.message}: disconnecting`);
          this.reply(req, ERRNO[verdict.errno], verdict.message);
          return 'protocol-error';
        }
        try {
          // A rejected WRITE still carries its payload; consuming it keeps the framing.
          // Kept as the socket's chunks: the worker link and the file take them as they are.
          if (verdict.ok) payload = this.reader.readChunksNow(req.length) ?? (await this.reader.readChunks(req.length));
          else await this.reader.skip(req.length);
        } catch (err) {
          if (cost > 0) this.ledger.done(cost);
          return this.ended(err, 'WRITE payload');
        }
      }
      if (!verdict.ok) {
        this.log(`${commandName(req.type)} rejected (${verdict.errno}): ${verdict.message}`);
        this.reply(req, ERRNO[verdict.errno], verdict.message);
        continue;
      }
      this.dispatch(req, verdict.offset, payload, cost);
    }
  }

  private ended(err: unknown, what: string): TransmissionEnd {
    if (!(err instanceof EndOfStream)) throw err;
    if (this.stopping) return 'stopped';
    if (err.partial > 0) this.log(`client closed the connection inside a ${what} (${err.partial} bytes of it received)`);
    return 'eof';
  }

  /** Bytes a request may make the server hold: its data, or the largest block-status reply. */
  private costOf(req: Request): number {
    if (req.type === CMD.READ || req.type === CMD.WRITE) return req.length;
    if (req.type === CMD.BLOCK_STATUS) return this.contexts.length * (24 + 8 * ((req.flags & CMD_FLAG.REQ_ONE) !== 0 ? 1 : MAX_EXTENTS));
    return 0;
  }

  /** Another request may be read now: few enough in flight, and the client taking its replies. */
  private admitted(): boolean {
    return this.inFlight < this.limits.maxRequestsPerConnection && this.out.backlog < this.limits.replyBytesPerConnection;
  }

  /** Wait until another request may be read (or the connection is stopping). */
  private async admit(): Promise<void> {
    for (;;) {
      if (this.stopping || this.socket.destroyed) return;
      if (this.admitted()) return;
      await this.sleep();
    }
  }

  /** Reserve a request's bytes if both this connection's share and the server's have room now. */
  private reserveNow(n: number): boolean {
    if (this.stopping || this.socket.destroyed || !this.ledger.fits(n) || !this.shared.tryTake(n)) return false;
    this.ledger.reserved(n);
    return true;
  }

  /** Reserve a request's bytes, from this connection's share and then the server's; false if stopped meanwhile. */
  private async reserve(n: number): Promise<boolean> {
    while (!this.ledger.fits(n)) {
      if (this.stopping || this.socket.destroyed) return false;
      await this.sleep();
    }
    if (!this.shared.tryTake(n)) {
      if (this.stopping || this.socket.destroyed) return false;
      this.waiting = this.shared.wait(n);
      const taken = await this.waiting.taken;
      this.waiting = undefined;
      if (!taken) return false;
    }
    this.ledger.reserved(n);
    return true;
  }

  private sleep(): Promise<void> {
    return new Promise<void>((resolve) => (this.wake = resolve));
  }

  private notify(): void {
    const w = this.wake;
    this.wake = undefined;
    w?.();
  }

  private dispatch(req: Request, offset: number, payload: Buffer[] | undefined, cost: number): void {
    this.inFlight++;
    const p = this.execute(req, offset, payload).finally(() => {
      this.inFlight--;
      if (cost > 0) this.ledger.done(cost);
      this.pending.delete(p);
      this.notify();
    });
    this.pending.add(p);
  }

  private async execute(req: Request, offset: number, payload: Buffer[] | undefined): Promise<void> {
    const fua = (req.flags & CMD_FLAG.FUA) !== 0;
    const dev = this.device;
    const len = req.length;
    try {
      switch (req.type) {
        case CMD.READ: {
          if (len === 0) {
            this.send(this.state.structuredReplies ? noneChunk(req.cookie) : simpleReply(req.cookie, 0));
            return;
          }
          if (dev.readChunks && len <= MAX_PAYLOAD_ADVERTISED) {
            // The data as the device got it (a worker's reply, as read from the link), sent without a join.
            const parts = await dev.readChunks(offset, len);
            const n = parts.reduce((t, p) => t + p.length, 0);
            if (n !== len) throw new Error(`device read returned ${n} bytes, expected ${len}`);
            this.served(len);
            this.out.send(readReplyParts(req.cookie, offset, parts, len, this.state.structuredReplies));
            return;
          }
          const data = await dev.read(offset, len);
          if (data.length !== len) throw new Error(`device read returned ${data.length} bytes, expected ${len}`);
          this.served(len);
          // The device's buffer is sent as it is, not copied: a device hands over the buffer it returns.
          this.out.send(this.state.structuredReplies ? readChunkPieces(req.cookie, offset, data) : simpleReadPieces(req.cookie, data));
          return;
        }
        case CMD.WRITE:
          if (len > 0) {
            const chunks = payload as Buffer[];
            if (dev.writeChunks) await dev.writeChunks(offset, chunks, fua);
            else await dev.write(offset, chunks.length === 1 ? chunks[0] : Buffer.concat(chunks, len), fua);
          }
          break;
        case CMD.FLUSH:
          await dev.flush();
          break;
        case CMD.TRIM:
          if (len > 0) await dev.trim(offset, len, fua);
          break;
        case CMD.CACHE:
          // Advisory prefetch; the devices have no cache to warm worth a read of up to 4 GiB.
          break;
        case CMD.WRITE_ZEROES:
          // A device that cannot tell whether zeroing is cheap never promises a fast zero;
          // clients then fall back to writing zeroes the normal way.
          if (req.flags & CMD_FLAG.FAST_ZERO && !dev.canFastZero) {
            this.reply(req, ERRNO.ENOTSUP, 'fast zeroing is not supported');
            return;
          }
          if (len > 0) await dev.zero(offset, len, fua, { noHole: (req.flags & CMD_FLAG.NO_HOLE) !== 0, fast: (req.flags & CMD_FLAG.FAST_ZERO) !== 0 });
          break;
        case CMD.BLOCK_STATUS: {
          // One chunk per selected context, all computed before any is sent, so
          // that a failure is one error chunk rather than a half-sent reply.
          const reqOne = (req.flags & CMD_FLAG.REQ_ONE) !== 0;
          const answers = await Promise.all(this.contexts.map(async (c) => normaliseExtents(await c.context.status(offset, len), len, reqOne, c.context.flagMask)));
          const last = this.contexts.length - 1;
          this.send(Buffer.concat(this.contexts.map((c, i) => blockStatusChunk(req.cookie, c.id, answers[i], i === last))));
          return;
        }
      }
      this.send(simpleReply(req.cookie, 0));
    } catch (err) {
      let errno: number;
      if (err instanceof BlockError) {
        errno = ERRNO[err.errno] ?? ERRNO.EIO;
        this.log(`${commandName(req.type)} at ${offset} length ${len} failed (${err.errno}): ${err.message}`);
        this.reply(req, errno, err.message);
      } else {
        const e = err as Error;
        this.log(`${commandName(req.type)} at ${offset} length ${len} failed (EIO): ${e?.stack ?? String(err)}`);
        // The internal message stays in the log; the client only learns it was an I/O error.
        this.reply(req, ERRNO.EIO, 'I/O error');
      }
    }
  }

  private served(len: number): void {
    this.readsServed++;
    this.bytesServed += len;
  }

  /** An error answer in the form this command and negotiation call for. */
  private reply(req: Request, errno: number, message: string): void {
    const structured = this.state.structuredReplies && (req.type === CMD.READ || req.type === CMD.BLOCK_STATUS);
    this.send(structured ? errorChunk(req.cookie, errno, message) : simpleReply(req.cookie, errno));
  }

  private send(buf: Buffer): void {
    this.out.send([buf]);
  }
}

/**
 * Turn a device's answer into what the protocol allows: consecutive nonzero
 * extents from the request offset, none beyond the request, the context's
 * bits only (base:allocation's by default), neighbours with equal flags merged; exactly one with REQ_ONE.
 */
export function normaliseExtents(extents: readonly BlockExtent[], length: number, reqOne: boolean, flagMask = STATE_HOLE | STATE_ZERO): BlockExtent[] {
  const out: BlockExtent[] = [];
  let total = 0;
  for (const e of extents) {
    if (!Number.isSafeInteger(e.length) || e.length < 0) throw new Error(`device returned an extent of length ${e.length}`);
    if (e.length === 0) continue;
    const take = Math.min(e.length, length - total);
    if (take <= 0) break;
    const flags = e.flags & flagMask;
    const last = out[out.length - 1];
    if (last && last.flags === flags) last.length += take;
    else {
      if (out.length === MAX_EXTENTS) break;
      out.push({ length: take, flags });
    }
    total += take;
  }
  if (out.length === 0) throw new Error('device returned no extents');
  return reqOne ? [out[0]] : out;
}
