// Length-prefixed frames on a byte stream: every frame starts with its own
// total length as a u32 (little-endian), so a reader can split a stream
// without knowing what the frames carry.

/**
 * Splits a byte stream into length-prefixed frames without copying payloads
 * more than once. Feed it chunks; it calls onFrame with whole frames.
 */
export class FrameReader {
  private chunks: Buffer[] = [];
  private buffered = 0;
  constructor(private readonly onFrame: (frame: Buffer) => void) {}

  push(chunk: Buffer): void {
    this.chunks.push(chunk);
    this.buffered += chunk.length;
    while (this.buffered >= 4) {
      const head = this.chunks[0].length >= 4 ? this.chunks[0] : this.coalesce(4);
      const len = head.readUInt32LE(0);
      if (len < 5) throw new Error(`corrupt frame length ${len} on the worker link`);
      if (this.buffered < len) return;
      const first = this.chunks[0];
      let frame: Buffer;
      if (first.length >= len) {
        frame = first.subarray(0, len);
        if (first.length === len) this.chunks.shift();
        else this.chunks[0] = first.subarray(len);
      } else {
        frame = this.coalesce(len).subarray(0, len);
        const rest = this.chunks[0].subarray(len);
        if (rest.length) this.chunks[0] = rest;
        else this.chunks.shift();
      }
      this.buffered -= len;
      this.onFrame(frame);
    }
  }

  /** Merge leading chunks until the first holds at least n bytes. */
  private coalesce(n: number): Buffer {
    let total = 0;
    let k = 0;
    while (total < n) total += this.chunks[k++].length;
    const merged = Buffer.concat(this.chunks.slice(0, k), total);
    this.chunks.splice(0, k, merged);
    return merged;
  }
}
