// The per-request fast paths of the data path: a frame or an NBD header that
// lies inside one socket read is handed out as one view of it (ChunkQueue,
// FrameReader, ByteReader), and a request frame is decoded in place
// (decodeRequestParts). Each test splits streams at every byte position, so
// a fast path that mis-splits a frame, or hands out bytes of the wrong read,
// fails here.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { EventEmitter } from 'node:events';
import type { Socket } from 'node:net';
import { ChunkQueue } from '../../src/transport/chunk-queue.js';
import { FrameReader, FRAME_HEAD_BYTES } from '../../src/transport/frames.js';
import { joinChunks } from '../../src/transport/chunks.js';
import { ByteReader, EndOfStream } from '../../src/nbd/byte-reader.js';
import { DataOp, decodeRequestParts, encodeRequest, REQ_HEADER } from '../../src/worker/protocol.js';

function frame(len: number, seed: number): Buffer {
  const f = Buffer.alloc(len);
  f.writeUInt32LE(len, 0);
  for (let i = 4; i < len; i++) f[i] = (seed * 31 + i * 7) & 0xff;
  return f;
}

/** Feed `stream` cut at the given positions (fresh buffers, as a socket hands them out); returns the frames as delivered. */
function feed(stream: Buffer, cuts: number[]): Buffer[][] {
  const got: Buffer[][] = [];
  const reader = new FrameReader((parts) => got.push(parts));
  let at = 0;
  for (const c of [...cuts, stream.length]) {
    reader.push(Buffer.from(stream.subarray(at, c)));
    at = c;
  }
  return got;
}

function checkFrames(got: Buffer[][], sent: Buffer[], what: string): void {
  assert.equal(got.length, sent.length, `${what}: frame count`);
  got.forEach((parts, k) => {
    assert.ok(parts[0].length >= Math.min(FRAME_HEAD_BYTES, sent[k].length), `${what} frame ${k}: header whole in the first part`);
    assert.ok(parts.every((p) => p.length > 0), `${what} frame ${k}: no empty part`);
    assert.deepEqual(joinChunks(parts), sent[k], `${what} frame ${k}: bytes`);
  });
}

// Frame sizes around every boundary the reader cares about: the 4-byte
// length, the 32-byte head, a 4 KiB write's frame (32 + 4096).
const SIZES = [5, 6, 31, 32, 33, 40, 4128, 100];

test('FrameReader: a stream cut in two at every byte position gives the same frames', () => {
  const sent = SIZES.map((n, k) => frame(n, k));
  const stream = Buffer.concat(sent);
  for (let cut = 0; cut <= stream.length; cut++) checkFrames(feed(stream, [cut]), sent, `cut at ${cut}`);
});

test('FrameReader: a stream cut in three at every pair of positions near the frame edges gives the same frames', () => {
  const sent = [5, 33, 31, 64, 5].map((n, k) => frame(n, k));
  const stream = Buffer.concat(sent);
  for (let a = 0; a <= stream.length; a++) {
    for (let b = a; b <= stream.length; b++) checkFrames(feed(stream, [a, b]), sent, `cuts at ${a}, ${b}`);
  }
});

test('FrameReader: a stream fed one byte at a time gives the same frames', () => {
  const sent = SIZES.map((n, k) => frame(n, k + 3));
  const stream = Buffer.concat(sent);
  checkFrames(
    feed(
      stream,
      Array.from({ length: stream.length - 1 }, (_, i) => i + 1),
    ),
    sent,
    'bytewise',
  );
});

test('FrameReader: a frame exactly filling a read is that read itself', () => {
  const f = frame(4128, 1);
  let parts: Buffer[] = [];
  const reader = new FrameReader((p) => (parts = p));
  reader.push(f);
  assert.equal(parts.length, 1);
  assert.equal(parts[0], f, 'the read itself, no view or copy');
  // And again after a read that ended exactly on a frame boundary.
  const g = frame(40, 2);
  reader.push(g);
  assert.equal(parts[0], g);
});

test('FrameReader: many frames in one read are each one view of that read, at their own offsets', () => {
  const sent = Array.from({ length: 15 }, (_, k) => frame(k % 3 === 0 ? 4128 : 16 + k, k));
  const tail = frame(4128, 99);
  const read1 = Buffer.concat([...sent, tail.subarray(0, 1000)]);
  const got: Buffer[][] = [];
  const reader = new FrameReader((p) => got.push(p));
  reader.push(read1);
  checkFrames(got, sent, 'one read');
  let at = 0;
  got.forEach((parts, k) => {
    assert.equal(parts.length, 1, `frame ${k}: one part`);
    assert.equal(parts[0].buffer, read1.buffer, `frame ${k}: a view of the read`);
    assert.equal(parts[0].byteOffset, read1.byteOffset + at, `frame ${k}: at its offset`);
    at += sent[k].length;
  });
  // The frame left straddling the read boundary comes whole with the next read, its payload a view of that read.
  const read2 = Buffer.from(tail.subarray(1000));
  reader.push(read2);
  checkFrames(got.slice(15), [tail], 'straddling');
  assert.equal(got[15].length, 2);
  assert.equal(got[15][1].buffer, read2.buffer);
});

test('FrameReader: a header straddling two reads is copied alone, the payload stays views', () => {
  const f = frame(4128, 5);
  for (let cut = 1; cut < FRAME_HEAD_BYTES; cut++) {
    let parts: Buffer[] = [];
    const reader = new FrameReader((p) => (parts = p));
    const b = Buffer.from(f.subarray(cut));
    reader.push(Buffer.from(f.subarray(0, cut)));
    reader.push(b);
    assert.equal(parts[0].length, FRAME_HEAD_BYTES, `cut ${cut}: only the head copied`);
    assert.equal(parts[1].buffer, b.buffer, `cut ${cut}: the payload a view of the second read`);
    assert.deepEqual(joinChunks(parts), f);
  }
});

test('ChunkQueue: take, takeParts, drop and gather agree with slicing the joined bytes', () => {
  let x = 12345;
  const r = (n: number) => ((x = (x * 1103515245 + 12345) >>> 0) >>> 8) % n;
  for (let round = 0; round < 300; round++) {
    const q = new ChunkQueue();
    const all: number[] = [];
    let pos = 0;
    for (let step = 0; step < 40; step++) {
      if (r(3) === 0) {
        const c = Buffer.from(Array.from({ length: r(30) }, () => r(256)));
        q.push(c);
        all.push(...c);
      }
      const held = all.length - pos;
      assert.equal(q.length, held, `round ${round} step ${step}: length`);
      if (held === 0) continue;
      const n = r(held + 1);
      const want = Buffer.from(all.slice(pos, pos + n));
      const how = r(4);
      if (how === 0) assert.deepEqual(q.take(n), want, `take ${n}`);
      else if (how === 1) assert.deepEqual(joinChunks(q.takeParts(n)), want, `takeParts ${n}`);
      else if (how === 2) q.drop(n);
      else {
        q.gather(n);
        assert.ok(q.contiguous >= n, `gather ${n}`);
        continue;
      }
      pos += n;
    }
  }
});

/** Enough of a net.Socket for ByteReader: data/end events, pause and resume. */
class FakeSocket extends EventEmitter {
  paused = false;
  pause(): this {
    this.paused = true;
    return this;
  }
  resume(): this {
    this.paused = false;
    return this;
  }
}

function nbdHeader(cookie: number, len: number): Buffer {
  const h = Buffer.alloc(28);
  h.writeUInt32BE(0x25609513, 0);
  h.writeUInt16BE(1, 6);
  h.writeBigUInt64BE(BigInt(cookie), 8);
  h.writeUInt32BE(len, 24);
  return h;
}

test('ByteReader: WRITE requests (header + payload) cut at every byte position read back whole, sync or async', async () => {
  const reqs = [nbdHeader(1, 4096), frame(4096, 1), nbdHeader(2, 40), frame(40, 2), nbdHeader(3, 5), frame(5, 3)];
  const stream = Buffer.concat(reqs);
  for (let cut = 0; cut <= stream.length; cut++) {
    const sock = new FakeSocket();
    const reader = new ByteReader(sock as unknown as Socket);
    const pieces = [stream.subarray(0, cut), stream.subarray(cut)];
    // The first piece arrives before reading starts (the sync path), the second while reading waits.
    sock.emit('data', Buffer.from(pieces[0]));
    const later = setImmediate(() => sock.emit('data', Buffer.from(pieces[1])));
    for (let k = 0; k < reqs.length; k += 2) {
      const h = reader.readNow(28) ?? (await reader.read(28));
      assert.deepEqual(h, reqs[k], `cut ${cut}: header ${k / 2}`);
      const len = h.readUInt32BE(24);
      const p = reader.readChunksNow(len) ?? (await reader.readChunks(len));
      assert.deepEqual(joinChunks(p), reqs[k + 1], `cut ${cut}: payload ${k / 2}`);
    }
    clearImmediate(later);
    assert.equal(reader.readNow(1), undefined, 'nothing left');
  }
});

test('ByteReader: a header inside one read is a view of it; readNow waits for nothing and takes nothing short', async () => {
  const sock = new FakeSocket();
  const reader = new ByteReader(sock as unknown as Socket);
  const read = Buffer.concat([nbdHeader(7, 4096), frame(4096, 7), nbdHeader(8, 0).subarray(0, 10)]);
  sock.emit('data', read);
  const h = reader.readNow(28)!;
  assert.equal(h.buffer, read.buffer, 'a view, not a copy');
  const p = reader.readChunksNow(4096)!;
  assert.equal(p.length, 1);
  assert.equal(p[0].byteOffset, read.byteOffset + 28);
  assert.equal(reader.readNow(28), undefined, '10 of 28 bytes held: not yet');
  sock.emit('data', nbdHeader(8, 0).subarray(10));
  assert.deepEqual(reader.readNow(28), nbdHeader(8, 0));
  reader.cancel();
  assert.equal(reader.readNow(0), undefined, 'a cancelled reader hands out nothing');
  await assert.rejects(reader.read(1), EndOfStream);
});

test('decodeRequestParts: a frame in one part and the same frame split anywhere decode alike', () => {
  const payload = frame(4096, 4);
  const enc = encodeRequest({ op: DataOp.Write, flags: 1, partition: 3, view: 9, offset: 2 ** 40 + 4096, length: 4096, clone: 2, payloadParts: [payload] }, 77);
  const whole = Buffer.concat(enc);
  for (let cut = REQ_HEADER; cut <= whole.length; cut++) {
    const parts = cut === whole.length ? [whole] : [whole.subarray(0, cut), whole.subarray(cut)];
    const r = decodeRequestParts(parts);
    assert.deepEqual(
      [r.op, r.flags, r.partition, r.reqId, r.view, r.offset, r.length, r.clone],
      [DataOp.Write, 1, 3, 77, 9, 2 ** 40 + 4096, 4096, 2],
      `cut ${cut}: header`,
    );
    assert.ok(!(r.payload && r.payloadParts), 'one payload form at most');
    const got = r.payload ?? joinChunks(r.payloadParts ?? []);
    assert.deepEqual(got, payload, `cut ${cut}: payload`);
    if (parts.length === 1) assert.equal(r.payload?.buffer, whole.buffer, 'one part: the payload a view of it');
  }
  const bare = decodeRequestParts(encodeRequest({ op: DataOp.Flush, flags: 0, partition: 0, view: 0, offset: 0, length: 0 }, 5));
  assert.equal(bare.payload, undefined);
  assert.equal(bare.payloadParts, undefined);
  assert.equal(bare.reqId, 5);
});
