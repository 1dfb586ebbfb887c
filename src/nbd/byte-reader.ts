// Exact-length reads over a socket. NBD is a framed byte stream: headers and
// payloads arrive split or glued across 'data' events, so the protocol code
// asks for exactly N bytes and this module buffers. It pauses the socket once
// enough is buffered, which is how a slow device holds back a fast client.

import type { Socket } from 'node:net';
import { ChunkQueue } from '../transport/chunk-queue.js';

/** The stream ended (or was cancelled) before the requested bytes arrived. */
export class EndOfStream extends Error {
  constructor(
    /** Bytes of the unfinished message that had arrived: 0 means a clean end between messages. */
    readonly partial: number,
  ) {
    super(partial === 0 ? 'connection closed' : `connection closed mid-message (${partial} bytes of it received)`);
    this.name = 'EndOfStream';
  }
}

const HIGH_WATER = 1024 * 1024;

export class ByteReader {
  private readonly queue = new ChunkQueue({ stageSmallReads: true }); // a client may trickle its bytes (chunk-queue.ts)
  private ended = false;
  /** cancel() was called: bytes already buffered are not handed out either. */
  private cancelled = false;
  private wanted = 0;
  private wake: (() => void) | undefined;

  constructor(private readonly socket: Socket) {
    socket.on('data', (chunk: Buffer) => {
      this.queue.push(chunk);
      if (this.queue.length >= Math.max(this.wanted, HIGH_WATER)) socket.pause();
      this.notify();
    });
    const end = () => {
      this.ended = true;
      this.notify();
    };
    socket.on('end', end);
    socket.on('close', end);
  }

  /**
   * Stop waiting: pending and later reads fail with EndOfStream, even when the
   * bytes are buffered (a dropped client's pipelined requests are not served).
   */
  cancel(): void {
    this.ended = true;
    this.cancelled = true;
    this.queue.clear();
    this.notify();
  }

  get isEnded(): boolean {
    return this.ended;
  }

  /** Exactly n bytes, or EndOfStream. */
  async read(n: number): Promise<Buffer> {
    await this.fill(n, n);
    return this.consumed(n, this.queue.take(n));
  }

  /**
   * Exactly n bytes if they are buffered already, else undefined (then
   * read()): the request loop's fast path, without a promise per header.
   */
  readNow(n: number): Buffer | undefined {
    if (this.cancelled || this.queue.length < n) return undefined;
    return this.consumed(n, this.queue.take(n));
  }

  /**
   * Exactly n bytes as views of the socket's reads (no copy: Node hands each
   * read a fresh buffer, so the views stay valid), or EndOfStream. For WRITE
   * payloads, which travel on as a chunk list.
   */
  async readChunks(n: number): Promise<Buffer[]> {
    await this.fill(n, n);
    return this.consumed(n, this.queue.takeParts(n));
  }

  /** readChunks() when the n bytes are buffered already, else undefined. */
  readChunksNow(n: number): Buffer[] | undefined {
    if (this.cancelled || this.queue.length < n) return undefined;
    return this.consumed(n, this.queue.takeParts(n));
  }

  /** Consume n bytes without keeping them (a rejected WRITE's payload), in bounded steps. */
  async skip(n: number): Promise<void> {
    let left = n;
    while (left > 0) {
      const step = Math.min(left, HIGH_WATER);
      await this.fill(step, n - left + step);
      this.queue.drop(step);
      this.consumed(step, undefined);
      left -= step;
    }
  }

  private async fill(n: number, partialIfEnded: number): Promise<void> {
    if (this.cancelled) throw new EndOfStream(0);
    while (this.queue.length < n) {
      if (this.ended) throw new EndOfStream(this.queue.length + partialIfEnded - n);
      this.wanted = n;
      this.socket.resume();
      await new Promise<void>((resolve) => (this.wake = resolve));
    }
    this.wanted = 0;
  }

  /** n bytes were handed out (as `out`): below the high-water mark the socket may read again. */
  private consumed<T>(n: number, out: T): T {
    if (n > 0 && this.queue.length < HIGH_WATER && !this.ended) this.socket.resume();
    return out;
  }

  private notify(): void {
    const w = this.wake;
    this.wake = undefined;
    w?.();
  }
}
