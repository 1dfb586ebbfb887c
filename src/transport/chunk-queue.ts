// The received-bytes queue under both stream parsers (the worker link's
// FrameReader, the NBD ByteReader). The first buffer is consumed by moving an
// offset, not by re-slicing what is left of it: a socket read holding many
// small frames (4 KiB requests at queue depth 32 arrive ~15 to a read) costs
// one view per frame handed out and no view, array or copy per frame kept.

const EMPTY = Buffer.alloc(0);

/**
 * Reads shorter than this are copied into a shared staging buffer instead of
 * being kept as buffers of their own. Every buffer a socket read makes costs
 * ~300 bytes of objects besides its data, so a client that trickles a
 * 32 MiB WRITE payload one byte per read made the server hold ~300 bytes per
 * payload byte until the payload was whole: the byte budgets (which count
 * payload bytes) then allowed tens of GiB (adversary D1). Staged, such reads
 * cost their bytes plus one buffer per STAGE_BYTES.
 */
const SMALL_READ = 4096;
const STAGE_BYTES = 64 * 1024;

export class ChunkQueue {
  private chunks: Buffer[] = [];
  /** Bytes of chunks[0] already handed out. */
  private off = 0;
  /** Bytes held. */
  length = 0;

  /** The staging buffer of small reads, its bytes in use, and the queue entry that is its view (while it is the last). */
  private stage: Buffer | undefined;
  private staged = 0;
  private stageEntry: Buffer | undefined;

  /**
   * stageSmallReads: for a peer that may be hostile (an NBD client). The
   * worker link's peer is our own process, whose frames stay views of the
   * reads they came in (no copy at all).
   */
  constructor(private readonly opts: { stageSmallReads?: boolean } = {}) {}

  push(chunk: Buffer): void {
    if (chunk.length === 0) return;
    this.length += chunk.length;
    if (chunk.length >= SMALL_READ || !this.opts.stageSmallReads) {
      this.chunks.push(chunk);
      this.stageEntry = undefined;
      return;
    }
    // Bytes of the stage already handed out are never written again: views
    // of them stay valid; new bytes go after them.
    const last = this.chunks.length - 1;
    const extend = last >= 0 && this.chunks[last] === this.stageEntry;
    if (!this.stage || this.stage.length - this.staged < chunk.length) {
      this.stage = Buffer.allocUnsafe(STAGE_BYTES);
      this.staged = 0;
      this.stageEntry = undefined;
    }
    chunk.copy(this.stage, this.staged);
    if (extend && this.stageEntry) {
      // The entry grows in place: same start (so `off` still applies), later end.
      const e = this.stageEntry;
      this.stageEntry = this.stage.subarray(e.byteOffset - this.stage.byteOffset, this.staged + chunk.length);
      this.chunks[last] = this.stageEntry;
    } else {
      this.stageEntry = this.stage.subarray(this.staged, this.staged + chunk.length);
      this.chunks.push(this.stageEntry);
    }
    this.staged += chunk.length;
  }

  clear(): void {
    this.stage = this.stageEntry = undefined;
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
