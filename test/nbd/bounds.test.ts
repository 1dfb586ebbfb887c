// The server's limits against hostile clients, in process (where the bytes it
// holds can be watched): clients that never read their replies are throttled,
// then dropped, without tearing a write; other clients are served meanwhile;
// connection count and negotiation are bounded.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { BlockDevice } from '../../src/block.js';
import type { NbdServer } from '../../src/nbd/index.js';
import { MiB, assertSameBytes, pattern } from './harness.js';
import { delayed, withInProcess } from './inprocess.js';
import { CMD, OPT, RawClient } from './raw-client.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Samples server.bytesHeld every few ms until stop() is called; returns the largest value seen. */
function watchHeld(server: NbdServer): { stop(): number } {
  let max = 0;
  const t = setInterval(() => (max = Math.max(max, server.bytesHeld)), 2);
  return {
    stop() {
      clearInterval(t);
      return Math.max(max, server.bytesHeld);
    },
  };
}

async function until(what: string, cond: () => boolean, ms: number): Promise<number> {
  const start = Date.now();
  while (!cond()) {
    if (Date.now() - start > ms) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await sleep(5);
  }
  return Date.now() - start;
}

/** A client past negotiation that reads nothing from now on. */
async function deafClient(socket: string, structured = false): Promise<RawClient> {
  const c = await RawClient.connect(socket);
  await c.handshake('', { structured });
  c.socket.pause();
  return c;
}

test('a client that never reads its READ replies is throttled to its share, dropped after the stall timeout, and gives every byte back', { timeout: 30_000 }, async () => {
  const live = pattern(16 * MiB, 301);
  const limits = { stallTimeoutMs: 600, requestBytesPerConnection: 4 * MiB, replyBytesPerConnection: MiB };
  await withInProcess({ live, server: { limits } }, async (s) => {
    const held = watchHeld(s.server);
    const hostile = [await deafClient(s.socket), await deafClient(s.socket, true)];
    const started = Date.now();
    for (const h of hostile) for (let i = 0; i < 200; i++) h.request(CMD.READ, { cookie: BigInt(i), offset: (i % 16) * MiB, length: MiB });

    // Another client is answered meanwhile.
    await sleep(100);
    const good = await RawClient.connect(s.socket);
    await good.handshake();
    good.request(CMD.READ, { cookie: 9n, offset: 5 * MiB, length: MiB });
    assert.deepEqual(await good.simpleReply(), { error: 0, cookie: 9n });
    assertSameBytes(await good.read(MiB), live.subarray(5 * MiB, 6 * MiB), 'read by a well-behaved client');

    const waited = await until('the deaf clients to be dropped', () => s.server.connections === 1, 10_000);
    const maxHeld = held.stop();
    assert.ok(Date.now() - started >= limits.stallTimeoutMs, `dropped after ${waited} ms, before the stall timeout`);
    // Per connection: its request share, its reply share, and what was in flight when reading stopped.
    const perConnection = limits.requestBytesPerConnection + limits.replyBytesPerConnection + MiB + 64 * 1024;
    assert.ok(maxHeld <= 2 * perConnection + MiB, `held ${maxHeld} bytes for two deaf clients and one reader`);
    assert.ok(maxHeld >= 2 * MiB, `the deaf clients did get replies queued (${maxHeld})`);
    assert.equal(s.logs.filter((l) => /took none of its replies for \d+ ms .*dropping the connection/.test(l)).length, 2, s.logs.join('\n'));
    assert.equal(s.server.bytesHeld, 0, 'every byte given back');

    // The server discarded what it had not sent: far less than the 200 MiB asked for.
    for (const h of hostile) {
      let got = 0;
      h.socket.on('data', (d: Buffer) => (got += d.length));
      h.socket.resume();
      await h.closed;
      assert.ok(got < 16 * MiB, `a dropped client still received ${got} bytes`);
    }
    // The good client still works.
    good.request(CMD.READ, { cookie: 10n, offset: 0, length: 4096 });
    assert.deepEqual(await good.simpleReply(), { error: 0, cookie: 10n });
    assertSameBytes(await good.read(4096), live.subarray(0, 4096), 'second read');
    good.destroy();
  });
});

test('a fast writer to a slow device holds no more than its request share', { timeout: 30_000 }, async () => {
  const live = pattern(16 * MiB, 302);
  const limits = { requestBytesPerConnection: 2 * MiB };
  const wrap = (d: BlockDevice) => delayed(d, () => 5);
  await withInProcess({ live, wrap, server: { limits } }, async (s) => {
    const held = watchHeld(s.server);
    const c = await RawClient.connect(s.socket);
    await c.handshake();
    const want = Buffer.from(live);
    for (let i = 0; i < 64; i++) {
      const data = pattern(256 * 1024, 400 + i);
      data.copy(want, i * 256 * 1024);
      c.request(CMD.WRITE, { cookie: BigInt(i), offset: i * 256 * 1024, payload: data });
    }
    const seen = new Set<bigint>();
    for (let i = 0; i < 64; i++) {
      const r = await c.simpleReply();
      assert.equal(r.error, 0);
      seen.add(r.cookie);
    }
    assert.equal(seen.size, 64);
    const maxHeld = held.stop();
    assert.ok(maxHeld <= limits.requestBytesPerConnection + 64 * 1024, `held ${maxHeld} bytes`);
    assert.ok(maxHeld >= 512 * 1024, `requests did overlap (${maxHeld})`);
    assertSameBytes(s.readLive(), want, 'file');
    c.destroy();
  });
});

test('the server-wide budget holds back other connections until a deaf client is dropped', { timeout: 30_000 }, async () => {
  const live = pattern(8 * MiB, 303);
  const limits = { stallTimeoutMs: 500, totalBytes: 3 * MiB, requestBytesPerConnection: 3 * MiB, replyBytesPerConnection: MiB };
  await withInProcess({ live, server: { limits } }, async (s) => {
    const held = watchHeld(s.server);
    const deaf = await deafClient(s.socket);
    for (let i = 0; i < 50; i++) deaf.request(CMD.READ, { cookie: BigInt(i), offset: 0, length: MiB });
    await until('the deaf client to fill the budget', () => s.server.bytesHeld >= 3 * MiB, 5000);
    const good = await RawClient.connect(s.socket);
    await good.handshake();
    const asked = Date.now();
    good.request(CMD.READ, { cookie: 1n, offset: MiB, length: MiB });
    assert.deepEqual(await good.simpleReply(), { error: 0, cookie: 1n });
    assertSameBytes(await good.read(MiB), live.subarray(MiB, 2 * MiB), 'read after the budget freed');
    const waited = Date.now() - asked;
    assert.ok(waited >= 200, `answered after ${waited} ms: the budget was not enforced`);
    assert.ok(s.logs.some((l) => /dropping the connection/.test(l)));
    const maxHeld = held.stop();
    assert.ok(maxHeld <= limits.totalBytes + 64 * 1024, `held ${maxHeld} bytes, over the ${limits.totalBytes}-byte total`);
    good.destroy();
  });
});

test('a dropped connection tears no write: each one landed whole or not at all', { timeout: 30_000 }, async () => {
  const live = pattern(16 * MiB, 304);
  const limits = { stallTimeoutMs: 400, requestBytesPerConnection: 4 * MiB, replyBytesPerConnection: 512 * 1024 };
  const wrap = (d: BlockDevice) => delayed(d, () => 30);
  await withInProcess({ live, wrap, server: { limits } }, async (s) => {
    const c = await deafClient(s.socket);
    const W = 256 * 1024;
    const writes: Array<{ offset: number; data: Buffer }> = [];
    for (let i = 0; i < 12; i++) {
      // Reads fill the reply backlog so the connection stalls; writes land in between.
      c.request(CMD.READ, { cookie: BigInt(1000 + i), offset: 0, length: MiB });
      const w = { offset: (8 + (i % 8)) * MiB + Math.floor(i / 8) * W, data: pattern(W, 500 + i) };
      writes.push(w);
      c.request(CMD.WRITE, { cookie: BigInt(i), offset: w.offset, payload: w.data });
    }
    // A last WRITE whose payload never finishes arriving.
    const partial = { offset: 4 * MiB, data: pattern(W, 599) };
    c.request(CMD.WRITE, { cookie: 99n, offset: partial.offset, length: W });
    c.write(partial.data.subarray(0, W / 2));
    await until('the connection to be dropped and its requests finished', () => s.server.connections === 0, 10_000);
    assert.ok(s.logs.some((l) => /dropping the connection/.test(l)), s.logs.join('\n'));
    const file = s.readLive();
    let landed = 0;
    for (const w of writes) {
      const now = file.subarray(w.offset, w.offset + W);
      const old = live.subarray(w.offset, w.offset + W);
      if (now.equals(w.data)) landed++;
      else assertSameBytes(now, old, `write at ${w.offset}: neither whole nor untouched`);
    }
    assert.ok(landed > 0, 'some writes were served before the drop');
    assertSameBytes(file.subarray(partial.offset, partial.offset + W), live.subarray(partial.offset, partial.offset + W), 'the half-sent write');
    assert.equal(s.server.bytesHeld, 0);
    c.destroy();
  });
});

test('connections beyond the limit are closed at once; a freed slot is usable again', { timeout: 30_000 }, async () => {
  await withInProcess({ live: pattern(MiB, 305), server: { limits: { maxConnections: 2 } } }, async (s) => {
    const a = await RawClient.connect(s.socket);
    const b = await RawClient.connect(s.socket);
    await a.handshake();
    await b.handshake();
    const c = await RawClient.connect(s.socket);
    assert.equal(await c.closesWithin(2000), true, 'a third connection is closed');
    assert.ok(s.logs.some((l) => /2 connections open, the limit: refusing a new one/.test(l)), s.logs.join('\n'));
    a.destroy();
    await until('a slot to free', () => s.server.connections === 1, 2000);
    const d = await RawClient.connect(s.socket);
    await d.handshake();
    d.request(CMD.READ, { cookie: 1n, offset: 0, length: 16 });
    assert.deepEqual(await d.simpleReply(), { error: 0, cookie: 1n });
    b.destroy();
    d.destroy();
  });
});

test('negotiation is bounded: a silent client is dropped, and option replies a client does not read stop the reading of options', { timeout: 30_000 }, async () => {
  const snapshots: Record<string, Buffer> = {};
  for (let i = 0; i < 20; i++) snapshots[`snapshot-with-a-long-name-${i}`] = pattern(4096, 310 + i);
  const server = { limits: { stallTimeoutMs: 400 }, maxOptions: 1_000_000 };
  await withInProcess({ live: pattern(MiB, 306), snapshots, server }, async (s) => {
    const silent = await RawClient.connect(s.socket);
    await silent.greeting();
    const t0 = Date.now();
    assert.equal(await silent.closesWithin(5000), true, 'a silent client is dropped');
    assert.ok(Date.now() - t0 >= 300, 'not before the stall timeout');

    // 20,000 LISTs would be answered with about 20 MB; the server stops reading while its answers pile up.
    const flood = await RawClient.connect(s.socket);
    await flood.greeting();
    flood.clientFlags(3);
    flood.socket.pause();
    const h = Buffer.alloc(16);
    h.writeBigUInt64BE(0x49484156454f5054n, 0);
    h.writeUInt32BE(OPT.LIST, 8);
    flood.write(Buffer.concat(Array.from({ length: 20_000 }, () => h)));
    await until('the flooding client to be dropped', () => s.server.connections === 0, 10_000);
    let got = 0;
    flood.socket.on('data', (d: Buffer) => (got += d.length));
    flood.socket.resume();
    await flood.closed;
    assert.ok(got < 4 * MiB, `the server queued ${got} bytes of option replies`);
    assert.ok(got > 0);
    assert.equal(s.logs.filter((l) => /no progress in negotiation for \d+ ms: dropping the connection/.test(l)).length, 2, s.logs.join('\n'));
  });
});
