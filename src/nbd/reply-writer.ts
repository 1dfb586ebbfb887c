// The outgoing side of a transmission: replies are queued here and handed to
// the socket only while its own buffer is short, so the bytes a client has not
// taken are counted (ConnectionLedger), and a write callback means the kernel
// took bytes recently: that is the progress the stall timeout watches.

import type { ConnectionLedger } from './budget.js';

/** The part of a net.Socket the writer uses (a fake one in unit tests). */
export interface ReplySocket {
  write(chunk: Buffer, cb: (err?: Error | null) => void): boolean;
  cork(): void;
  uncork(): void;
  readonly writableLength: number;
  readonly destroyed: boolean;
  readonly writableEnded: boolean;
}

/** Bytes handed to the socket at once; more wait in the queue until it has taken some. */
export const HANDOFF_BYTES = 1024 * 1024;
/** Larger pieces are handed over in slices (views, not copies), so progress is seen at this grain. */
export const SLICE_BYTES = 256 * 1024;

export class ReplyWriter {
  private queue: Buffer[] = [];
  private head = 0;
  private corked = false;
  /** When the client last took reply bytes, or when a backlog began. */
  private lastProgress = 0;

  constructor(
    private readonly socket: ReplySocket,
    private readonly ledger: ConnectionLedger,
    /** Called after the client has taken reply bytes: the backlog shrank. */
    private readonly onTaken: () => void = () => {},
    private readonly now: () => number = Date.now,
    private readonly handoff = HANDOFF_BYTES,
  ) {}

  /** Bytes queued or handed over and not yet taken by the client. */
  get backlog(): number {
    return this.ledger.replyBytes;
  }

  /** Milliseconds the client has had replies waiting without taking any; 0 without a backlog. */
  stalledFor(now = this.now()): number {
    return this.ledger.replyBytes === 0 ? 0 : now - this.lastProgress;
  }

  /** Queue one reply; its pieces leave back to back, in order after every earlier reply. */
  send(pieces: readonly Buffer[]): void {
    if (this.socket.destroyed || this.socket.writableEnded) return;
    let n = 0;
    for (const p of pieces) n += p.length;
    if (n === 0) return;
    if (this.ledger.replyBytes === 0) this.lastProgress = this.now();
    this.ledger.replyQueued(n);
    for (const p of pieces) {
      if (p.length <= SLICE_BYTES) this.queue.push(p);
      else for (let at = 0; at < p.length; at += SLICE_BYTES) this.queue.push(p.subarray(at, at + SLICE_BYTES));
    }
    this.pump(this.handoff);
  }

  /** Hand everything queued to the socket (the connection is closing: end() must follow the last reply). */
  flush(): void {
    this.pump(Infinity);
    if (this.corked) {
      this.corked = false;
      this.socket.uncork();
    }
  }

  private pump(limit: number): void {
    const s = this.socket;
    while (this.head < this.queue.length && s.writableLength < limit) {
      if (s.destroyed || s.writableEnded) {
        this.discard();
        return;
      }
      if (!this.corked) {
        // Replies finishing in the same tick go out in one writev, not one write each.
        this.corked = true;
        s.cork();
        process.nextTick(() => {
          if (!this.corked) return;
          this.corked = false;
          s.uncork();
        });
      }
      const b = this.queue[this.head++];
      s.write(b, (err) => this.taken(b.length, err));
    }
    this.compact();
  }

  private taken(n: number, err: Error | null | undefined): void {
    this.ledger.replyTaken(n);
    if (err) return;
    this.lastProgress = this.now();
    this.pump(this.handoff);
    this.onTaken();
  }

  /** The socket is gone: what never reached it is dropped and no longer counted. */
  private discard(): void {
    let n = 0;
    for (let i = this.head; i < this.queue.length; i++) n += this.queue[i].length;
    this.queue = [];
    this.head = 0;
    if (n > 0) this.ledger.replyTaken(n);
  }

  private compact(): void {
    if (this.head === this.queue.length) {
      this.queue.length = 0;
      this.head = 0;
    } else if (this.head > 1024 && this.head * 2 > this.queue.length) {
      this.queue = this.queue.slice(this.head);
      this.head = 0;
    }
  }
}
