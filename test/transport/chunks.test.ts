// The zero-copy pieces of the data path: frames split out of a byte stream as
// views of the reads they arrived in (transport/frames.ts), and chunk lists
// sliced without copies (transport/chunks.ts).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { FrameReader, FRAME_HEAD_BYTES } from '../../src/transport/frames.js';
import { copyChunks, joinChunks, sliceChunks, viewsOf } from '../../src/transport/chunks.js';

/** Deterministic pseudo-random numbers (xorshift32). */
function rng(seed: number): (n: number) => number {
  let x = seed >>> 0 || 1;
  return (n) => {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    return x % n;
  };
}

function frame(len: number, fill: number): Buffer {
  const f = Buffer.alloc(len, fill);
  f.writeUInt32LE(len, 0);
  for (let i = 4; i < len; i++) f[i] = (fill + i) & 0xff;
  return f;
}

test('FrameReader: frames come out whole and in order however the stream is split, the header contiguous in the first part', () => {
  const r = rng(7);
  for (let round = 0; round < 50; round++) {
    const sent = Array.from({ length: 1 + r(8) }, (_, k) => frame(5 + r(3) * (1 + r(200_000)), k + round));
    const stream = Buffer.concat(sent);
    const got: Buffer[][] = [];
    const reader = new FrameReader((parts) => got.push(parts));
    // Split into pieces of 1 byte up to 100 KiB, fresh buffers as a socket hands them out.
    for (let at = 0; at < stream.length; ) {
      const n = Math.min(stream.length - at, r(4) === 0 ? 1 + r(40) : 1 + r(100_000));
      reader.push(Buffer.from(stream.subarray(at, at + n)));
      at += n;
    }
    assert.equal(got.length, sent.length, `round ${round}: frames out`);
    got.forEach((parts, k) => {
      assert.ok(parts[0].length >= Math.min(FRAME_HEAD_BYTES, sent[k].length), `round ${round} frame ${k}: header in the first part`);
      assert.deepEqual(joinChunks(parts), sent[k], `round ${round} frame ${k}: bytes`);
    });
  }
});

test('FrameReader: a payload spread over many reads is handed out as views of those reads, not copied', () => {
  const f = frame(1 << 20, 3);
  const reads: Buffer[] = [];
  for (let at = 0; at < f.length; at += 65536) reads.push(Buffer.from(f.subarray(at, at + 65536)));
  let parts: Buffer[] = [];
  const reader = new FrameReader((p) => (parts = p));
  for (const c of reads) reader.push(c);
  assert.equal(parts.length, reads.length);
  parts.forEach((p, i) => assert.equal(p.buffer, reads[i].buffer, `part ${i} shares the read's memory`));
  // A change to a read shows in the part: the same bytes, not a copy.
  reads[5][10] ^= 0xff;
  assert.equal(parts[5][10], reads[5][10]);
});

test('FrameReader: a header split across two reads costs a copy of at most its own bytes', () => {
  const f = frame(200_000, 9);
  let parts: Buffer[] = [];
  const reader = new FrameReader((p) => (parts = p));
  const a = Buffer.from(f.subarray(0, 10));
  const b = Buffer.from(f.subarray(10));
  reader.push(a);
  reader.push(b);
  assert.equal(parts[0].length, FRAME_HEAD_BYTES);
  assert.equal(parts[1].buffer, b.buffer, 'the payload stays a view of the second read');
  assert.deepEqual(joinChunks(parts), f);
});

test('FrameReader: a corrupt length is refused', () => {
  const reader = new FrameReader(() => {});
  const bad = Buffer.alloc(8);
  bad.writeUInt32LE(3, 0);
  assert.throws(() => reader.push(bad), /corrupt frame length 3/);
});

test('sliceChunks, viewsOf and copyChunks agree with slicing the joined bytes', () => {
  const r = rng(11);
  for (let round = 0; round < 200; round++) {
    const chunks = Array.from({ length: 1 + r(6) }, () => Buffer.from(Array.from({ length: 1 + r(50) }, () => r(256))));
    const all = Buffer.concat(chunks);
    const start = r(all.length);
    const len = r(all.length - start + 1);
    const sliced = sliceChunks(chunks, start, len);
    assert.deepEqual(Buffer.concat(sliced), all.subarray(start, start + len));
    for (const s of sliced) assert.ok(chunks.some((c) => c.buffer === s.buffer), 'a view, not a copy');
    assert.deepEqual(Buffer.concat(viewsOf(chunks, start, len)), all.subarray(start, start + len));
    assert.deepEqual(Buffer.concat(viewsOf(all, start, len)), all.subarray(start, start + len));
    const out = Buffer.alloc(len + 3, 0xee);
    copyChunks(sliced, out, 2);
    assert.deepEqual(out.subarray(2, 2 + len), all.subarray(start, start + len));
    assert.equal(out[0], 0xee);
    assert.equal(out[len + 2], 0xee);
  }
  assert.throws(() => sliceChunks([Buffer.alloc(4)], 2, 3), /beyond the 4 bytes/);
});
