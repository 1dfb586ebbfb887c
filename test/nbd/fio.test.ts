// fio's nbd engine: random 4 KiB writes at queue depth 16, read back and
// checked with crc32c by fio, and the file checked by the test.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { requireTool } from '../helpers/cli.js';
import { MiB, assertSameBytes, pattern, runOk, withServer } from './harness.js';

const skip = requireTool('fio', 'fio');
const SIZE = 8 * MiB;
const FIO_SIZE = 4 * MiB;
const BS = 4096;

test('fio nbd engine: random writes verify with crc32c and land at their offsets', { skip }, async () => {
  await withServer({ live: pattern(SIZE, 41) }, async (s) => {
    const r = await runOk('fio', [
      '--name=nbd-verify',
      '--ioengine=nbd',
      `--uri=${s.uri()}`,
      '--rw=randwrite',
      `--bs=${BS}`,
      `--size=${FIO_SIZE}`,
      '--iodepth=16',
      '--verify=crc32c',
      '--do_verify=1',
      // fio otherwise leaves a verify state file in its working directory.
      '--verify_state_save=0',
      '--output-format=json',
    ], { timeoutMs: 60_000, cwd: s.dir });
    const out = JSON.parse(r.stdout.slice(r.stdout.indexOf('{'))) as { jobs: Array<{ error: number; write: { io_bytes: number }; read: { io_bytes: number } }> };
    assert.equal(out.jobs[0].error, 0);
    assert.equal(out.jobs[0].write.io_bytes, FIO_SIZE);
    assert.equal(out.jobs[0].read.io_bytes, FIO_SIZE, 'fio read everything back to verify it');

    // Every block fio wrote starts with its verify header: magic 0xacca, and the block's own offset.
    const file = s.readLive();
    for (let off = 0; off < FIO_SIZE; off += BS) {
      assert.equal(file.readUInt16LE(off), 0xacca, `verify magic at ${off}`);
      assert.equal(file.readBigUInt64LE(off + 16), BigInt(off), `verify header offset at ${off}`);
    }
    assertSameBytes(file.subarray(FIO_SIZE), s.liveData.subarray(FIO_SIZE), 'bytes fio did not touch');
  });
});
