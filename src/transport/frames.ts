// Length-prefixed frames on a byte stream: every frame starts with its own
// total length as a u32 (little-endian), so a reader can split a stream
// without knowing what the frames carry.

import { ChunkQueue } from './chunk-queue.js';

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
  private readonly queue = new ChunkQueue();
  constructor(private readonly onFrame: (parts: Buffer[]) => void) {}

  push(chunk: Buffer): void {
    const q = this.queue;
    q.push(chunk);
    while (q.length >= 4) {
      if (q.contiguous < 4) q.gather(4);
      const len = q.peekUInt32LE();
      if (len < 5) throw new Error(`corrupt frame length ${len} on the worker link`);
      if (q.length < len) return;
      // A frame inside one read (the common case for small requests) is one
      // view; a longer one keeps its payload in the reads it came in.
      if (q.contiguous < len) q.gather(Math.min(len, FRAME_HEAD_BYTES));
      this.onFrame(q.takeParts(len));
    }
  }
}
