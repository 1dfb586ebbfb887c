// The received-bytes queue under both stream parsers (the worker link's
// FrameReader, the NBD ByteReader). The first buffer is consumed by moving an
// offset, not by re-slicing what is left of it: a socket read holding many
// small frames (4 KiB requests at queue depth 32 arrive ~15 to a read) costs
// one view per frame handed out and no view, array or copy per frame kept.

const EMPTY = Buffer.alloc(0);

export class ChunkQueue {
  private chunks: Buffer[] = [];
  /** Bytes of chunks[0] already handed out. */
  private off = 0;
  /** Bytes held. */
  length = 0;

  push(chunk: Buffer): void {
    if (chunk.length === 0) return;
    this.chunks.push(chunk);
    this.length += chunk.length;
  }

  clear(): void {
    this.chunks = [];
    this.off = 0;
    this.length = 0;
  }

  /** Bytes at the front that lie in one buffer. */
  get contiguous(): number {
    return this.chunks.length === 0 ? 0 : this.chunks[0].length - this.off;
  }

  /** The u32 (little-endian) at the front; the caller made sure `contiguous >= 4`. */
  peekUInt32LE(): number {
    return this.chunks[0].readUInt32LE(this.off);
  }

  /** The next n bytes as one buffer: a view when they lie in one buffer, else a copy. */
  take(n: number): Buffer {
    if (n === 0) return EMPTY;
    if (this.contiguous >= n) return this.view(n);
    const out = Buffer.allocUnsafe(n);
    this.copyOut(out, n);
    return out;
  }

  /** The next n bytes as views, never copied: one view when they lie in one buffer. */
  takeParts(n: number): Buffer[] {
    if (n === 0) return [];
    if (this.contiguous >= n) return [this.view(n)];
    const parts: Buffer[] = [];
    let left = n;
    while (left > 0) {
      const k = Math.min(this.contiguous, left);
      parts.push(this.view(k));
      left -= k;
    }
    return parts;
  }

  /** Drop the next n bytes (the caller checked that they are held), no copy. */
  drop(n: number): void {
    let left = n;
    while (left > 0) {
      const k = Math.min(this.contiguous, left);
      this.off += k;
      this.length -= k;
      left -= k;
      if (this.off === this.chunks[0].length) this.next();
    }
  }

  /** Make the front n bytes one buffer, copying only those n (a header split across reads). */
  gather(n: number): void {
    if (this.contiguous >= n) return;
    const head = Buffer.allocUnsafe(n);
    this.copyOut(head, n);
    if (this.off > 0) {
      this.chunks[0] = this.chunks[0].subarray(this.off);
      this.off = 0;
    }
    this.chunks.unshift(head);
    this.length += n;
  }

  /** n bytes from the first buffer, which holds them. */
  private view(n: number): Buffer {
    const c = this.chunks[0];
    const s = this.off;
    this.length -= n;
    if (s + n === c.length) {
      this.next();
      return s === 0 ? c : c.subarray(s);
    }
    this.off = s + n;
    return c.subarray(s, s + n);
  }

  private copyOut(out: Buffer, n: number): void {
    let at = 0;
    while (at < n) {
      const c = this.chunks[0];
      const use = Math.min(c.length - this.off, n - at);
      c.copy(out, at, this.off, this.off + use);
      at += use;
      this.off += use;
      if (this.off === c.length) this.next();
    }
    this.length -= n;
  }

  private next(): void {
    this.chunks.shift();
    this.off = 0;
  }
}
