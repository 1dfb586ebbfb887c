// Transmission behaviour over a raw socket with the server in-process:
// out-of-order completion, chunking of large reads, error mapping, DISC.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { BlockError, type BlockDevice } from '../../src/block.js';
import { MiB, assertSameBytes, pattern } from './harness.js';
import { delayed, withInProcess } from './inprocess.js';
import { CMD, ERR, FLAG, RawClient } from './raw-client.js';

test('requests complete out of order, each reply carrying its own cookie', async () => {
  const live = pattern(MiB, 101);
  // The first request is the slowest: replies must come back newest first.
  const wrap = (d: BlockDevice) => delayed(d, (o) => 300 - o / 1024);
  await withInProcess({ live, wrap }, async (s) => {
    const c = await RawClient.connect(s.socket);
    await c.handshake('', { structured: true });
    const cookies = [0xdeadbeefcafef00dn, 1n, 0xffffffffffffffffn];
    cookies.forEach((cookie, i) => c.request(CMD.READ, { cookie, offset: i * 100 * 1024, length: 1000 }));
    const got: bigint[] = [];
    for (let i = 0; i < 3; i++) {
      const ch = await c.chunk();
      assert.equal(ch.flags, 1);
      const off = Number(ch.payload.readBigUInt64BE(0));
      assertSameBytes(ch.payload.subarray(8), live.subarray(off, off + 1000), `data of cookie ${ch.cookie}`);
      assert.equal(off, cookies.indexOf(ch.cookie) * 100 * 1024);
      got.push(ch.cookie);
    }
    assert.deepEqual(got, [...cookies].reverse());
    c.destroy();
  });
});

test('a 40 MiB structured READ arrives as OFFSET_DATA chunks of at most 32 MiB, DONE only on the last', async () => {
  const live = pattern(48 * MiB, 102);
  await withInProcess({ live }, async (s) => {
    const c = await RawClient.connect(s.socket);
    await c.handshake('', { structured: true });
    const at = 3 * MiB + 5;
    const len = 40 * MiB;
    c.request(CMD.READ, { cookie: 7n, offset: at, length: len });
    const parts: Buffer[] = [];
    let covered = 0;
    for (;;) {
      const ch = await c.chunk();
      assert.equal(ch.cookie, 7n);
      assert.equal(ch.type, 1);
      assert.ok(ch.payload.length - 8 <= 32 * MiB, 'chunk within the advertised maximum');
      assert.equal(Number(ch.payload.readBigUInt64BE(0)), at + covered);
      parts.push(ch.payload.subarray(8));
      covered += ch.payload.length - 8;
      if (ch.flags & 1) break;
    }
    assert.equal(parts.length, 2);
    assertSameBytes(Buffer.concat(parts), live.subarray(at, at + len), 'read data');
    // With DF the same read cannot be sent in one chunk.
    c.request(CMD.READ, { cookie: 8n, flags: FLAG.DF, offset: 0, length: len });
    const err = await c.chunk();
    assert.deepEqual([err.cookie, err.type, err.flags, err.payload.readUInt32BE(0)], [8n, 0x8001, 1, ERR.EOVERFLOW]);
    c.destroy();
  });
});

test('a 64 MiB WRITE is accepted and a 40 MiB simple-reply READ returns it', async () => {
  const live = pattern(80 * MiB, 103);
  await withInProcess({ live }, async (s) => {
    const c = await RawClient.connect(s.socket);
    await c.handshake('');
    const data = pattern(64 * MiB, 104);
    c.request(CMD.WRITE, { cookie: 1n, flags: FLAG.FUA, offset: MiB, payload: data });
    assert.deepEqual(await c.simpleReply(), { error: 0, cookie: 1n });
    c.request(CMD.READ, { cookie: 2n, offset: 2 * MiB, length: 40 * MiB });
    assert.deepEqual(await c.simpleReply(), { error: 0, cookie: 2n });
    assertSameBytes(await c.read(40 * MiB), data.subarray(MiB, 41 * MiB), 'read back');
    c.destroy();
    const want = Buffer.from(live);
    data.copy(want, MiB);
    assertSameBytes(s.readLive(), want, 'file');
  });
});

test('a BlockError reaches the client as its errno; any other failure as EIO, logged; the server goes on', async () => {
  const live = pattern(MiB, 105);
  const wrap = (d: BlockDevice): BlockDevice => ({
    size: d.size,
    readOnly: d.readOnly,
    preferredBlockSize: d.preferredBlockSize,
    read: (o, l) => (o === 0 ? Promise.reject(new BlockError('ENOMEM', 'cache full')) : o === 512 ? Promise.reject(new Error('disk on fire')) : d.read(o, l)),
    write: () => Promise.reject(new BlockError('ENOSPC', 'change log full')),
    zero: () => {
      throw new TypeError('synchronous bug');
    },
    trim: (o, l, f) => d.trim(o, l, f),
    flush: () => d.flush(),
    blockStatus: (o, l) => d.blockStatus(o, l),
  });
  await withInProcess({ live, wrap }, async (s) => {
    const c = await RawClient.connect(s.socket);
    await c.handshake('', { structured: true });
    c.request(CMD.READ, { cookie: 1n, offset: 0, length: 16 });
    const a = await c.chunk();
    assert.deepEqual([a.cookie, a.type, a.payload.readUInt32BE(0)], [1n, 0x8001, 12]);
    assert.equal(a.payload.subarray(6).toString(), 'cache full');
    c.request(CMD.READ, { cookie: 2n, offset: 512, length: 16 });
    const b = await c.chunk();
    assert.deepEqual([b.cookie, b.payload.readUInt32BE(0)], [2n, ERR.EIO]);
    assert.doesNotMatch(b.payload.toString(), /fire/, 'internal messages stay in the log');
    c.request(CMD.WRITE, { cookie: 3n, offset: 0, payload: Buffer.alloc(10) });
    assert.deepEqual(await c.simpleReply(), { error: ERR.ENOSPC, cookie: 3n });
    c.request(CMD.WRITE_ZEROES, { cookie: 4n, offset: 0, length: 10 });
    assert.deepEqual(await c.simpleReply(), { error: ERR.EIO, cookie: 4n });
    c.request(CMD.READ, { cookie: 5n, offset: 1024, length: 16 });
    const ok = await c.chunk();
    assertSameBytes(ok.payload.subarray(8), live.subarray(1024, 1040), 'a good read after failures');
    c.destroy();
    assert.ok(s.logs.some((l) => /READ at 512 length 16 failed \(EIO\): Error: disk on fire/.test(l)), s.logs.join('\n'));
    assert.ok(s.logs.some((l) => /WRITE_ZEROES .* failed \(EIO\): TypeError: synchronous bug/.test(l)));
  });
});

test('DISC: requests already sent are answered before the server closes', async () => {
  const live = pattern(MiB, 106);
  const wrap = (d: BlockDevice) => delayed(d, () => 200);
  await withInProcess({ live, wrap }, async (s) => {
    const c = await RawClient.connect(s.socket);
    await c.handshake('');
    c.request(CMD.WRITE, { cookie: 1n, offset: 4096, payload: Buffer.alloc(4096, 0x77) });
    c.request(CMD.READ, { cookie: 2n, offset: 0, length: 100 });
    c.request(CMD.DISC, { cookie: 3n });
    const seen: bigint[] = [];
    for (let i = 0; i < 2; i++) {
      const r = await c.simpleReply();
      assert.equal(r.error, 0);
      seen.push(r.cookie);
      if (r.cookie === 2n) assertSameBytes(await c.read(100), live.subarray(0, 100), 'read data');
    }
    assert.deepEqual(seen.sort(), [1n, 2n]);
    assert.equal(await c.closesWithin(2000), true);
    const want = Buffer.from(live);
    want.fill(0x77, 4096, 8192);
    assertSameBytes(s.readLive(), want, 'file');
    assert.ok(!s.logs.some((l) => /socket error/.test(l)), s.logs.join('\n'));
  });
});

test('BLOCK_STATUS with REQ_ONE returns one extent no longer than asked', async () => {
  const live = Buffer.concat([pattern(MiB, 107), Buffer.alloc(MiB)]);
  await withInProcess({ live }, async (s) => {
    const c = await RawClient.connect(s.socket);
    await c.handshake('', { structured: true, meta: true });
    c.request(CMD.BLOCK_STATUS, { cookie: 1n, flags: FLAG.REQ_ONE, offset: MiB - 4096, length: 100_000 });
    const one = await c.chunk();
    assert.deepEqual([one.type, one.flags, one.payload.length], [5, 1, 12]);
    assert.deepEqual([one.payload.readUInt32BE(4), one.payload.readUInt32BE(8)], [4096, 0]);
    c.request(CMD.BLOCK_STATUS, { cookie: 2n, flags: FLAG.REQ_ONE, offset: MiB + 10, length: 1000 });
    const z = await c.chunk();
    assert.deepEqual([z.payload.readUInt32BE(4), z.payload.readUInt32BE(8)], [1000, 2]);
    c.request(CMD.BLOCK_STATUS, { cookie: 3n, offset: MiB - 4096, length: 100_000 });
    const all = await c.chunk();
    assert.deepEqual([all.payload.readUInt32BE(4), all.payload.readUInt32BE(8), all.payload.readUInt32BE(12), all.payload.readUInt32BE(16)], [4096, 0, 100_000 - 4096, 2]);
    c.destroy();
  });
});
