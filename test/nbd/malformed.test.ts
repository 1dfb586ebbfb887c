// Requests no well-behaved client sends, over a raw socket: the server must
// answer or disconnect as the protocol says, keep serving others, and leave
// every byte outside a request's range (and inside a refused one) alone.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { MiB, assertSameBytes, pattern } from './harness.js';
import { withInProcess } from './inprocess.js';
import { CMD, ERR, FLAG, RawClient } from './raw-client.js';

const SIZE = 2 * MiB;

/** After a misbehaving connection, a fresh client still gets correct data. */
async function stillServes(socket: string, live: Buffer): Promise<void> {
  const c = await RawClient.connect(socket);
  await c.handshake('', { structured: false });
  c.request(CMD.READ, { cookie: 99n, offset: 4096, length: 8192 });
  const r = await c.simpleReply();
  assert.deepEqual(r, { error: 0, cookie: 99n });
  assertSameBytes(await c.read(8192), live.subarray(4096, 4096 + 8192), 'read on a fresh connection');
  c.destroy();
}

test('bad request magic disconnects that client only', async () => {
  const live = pattern(SIZE, 71);
  await withInProcess({ live }, async (s) => {
    const c = await RawClient.connect(s.socket);
    await c.handshake();
    const junk = Buffer.alloc(28, 0x41);
    c.write(junk);
    assert.equal(await c.closesWithin(2000), true, 'server closes the connection');
    assert.ok(s.logs.some((l) => /bad request magic/.test(l)));
    await stillServes(s.socket, live);
    assertSameBytes(s.readLive(), live, 'file');
  });
});

test('a truncated request header followed by EOF leaves the server serving', async () => {
  const live = pattern(SIZE, 72);
  await withInProcess({ live }, async (s) => {
    const c = await RawClient.connect(s.socket);
    await c.handshake();
    c.write(Buffer.from([0x25, 0x60, 0x95, 0x13, 0, 0, 0, 1, 0, 0]));
    c.end();
    await c.closed;
    await stillServes(s.socket, live);
    assertSameBytes(s.readLive(), live, 'file');
  });
});

test('a WRITE whose payload is cut short writes nothing', async () => {
  const live = pattern(SIZE, 73);
  await withInProcess({ live }, async (s) => {
    const c = await RawClient.connect(s.socket);
    await c.handshake();
    c.request(CMD.WRITE, { offset: 8192, length: 65536 });
    c.write(Buffer.alloc(30000, 0xee));
    c.end();
    await c.closed;
    await stillServes(s.socket, live);
    assertSameBytes(s.readLive(), live, 'file');
    assert.ok(s.logs.some((l) => /inside a WRITE payload \(30000 bytes/.test(l)), s.logs.join('\n'));
  });
});

test('a WRITE past the end fails with ENOSPC, its payload is consumed, the next request is answered', async () => {
  const live = pattern(SIZE, 74);
  await withInProcess({ live }, async (s) => {
    const c = await RawClient.connect(s.socket);
    await c.handshake();
    // Straddles the end: even the part inside the export must not be written.
    c.request(CMD.WRITE, { cookie: 1n, offset: SIZE - 1000, payload: Buffer.alloc(4000, 0xee) });
    c.request(CMD.READ, { cookie: 2n, offset: SIZE - 1000, length: 1000 });
    assert.deepEqual(await c.simpleReply(), { error: ERR.ENOSPC, cookie: 1n });
    assert.deepEqual(await c.simpleReply(), { error: 0, cookie: 2n });
    assertSameBytes(await c.read(1000), live.subarray(SIZE - 1000), 'read after the refused write');
    c.destroy();
    assertSameBytes(s.readLive(), live, 'file (same size, same bytes)');
  });
});

test('a WRITE to a read-only export fails with EPERM and its payload is consumed', async () => {
  const live = pattern(SIZE, 75);
  const snap = pattern(SIZE, 76);
  await withInProcess({ live, snapshots: { s1: snap } }, async (s) => {
    const c = await RawClient.connect(s.socket);
    const { flags } = await c.handshake('snapshot/s1');
    assert.equal(flags & 2, 2, 'READ_ONLY advertised');
    c.request(CMD.WRITE, { cookie: 5n, offset: 0, payload: Buffer.alloc(70000, 1) });
    c.request(CMD.WRITE_ZEROES, { cookie: 6n, offset: 0, length: 4096 });
    c.request(CMD.TRIM, { cookie: 7n, offset: 0, length: 4096 });
    c.request(CMD.READ, { cookie: 8n, offset: 0, length: 16 });
    assert.deepEqual(await c.simpleReply(), { error: ERR.EPERM, cookie: 5n });
    assert.deepEqual(await c.simpleReply(), { error: ERR.EPERM, cookie: 6n });
    assert.deepEqual(await c.simpleReply(), { error: ERR.EPERM, cookie: 7n });
    assert.deepEqual(await c.simpleReply(), { error: 0, cookie: 8n });
    assertSameBytes(await c.read(16), snap.subarray(0, 16), 'snapshot data');
    c.destroy();
  });
});

test('a READ larger than 64 MiB fails with EOVERFLOW and the connection goes on', async () => {
  const live = pattern(SIZE, 77);
  await withInProcess({ live }, async (s) => {
    const c = await RawClient.connect(s.socket);
    await c.handshake();
    c.request(CMD.READ, { cookie: 1n, offset: 0, length: 0xffffffff });
    assert.deepEqual(await c.simpleReply(), { error: ERR.EOVERFLOW, cookie: 1n });
    c.request(CMD.READ, { cookie: 2n, offset: 0, length: 4 });
    assert.deepEqual(await c.simpleReply(), { error: 0, cookie: 2n });
    assertSameBytes(await c.read(4), live.subarray(0, 4), 'data');
    c.destroy();
  });
});

test('a WRITE header claiming more than 64 MiB gets an error and a disconnect, writing nothing', async () => {
  const live = pattern(SIZE, 78);
  await withInProcess({ live }, async (s) => {
    const c = await RawClient.connect(s.socket);
    await c.handshake();
    c.request(CMD.WRITE, { cookie: 3n, offset: 0, length: 0xfffffff0 });
    c.write(Buffer.alloc(65536, 0xee));
    assert.deepEqual(await c.simpleReply(), { error: ERR.EOVERFLOW, cookie: 3n });
    assert.equal(await c.closesWithin(2000), true);
    await stillServes(s.socket, live);
    assertSameBytes(s.readLive(), live, 'file');
  });
});

test('offsets near 2^64 are refused, not wrapped around', async () => {
  const live = pattern(SIZE, 79);
  await withInProcess({ live }, async (s) => {
    const c = await RawClient.connect(s.socket);
    await c.handshake();
    c.request(CMD.READ, { cookie: 1n, offset: 0xffffffffffffff00n, length: 0x200 });
    c.request(CMD.WRITE, { cookie: 2n, offset: 0xfffffffffffff000n, payload: Buffer.alloc(0x1000, 0xee) });
    c.request(CMD.WRITE_ZEROES, { cookie: 3n, offset: 2n ** 53n, length: 1 });
    assert.deepEqual(await c.simpleReply(), { error: ERR.EINVAL, cookie: 1n });
    assert.deepEqual(await c.simpleReply(), { error: ERR.ENOSPC, cookie: 2n });
    assert.deepEqual(await c.simpleReply(), { error: ERR.ENOSPC, cookie: 3n });
    c.destroy();
    assertSameBytes(s.readLive(), live, 'file');
  });
});

test('unknown commands, unknown flags and misused flags get EINVAL and the connection goes on', async () => {
  const live = pattern(SIZE, 80);
  await withInProcess({ live }, async (s) => {
    const c = await RawClient.connect(s.socket);
    await c.handshake();
    c.request(42, { cookie: 1n, offset: 0, length: 512 });
    c.request(CMD.READ, { cookie: 2n, flags: 0x100, offset: 0, length: 512 });
    c.request(CMD.READ, { cookie: 3n, flags: FLAG.REQ_ONE, offset: 0, length: 512 });
    c.request(CMD.WRITE, { cookie: 4n, flags: FLAG.FAST_ZERO, offset: 0, payload: Buffer.alloc(512, 0xee) });
    c.request(CMD.FLUSH, { cookie: 5n, offset: 512, length: 0 });
    // DF needs structured replies, which this connection did not negotiate.
    c.request(CMD.READ, { cookie: 6n, flags: FLAG.DF, offset: 0, length: 512 });
    c.request(CMD.BLOCK_STATUS, { cookie: 7n, offset: 0, length: 512 });
    for (const cookie of [1n, 2n, 3n, 4n, 5n, 6n, 7n]) assert.deepEqual(await c.simpleReply(), { error: ERR.EINVAL, cookie });
    c.request(CMD.FLUSH, { cookie: 8n });
    assert.deepEqual(await c.simpleReply(), { error: 0, cookie: 8n });
    c.destroy();
    assertSameBytes(s.readLive(), live, 'file');
  });
});

test('zero-length requests are answered, never a reason to disconnect', async () => {
  const live = pattern(SIZE, 81);
  await withInProcess({ live }, async (s) => {
    const c = await RawClient.connect(s.socket);
    await c.handshake('', { structured: true, meta: true });
    c.request(CMD.READ, { cookie: 1n, offset: 100, length: 0 });
    const none = await c.chunk();
    assert.deepEqual([none.cookie, none.type, none.flags, none.payload.length], [1n, 0, 1, 0]);
    c.request(CMD.WRITE, { cookie: 2n, offset: SIZE, length: 0 });
    assert.deepEqual(await c.simpleReply(), { error: 0, cookie: 2n });
    c.request(CMD.BLOCK_STATUS, { cookie: 3n, offset: 0, length: 0 });
    const err = await c.chunk();
    assert.deepEqual([err.cookie, err.type, err.payload.readUInt32BE(0)], [3n, 0x8001, ERR.EINVAL]);
    c.destroy();
    assertSameBytes(s.readLive(), live, 'file');
  });
});
