// Chunk lists: a payload kept as the views of the buffers it arrived in
// (socket reads), so it crosses the NBD socket, the worker link and the
// positional writev without being joined into one buffer. Every function
// here hands out views, never copies, except join().

export type Chunks = readonly Buffer[];

export function chunksLength(chunks: Chunks): number {
  let n = 0;
  for (const c of chunks) n += c.length;
  return n;
}

/** Views of bytes [start, start + length) of the list. */
export function sliceChunks(chunks: Chunks, start: number, length: number): Buffer[] {
  const out: Buffer[] = [];
  let skip = start;
  let left = length;
  for (const c of chunks) {
    if (left === 0) break;
    if (skip >= c.length) {
      skip -= c.length;
      continue;
    }
    const take = Math.min(c.length - skip, left);
    out.push(skip === 0 && take === c.length ? c : c.subarray(skip, skip + take));
    left -= take;
    skip = 0;
  }
  if (left > 0) throw new RangeError(`sliceChunks: [${start}, ${start + length}) is beyond the ${chunksLength(chunks)} bytes held`);
  return out;
}

/** One buffer holding the list: the list's only buffer itself, else a copy. */
export function joinChunks(chunks: Chunks): Buffer {
  if (chunks.length === 1) return chunks[0];
  return Buffer.concat(chunks as Buffer[]);
}

/** Copy the list into target[at...]. */
export function copyChunks(chunks: Chunks, target: Buffer, at: number): void {
  for (const c of chunks) {
    c.copy(target, at);
    at += c.length;
  }
}

/** Views of bytes [start, start + length) of one buffer or of a chunk list. */
export function viewsOf(data: Buffer | Chunks, start: number, length: number): Buffer[] {
  if (Buffer.isBuffer(data)) return [data.subarray(start, start + length)];
  return start === 0 && length === chunksLength(data) ? (data as Buffer[]) : sliceChunks(data, start, length);
}

export function byteLength(data: Buffer | Chunks): number {
  return Buffer.isBuffer(data) ? data.length : chunksLength(data);
}

/**
 * Remove the first n bytes from a queue of received buffers and return them
 * as views (the queue's buffers, or subarrays of them); the caller checked
 * that the queue holds at least n bytes.
 */
export function takeChunks(queue: Buffer[], n: number): Buffer[] {
  const parts: Buffer[] = [];
  let left = n;
  while (left > 0) {
    const c = queue[0];
    if (c.length <= left) {
      parts.push(c);
      queue.shift();
      left -= c.length;
    } else {
      parts.push(c.subarray(0, left));
      queue[0] = c.subarray(left);
      left = 0;
    }
  }
  return parts;
}
