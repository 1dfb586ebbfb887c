// Length-prefixed frames on a byte stream: every frame starts with its own
// total length as a u32 (little-endian), so a reader can split a stream
// without knowing what the frames carry.

import { takeChunks } from './chunks.js';

/**
 * Bytes of a frame guaranteed contiguous in its first part: the largest
 * header of the worker protocol (a request's), so headers are read from one
 * buffer while payloads stay in the chunks they arrived in.
 */
export const FRAME_HEAD_BYTES = 32;

/**
 * Splits a byte stream into length-prefixed frames without copying payloads.
 * Feed it chunks; it calls onFrame with each whole frame as a list of views
 * of those chunks (one view when the frame arrived in one chunk). The first
 * part holds at least FRAME_HEAD_BYTES (or the whole frame, if shorter): at
 * most those few bytes are ever copied, when a header straddles two reads.
 */
export class FrameReader {
  private chunks: Buffer[] = [];
  private buffered = 0;
  constructor(private readonly onFrame: (parts: Buffer[]) => void) {}

  push(chunk: Buffer): void {
    this.chunks.push(chunk);
    this.buffered += chunk.length;
    while (this.buffered >= 4) {
      if (this.chunks[0].length < 4) this.coalesce(4);
      const len = this.chunks[0].readUInt32LE(0);
      if (len < 5) throw new Error(`corrupt frame length ${len} on the worker link`);
      if (this.buffered < len) return;
      const head = Math.min(len, FRAME_HEAD_BYTES);
      if (this.chunks[0].length < head) this.coalesce(head);
      this.buffered -= len;
      this.onFrame(takeChunks(this.chunks, len));
    }
  }

  /** Make the first chunk hold at least n bytes: copies only those n bytes (a header split across reads). */
  private coalesce(n: number): void {
    const head = Buffer.allocUnsafe(n);
    let at = 0;
    while (at < n) {
      const c = this.chunks[0];
      const use = Math.min(c.length, n - at);
      c.copy(head, at, 0, use);
      at += use;
      if (use === c.length) this.chunks.shift();
      else this.chunks[0] = c.subarray(use);
    }
    this.chunks.unshift(head);
  }
}
