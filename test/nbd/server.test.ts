// The listening side: socket file handling, TCP, connection counting, and
// close() answering what is in flight.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import type { BlockDevice } from '../../src/block.js';
import { createNbdServer } from '../../src/nbd/index.js';
import { tmpdir } from '../helpers/cli.js';
import { FileExportProvider } from '../helpers/file-device.js';
import { MiB, assertSameBytes, pattern } from './harness.js';
import { delayed, withInProcess } from './inprocess.js';
import { CMD, RawClient } from './raw-client.js';

test('the unix socket is created mode 0600 and removed by close()', async () => {
  await withInProcess({ live: pattern(MiB, 111) }, async (s) => {
    const st = fs.statSync(s.socket);
    assert.ok(st.isSocket());
    assert.equal(st.mode & 0o777, 0o600);
    await s.server.close();
    assert.equal(fs.existsSync(s.socket), false);
  });
});

test('a stale socket file is replaced; a live socket or a regular file is not', async () => {
  const tmp = tmpdir('vsnap-nbd-sock-');
  const img = path.join(tmp.dir, 'live.img');
  fs.writeFileSync(img, pattern(MiB, 112));
  const provider = await FileExportProvider.open(img);
  try {
    const stale = path.join(tmp.dir, 'stale.sock');
    // A server killed with SIGKILL leaves its socket file behind with nobody listening.
    const child = spawn(process.execPath, ['-e', `require('net').createServer().listen(${JSON.stringify(stale)}, () => console.log('up'))`]);
    await new Promise<void>((r) => child.stdout.once('data', () => r()));
    child.kill('SIGKILL');
    await new Promise((r) => child.once('exit', r));
    assert.ok(fs.lstatSync(stale).isSocket(), 'stale socket file left behind');
    const a = createNbdServer(provider);
    assert.equal(await a.listen({ socketPath: stale }), stale);
    const b = createNbdServer(provider);
    await assert.rejects(b.listen({ socketPath: stale }), /in use/);
    await a.close();
    const regular = path.join(tmp.dir, 'not-a-socket');
    fs.writeFileSync(regular, 'keep me');
    await assert.rejects(createNbdServer(provider).listen({ socketPath: regular }), /not a socket/);
    assert.equal(fs.readFileSync(regular, 'utf8'), 'keep me');
  } finally {
    await provider.close();
    tmp.cleanup();
  }
});

test('listening on TCP resolves host:port and serves', async () => {
  const tmp = tmpdir('vsnap-nbd-tcp-');
  const img = path.join(tmp.dir, 'live.img');
  const live = pattern(MiB, 113);
  fs.writeFileSync(img, live);
  const provider = await FileExportProvider.open(img);
  const server = createNbdServer(provider);
  try {
    const addr = await server.listen({ host: '127.0.0.1', port: 0 });
    const m = /^127\.0\.0\.1:(\d+)$/.exec(addr);
    assert.ok(m, addr);
    const c = await RawClient.connectTcp('127.0.0.1', Number(m[1]));
    await c.handshake('live');
    c.request(CMD.READ, { cookie: 1n, offset: 10, length: 10 });
    assert.deepEqual(await c.simpleReply(), { error: 0, cookie: 1n });
    assertSameBytes(await c.read(10), live.subarray(10, 20), 'data over TCP');
    c.destroy();
  } finally {
    await server.close();
    await provider.close();
    tmp.cleanup();
  }
});

test('connections counts open clients and drops back to zero when they leave', async () => {
  await withInProcess({ live: pattern(MiB, 114) }, async (s) => {
    assert.equal(s.server.connections, 0);
    const a = await RawClient.connect(s.socket);
    const b = await RawClient.connect(s.socket);
    await a.handshake();
    await b.greeting();
    assert.equal(s.server.connections, 2);
    a.destroy();
    b.destroy();
    await a.closed;
    await b.closed;
    for (let i = 0; i < 100 && s.server.connections > 0; i++) await new Promise((r) => setTimeout(r, 10));
    assert.equal(s.server.connections, 0);
  });
});

test('close() answers requests in flight, then closes every connection', async () => {
  const live = pattern(MiB, 115);
  const wrap = (d: BlockDevice) => delayed(d, () => 300);
  await withInProcess({ live, wrap }, async (s) => {
    const c = await RawClient.connect(s.socket);
    await c.handshake();
    const idle = await RawClient.connect(s.socket);
    await idle.greeting();
    c.request(CMD.WRITE, { cookie: 1n, offset: 0, payload: Buffer.alloc(512, 0x99) });
    await new Promise((r) => setTimeout(r, 50));
    const closing = s.server.close();
    assert.deepEqual(await c.simpleReply(), { error: 0, cookie: 1n });
    await closing;
    assert.equal(s.server.connections, 0);
    assert.equal(await c.closesWithin(1000), true);
    assert.equal(await idle.closesWithin(1000), true);
    const want = Buffer.from(live);
    want.fill(0x99, 0, 512);
    assertSameBytes(s.readLive(), want, 'file');
  });
});
