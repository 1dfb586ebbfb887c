// Positional file I/O that finishes what it starts: a read until the buffer is
// full or the file ends, a write or gather-write until every byte is written,
// a scatter-read (readv) with the same rule. The change log and the workers'
// extent I/O both use it, so short reads and writes are handled in one place.
//
// A file is either a raw descriptor or a FileHandle. Descriptors take fs's
// callback API: it is the workers' hot path, and measured on tmpfs with 32
// writes of 4 KiB in flight, FileHandle (the promise API) managed ~0.1-0.25 M
// writes/s against ~0.2-0.65 M for callbacks. FileHandles stay for files
// whose callers want their lifetime management (the change logs). Calls go
// through `fs.<name>` and the FileHandle methods at call time, so tests that
// trace or fail those calls (test/crash/io-trace.ts) see every one.
import fs from 'node:fs';
import type { FileHandle } from 'node:fs/promises';

export type PositionalFile = number | FileHandle;

// Small writes go straight to the page cache synchronously: for 4 KiB random
// writes the thread-pool round trip cost more than the copy itself (measured
// with fio at QD32 on tmpfs: ~35k IOPS async, ~47k sync). Large writes stay
// asynchronous so one big write never holds the event loop for long.
const SYNC_WRITE_MAX = 64 * 1024;

/** One positional read; returns the bytes read (0 at end of file). */
export function pread(file: PositionalFile, buf: Buffer, off: number, len: number, pos: number): Promise<number> {
  if (typeof file !== 'number') return file.read(buf, off, len, pos).then((r) => r.bytesRead);
  return new Promise((resolve, reject) => fs.read(file, buf, off, len, pos, (err, n) => (err ? reject(err) : resolve(n))));
}

/** One positional write; returns the bytes written. */
export function pwrite(file: PositionalFile, buf: Buffer, off: number, len: number, pos: number): Promise<number> {
  if (typeof file !== 'number') return file.write(buf, off, len, pos).then((r) => r.bytesWritten);
  if (len <= SYNC_WRITE_MAX) {
    try {
      return Promise.resolve(fs.writeSync(file, buf, off, len, pos));
    } catch (err) {
      return Promise.reject(err);
    }
  }
  return new Promise((resolve, reject) => fs.write(file, buf, off, len, pos, (err, n) => (err ? reject(err) : resolve(n))));
}

function preadv(file: PositionalFile, bufs: Buffer[], pos: number): Promise<number> {
  if (typeof file !== 'number') return file.readv(bufs, pos).then((r) => r.bytesRead);
  return new Promise((resolve, reject) => fs.readv(file, bufs, pos, (err, n) => (err ? reject(err) : resolve(n))));
}

function pwritev(file: PositionalFile, bufs: Buffer[], pos: number): Promise<number> {
  if (typeof file !== 'number') return file.writev(bufs, pos).then((r) => r.bytesWritten);
  // As pwrite: small gather-writes go to the page cache synchronously.
  let len = 0;
  for (const b of bufs) len += b.length;
  if (len <= SYNC_WRITE_MAX) {
    try {
      return Promise.resolve(fs.writevSync(file, bufs, pos));
    } catch (err) {
      return Promise.reject(err);
    }
  }
  return new Promise((resolve, reject) => fs.writev(file, bufs, pos, (err, n) => (err ? reject(err) : resolve(n))));
}

/** Read buf[off, off+len) from `pos` until full or end of file; returns the bytes read. */
export async function readFully(file: PositionalFile, buf: Buffer, off: number, len: number, pos: number): Promise<number> {
  let done = 0;
  while (done < len) {
    const n = await pread(file, buf, off + done, len - done, pos + done);
    if (n === 0) break;
    done += n;
  }
  return done;
}

/**
 * readFully, with bytes past the end of the file read as zeros. For backing
 * files: the manifest check guarantees their size at open, so a file that
 * ends early shrank behind vsnap (stale detection reports that separately).
 */
export async function readFullyZeroFilled(file: PositionalFile, buf: Buffer, off: number, len: number, pos: number): Promise<void> {
  const n = await readFully(file, buf, off, len, pos);
  if (n < len) buf.fill(0, off + n, off + len);
}

/** Write buf[off, off+len) at `pos`, retrying short writes. */
export async function writeFully(file: PositionalFile, buf: Buffer, off: number, len: number, pos: number): Promise<void> {
  while (len > 0) {
    const n = await pwrite(file, buf, off, len, pos);
    if (n === 0) throw new Error(`positional write made no progress at offset ${pos}`);
    off += n;
    len -= n;
    pos += n;
  }
}

/** readv until all buffers are full or end of file; returns the bytes read. */
export async function readvFully(file: PositionalFile, bufs: Buffer[], pos: number): Promise<number> {
  const total = bufs.reduce((s, b) => s + b.length, 0);
  const first = await preadv(file, bufs, pos);
  if (first === total || first === 0) return first;
  // Short read (rare on regular files): finish buffer by buffer.
  let done = first;
  let skip = first;
  for (const b of bufs) {
    if (skip >= b.length) {
      skip -= b.length;
      continue;
    }
    const want = b.length - skip;
    const got = await readFully(file, b, skip, want, pos + done);
    done += got;
    if (got < want) break;
    skip = 0;
  }
  return done;
}

/** Positional gather-write of all buffers, retrying short writes. */
export async function writevFully(file: PositionalFile, bufs: Buffer[], pos: number): Promise<void> {
  let rest = bufs;
  let at = pos;
  while (rest.length > 0) {
    const written = await pwritev(file, rest, at);
    at += written;
    let skip = written;
    const next: Buffer[] = [];
    for (const b of rest) {
      if (skip >= b.length) {
        skip -= b.length;
        continue;
      }
      next.push(skip > 0 ? b.subarray(skip) : b);
      skip = 0;
    }
    if (next.length > 0 && written === 0) throw new Error(`positional gather-write made no progress at offset ${at}`);
    rest = next;
  }
}
