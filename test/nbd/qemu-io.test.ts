// qemu-io against the server: QEMU's NBD client with structured replies,
// base:allocation and up to 16 requests in flight.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { requireTool } from '../helpers/cli.js';
import { MiB, assertSameBytes, pattern, runOk, run, withServer } from './harness.js';

const skip = requireTool('qemu-io', 'qemu-utils');
const SIZE = 8 * MiB;

function expectWith(base: Buffer, edits: Array<[number, Buffer]>): Buffer {
  const b = Buffer.from(base);
  for (const [off, data] of edits) data.copy(b, off);
  return b;
}

test('qemu-io write -P then read -P round-trips and lands in the file', { skip }, async () => {
  await withServer({ live: pattern(SIZE, 1) }, async (s) => {
    await runOk('qemu-io', ['-f', 'raw', '-c', 'write -P 0xab 1M 1M', '-c', 'read -P 0xab 1M 1M', s.uri()]);
    assertSameBytes(s.readLive(), expectWith(s.liveData, [[MiB, Buffer.alloc(MiB, 0xab)]]), 'file after write');
  });
});

test('qemu-io unaligned writes change exactly the bytes written', { skip }, async () => {
  await withServer({ live: pattern(SIZE, 2) }, async (s) => {
    await runOk('qemu-io', ['-f', 'raw', '-c', 'write -P 0x5a 1000 3000', '-c', 'write -P 0x17 8388000 607', '-c', 'read -P 0x5a 1000 3000', s.uri()]);
    const want = expectWith(s.liveData, [
      [1000, Buffer.alloc(3000, 0x5a)],
      [8388000, Buffer.alloc(607, 0x17)],
    ]);
    assertSameBytes(s.readLive(), want, 'file after unaligned writes');
  });
});

test('qemu-io aio_write + aio_flush: concurrent writes all land', { skip }, async () => {
  await withServer({ live: pattern(SIZE, 3) }, async (s) => {
    const cmds = ['-c', 'aio_write -P 1 0 64k', '-c', 'aio_write -P 2 64k 64k', '-c', 'aio_write -P 3 5M 1M', '-c', 'aio_flush'];
    cmds.push('-c', 'read -P 1 0 64k', '-c', 'read -P 2 64k 64k', '-c', 'read -P 3 5M 1M');
    await runOk('qemu-io', ['-f', 'raw', ...cmds, s.uri()]);
    const want = expectWith(s.liveData, [
      [0, Buffer.alloc(65536, 1)],
      [65536, Buffer.alloc(65536, 2)],
      [5 * MiB, Buffer.alloc(MiB, 3)],
    ]);
    assertSameBytes(s.readLive(), want, 'file after aio writes');
  });
});

test('qemu-io write -z makes the range read as zeroes', { skip }, async () => {
  await withServer({ live: pattern(SIZE, 4) }, async (s) => {
    await runOk('qemu-io', ['-f', 'raw', '-c', 'write -z 1M 1M', '-c', 'read -P 0 1M 1M', s.uri()]);
    assertSameBytes(s.readLive(), expectWith(s.liveData, [[MiB, Buffer.alloc(MiB)]]), 'file after write -z');
  });
});

test('qemu-io discard succeeds and, as vsnap promises, keeps the data', { skip }, async () => {
  await withServer({ live: pattern(SIZE, 5) }, async (s) => {
    await runOk('qemu-io', ['-f', 'raw', '-c', 'discard 2M 64k', '-c', 'flush', s.uri()]);
    assertSameBytes(s.readLive(), s.liveData, 'file after discard');
  });
});

test('qemu-io reads a snapshot export with -r and cannot open it read-write', { skip }, async () => {
  const snap = Buffer.concat([Buffer.alloc(MiB, 0xcd), pattern(SIZE - MiB, 6, MiB)]);
  await withServer({ live: pattern(SIZE, 7), snapshots: { s1: snap } }, async (s) => {
    await runOk('qemu-io', ['-r', '-f', 'raw', '-c', 'read -P 0xcd 0 1M', s.uri('snapshot/s1')]);
    const w = await run('qemu-io', ['-f', 'raw', '-c', 'write 0 512', s.uri('snapshot/s1')]);
    assert.notEqual(w.code, 0, 'a read-write open of a read-only export must fail');
    assert.match(w.stderr, /Permission denied|read-only/i);
    assertSameBytes(s.readLive(), s.liveData, 'live file untouched');
  });
});
