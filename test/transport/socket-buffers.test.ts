// Larger kernel buffers on the worker data link (native/socket_buffers.c):
// set on a socket, refused (and reported, not thrown) on anything else, and
// a forked worker's link still carries frames larger than the default buffer.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import net from 'node:net';
import path from 'node:path';
import { spawn } from 'node:child_process';
import { enlargeSocketBuffers, LINK_SOCKET_BUFFER, setSocketBuffers, socketBuffers } from '../../src/io/socket-buffers.js';

test('enlargeSocketBuffers: 0 on a socketpair end, ENOTSOCK on a regular file', async () => {
  // child_process makes its 'pipe' stdio from a unix socketpair, as for the data link.
  const child = spawn(process.execPath, ['-e', 'process.stdin.resume()'], { stdio: ['pipe', 'ignore', 'ignore'] });
  try {
    const fd = (child.stdin as unknown as { _handle?: { fd?: number } })._handle?.fd;
    assert.equal(typeof fd, 'number');
    assert.equal(enlargeSocketBuffers(fd, LINK_SOCKET_BUFFER), 0);
  } finally {
    child.kill();
  }
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vsnap-sockbuf-'));
  const fd = fs.openSync(path.join(dir, 'f'), 'w');
  try {
    assert.equal(enlargeSocketBuffers(fd), os.constants.errno.ENOTSOCK);
  } finally {
    fs.closeSync(fd);
    fs.rmSync(dir, { recursive: true, force: true });
  }
  assert.equal(enlargeSocketBuffers(undefined), -1);
  assert.throws(() => enlargeSocketBuffers(0, 0), /positive size/);
  assert.equal(socketBuffers(undefined), undefined);
});

test('a unix socket with enlarged buffers carries 8 MiB intact', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vsnap-sockbuf-'));
  const sock = path.join(dir, 's');
  const data = Buffer.alloc(8 << 20);
  for (let i = 0; i < data.length; i += 4) data.writeUInt32LE(i, i);
  const server = net.createServer();
  try {
    const got = new Promise<Buffer>((resolve) => {
      server.on('connection', (c) => {
        assert.equal(enlargeSocketBuffers((c as unknown as { _handle?: { fd?: number } })._handle?.fd), 0);
        const parts: Buffer[] = [];
        c.on('data', (b: Buffer) => parts.push(b));
        c.on('end', () => resolve(Buffer.concat(parts)));
      });
    });
    await new Promise<void>((r) => server.listen(sock, r));
    const c = net.connect(sock);
    await new Promise<void>((r) => c.on('connect', () => r()));
    assert.equal(enlargeSocketBuffers((c as unknown as { _handle?: { fd?: number } })._handle?.fd), 0);
    c.end(data);
    assert.ok((await got).equals(data));
  } finally {
    server.close();
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('setSocketBuffers sizes one direction and leaves the other as it was', () => {
  const child = spawn(process.execPath, ['-e', 'process.stdin.resume()'], { stdio: ['pipe', 'ignore', 'ignore'] });
  try {
    const fd = (child.stdin as unknown as { _handle?: { fd?: number } })._handle?.fd;
    const before = socketBuffers(fd)!;
    assert.equal(setSocketBuffers(fd, 1 << 20, 0), 0);
    const after = socketBuffers(fd)!;
    assert.equal(after.send, 2 << 20, 'the kernel reports twice what was asked');
    assert.equal(after.receive, before.receive, 'receive untouched');
    assert.equal(setSocketBuffers(fd, 0, 1 << 20), 0);
    assert.deepEqual(socketBuffers(fd), { send: 2 << 20, receive: 2 << 20 });
  } finally {
    child.stdin!.destroy(); // its pipe would keep this test file's process alive
    child.kill();
  }
});
