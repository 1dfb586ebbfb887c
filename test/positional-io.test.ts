// src/positional-io.ts: short reads and writes are finished, end of file
// stops a read (or reads as zeros where asked), on descriptors and FileHandles.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import path from 'node:path';
import { readFully, readFullyZeroFilled, readvFully, writeFully, writevFully } from '../src/positional-io.js';
import { tempDir } from './formats/util.js';

/** A FileHandle over a Buffer that moves at most `step` bytes per call, as a short-transfer file system might. */
function stingyHandle(content: Buffer, step: number): { fh: FileHandle; data: () => Buffer; calls: () => number } {
  let data = Buffer.from(content);
  let calls = 0;
  const put = (b: Buffer, pos: number) => {
    if (pos + b.length > data.length) data = Buffer.concat([data, Buffer.alloc(pos + b.length - data.length)]);
    b.copy(data, pos);
  };
  const fh = {
    async read(buf: Buffer, off: number, len: number, pos: number) {
      calls++;
      const n = Math.max(0, Math.min(len, step, data.length - pos));
      data.copy(buf, off, pos, pos + n);
      return { bytesRead: n, buffer: buf };
    },
    async write(buf: Buffer, off: number, len: number, pos: number) {
      calls++;
      const n = Math.min(len, step);
      put(buf.subarray(off, off + n), pos);
      return { bytesWritten: n, buffer: buf };
    },
    async readv(bufs: Buffer[], pos: number) {
      calls++;
      const b = bufs[0];
      const n = Math.max(0, Math.min(b.length, step, data.length - pos));
      data.copy(b, 0, pos, pos + n);
      return { bytesRead: n, buffers: bufs };
    },
    async writev(bufs: Buffer[], pos: number) {
      calls++;
      const n = Math.min(bufs[0].length, step);
      put(bufs[0].subarray(0, n), pos);
      return { bytesWritten: n, buffers: bufs };
    },
  } as unknown as FileHandle;
  return { fh, data: () => data, calls: () => calls };
}

const pattern = (n: number, seed = 1) => Buffer.from(Array.from({ length: n }, (_, i) => (i * 31 + seed) & 0xff));

test('short transfers are finished: read, write, readv and gather-write', async () => {
  const src = pattern(1000);
  const f = stingyHandle(src, 7);
  const buf = Buffer.alloc(600);
  assert.equal(await readFully(f.fh, buf, 100, 500, 300), 500);
  assert.deepEqual(buf.subarray(100), src.subarray(300, 800));
  assert.ok(f.calls() >= 500 / 7);

  const parts = [Buffer.alloc(32), Buffer.alloc(100), Buffer.alloc(5)];
  assert.equal(await readvFully(f.fh, parts, 10), 137);
  assert.deepEqual(Buffer.concat(parts), src.subarray(10, 147));

  const w = stingyHandle(Buffer.alloc(0), 5);
  await writeFully(w.fh, pattern(64, 9), 4, 60, 10);
  assert.deepEqual(w.data().subarray(10, 70), pattern(64, 9).subarray(4));
  const g = stingyHandle(Buffer.alloc(0), 3);
  const iov = [pattern(32, 2), pattern(17, 3), pattern(1, 4)];
  await writevFully(g.fh, iov, 0);
  assert.deepEqual(g.data(), Buffer.concat(iov));
});

test('end of file stops a read; readFullyZeroFilled zeroes the rest; readv stops in the middle', async () => {
  const f = stingyHandle(pattern(100), 13);
  const buf = Buffer.alloc(50, 0xee);
  assert.equal(await readFully(f.fh, buf, 0, 50, 80), 20);
  assert.ok(buf.subarray(20).every((x) => x === 0xee), 'bytes past the end are left alone');
  await readFullyZeroFilled(f.fh, buf, 0, 50, 80);
  assert.deepEqual(buf.subarray(0, 20), pattern(100).subarray(80));
  assert.ok(buf.subarray(20).every((x) => x === 0), 'bytes past the end read as zeros');
  const parts = [Buffer.alloc(32), Buffer.alloc(32)];
  assert.equal(await readvFully(f.fh, parts, 60), 40);
});

test('raw descriptors and FileHandles give the same bytes', async () => {
  const { dir, cleanup } = tempDir('vsnap-pio-');
  try {
    const file = path.join(dir, 'f');
    fs.writeFileSync(file, Buffer.alloc(0));
    const fd = fs.openSync(file, 'r+');
    try {
      await writevFully(fd, [pattern(4096, 5), pattern(100 * 1024, 6)], 512); // one small, one past the synchronous-write limit
      await writeFully(fd, pattern(70 * 1024, 7), 0, 70 * 1024, 200 * 1024);
      const expect = Buffer.alloc(270 * 1024);
      pattern(4096, 5).copy(expect, 512);
      pattern(100 * 1024, 6).copy(expect, 512 + 4096);
      pattern(70 * 1024, 7).copy(expect, 200 * 1024);
      assert.deepEqual(fs.readFileSync(file), expect);
      const a = Buffer.alloc(8192);
      assert.equal(await readFully(fd, a, 0, a.length, 1000), 8192);
      const fh = await fs.promises.open(file, 'r');
      const b = Buffer.alloc(8192);
      assert.equal(await readFully(fh, b, 0, b.length, 1000), 8192);
      await fh.close();
      assert.deepEqual(a, b);
      assert.deepEqual(a, expect.subarray(1000, 1000 + 8192));
    } finally {
      fs.closeSync(fd);
    }
  } finally {
    cleanup();
  }
});
