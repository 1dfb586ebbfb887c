// A change-log append that fails (ENOSPC part-way through the write, EIO) is
// undone: the file is cut back to the last durable batch, the error keeps its
// errno, and appends work again at once. When even the cut fails, the tail
// beyond the length recorded at the orderly close is dropped at the next open
// instead of being taken for damage (docs/formats.md "Appends", "Recovery").
// Faults are injected by replacing FileHandle methods, which every handle
// shares through its prototype.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { open as openFh, type FileHandle } from 'node:fs/promises';
import path from 'node:path';
import { OperationError } from '../../src/errors.js';
import { ChangeLog, CLOG_HEADER_SIZE, RECORD_HEADER_SIZE, type ChangeLogHeader, type ChangeLogOpenOptions } from '../../src/formats/changelog.js';
import { blockData, escapeRe, rejectsIntegrity, tempDir } from './util.js';

const BS = 4096;
const RS = RECORD_HEADER_SIZE + BS;
const BLOCKS = 256;
const FP = 'fedcba9876543210'.repeat(4);
const HDR: ChangeLogHeader = { snapshotId: 7, partitionId: 'p0', blockSize: BS, fingerprint: FP, createdAtMs: 1_700_000_000_000 };

function opts(over: Partial<ChangeLogOpenOptions> = {}): ChangeLogOpenOptions {
  return { expect: { snapshotId: 7, partitionId: 'p0', blockSize: BS, fingerprint: FP }, blockCount: BLOCKS, cleanClose: true, ...over };
}

type Proto = { writev: (this: FileHandle, bufs: Buffer[], pos: number) => Promise<unknown>; truncate: (this: FileHandle, len?: number) => Promise<void> };

/** Run `fn` with FileHandle methods replaced; always restores them. */
async function withFaults(fn: (proto: Proto, orig: Proto) => Promise<void>): Promise<void> {
  const probe = await openFh('/dev/null', 'r');
  const proto = Object.getPrototypeOf(probe) as Proto;
  await probe.close();
  const orig: Proto = { writev: proto.writev, truncate: proto.truncate };
  try {
    await fn(proto, orig);
  } finally {
    proto.writev = orig.writev;
    proto.truncate = orig.truncate;
  }
}

const errno = (code: string, syscall: string) => Object.assign(new Error(`${code}: injected, ${syscall}`), { code, syscall });

/** A writev that lands the first record header and half its data, then fails as a full disk does. */
function partialThenEnospc(orig: Proto): Proto['writev'] {
  return async function (this: FileHandle, bufs: Buffer[], pos: number) {
    await orig.writev.call(this, [bufs[0], bufs[1].subarray(0, bufs[1].length / 2)], pos);
    throw errno('ENOSPC', 'write');
  };
}

const rec = (b: number, gen = 0) => ({ block: b, data: blockData(b, BS, gen) });

test('ENOSPC part-way through an append: the batch is undone, the errno is ENOSPC, and the next append works', async () => {
  const { dir, cleanup } = tempDir();
  try {
    await withFaults(async (proto, orig) => {
      const file = path.join(dir, 'p0.clog');
      const log = await ChangeLog.create(file, HDR, { blockCount: BLOCKS });
      await log.appendBatch([rec(1), rec(2)]);
      const good = log.byteLength;
      proto.writev = partialThenEnospc(orig);
      const err = await log.appendBatch([rec(3), rec(4)]).then(
        () => assert.fail('the append succeeded'),
        (e: unknown) => e,
      );
      assert.ok(err instanceof OperationError, String(err));
      assert.equal(err.errno, 'ENOSPC');
      assert.match(err.message, new RegExp(`^${escapeRe(file).source}: appending 2 record\\(s\\) at offset ${good} failed: ENOSPC`));
      assert.equal(fs.statSync(file).size, good, 'the half-written batch is cut off');
      assert.equal(log.byteLength, good);
      assert.ok(!log.has(3) && !log.has(4));
      // Space is back: the very next append works, with the next batch number.
      proto.writev = orig.writev;
      await log.appendBatch([rec(3), rec(4)]);
      const len = log.byteLength;
      assert.equal(len, good + 2 * RS);
      await log.close();
      const again = await ChangeLog.open(file, opts({ expectedLength: len }));
      for (const b of [1, 2, 3, 4]) assert.deepEqual(await again.readBlock(b), blockData(b, BS));
      assert.deepEqual((await again.verify()).problems, []);
      await again.close();
    });
  } finally {
    cleanup();
  }
});

test('when even the cut fails: appends are refused with the first errno until it succeeds, and the next open drops the tail', async () => {
  const { dir, cleanup } = tempDir();
  try {
    await withFaults(async (proto, orig) => {
      const file = path.join(dir, 'p0.clog');
      const log = await ChangeLog.create(file, HDR, { blockCount: BLOCKS });
      await log.appendBatch([rec(5)]);
      const good = log.byteLength;
      proto.writev = partialThenEnospc(orig);
      proto.truncate = async () => {
        throw errno('EIO', 'ftruncate');
      };
      await assert.rejects(log.appendBatch([rec(6)]), (e: unknown) => e instanceof OperationError && e.errno === 'ENOSPC');
      proto.writev = orig.writev;
      await assert.rejects(
        log.appendBatch([rec(6)]),
        (e: unknown) => e instanceof OperationError && e.errno === 'ENOSPC' && /cutting the log back to its last good length \d+ failed too \(EIO/.test(e.message),
      );
      const tail = fs.statSync(file).size;
      assert.ok(tail > good, 'the failed batch is still in the file');
      assert.equal(log.byteLength, good, 'what an orderly close records');
      assert.equal(log.tailPending, true);
      await log.close(); // tries the cut once more: still failing

      // verify (read-only): the tail is not a problem and stays on disk.
      assert.equal(log.tailPending, true, 'the state must list this log in dropTail');
      // Without dropTail (nobody said an append failed) the longer file is refused as before.
      await rejectsIntegrity(ChangeLog.open(file, opts({ expectedLength: good, readOnly: true })), /were recorded when it was last closed cleanly/);
      const ro = await ChangeLog.open(file, opts({ expectedLength: good, readOnly: true, dropTail: true }));
      assert.equal(ro.count, 1);
      assert.deepEqual((await ro.verify()).problems, []);
      await ro.close();
      assert.equal(fs.statSync(file).size, tail);

      // A writable open (truncate works again) cuts it and carries on.
      proto.truncate = orig.truncate;
      const rw = await ChangeLog.open(file, opts({ expectedLength: good, dropTail: true }));
      assert.equal(fs.statSync(file).size, good);
      assert.deepEqual(await rw.readBlock(5), blockData(5, BS));
      await rw.appendBatch([rec(6)]);
      const len = rw.byteLength;
      await rw.close();
      const again = await ChangeLog.open(file, opts({ expectedLength: len }));
      assert.deepEqual(await again.readBlock(6), blockData(6, BS));
      await again.close();
    });
  } finally {
    cleanup();
  }
});

test('the tail rule is no licence for damage: a short file or damage before the recorded length is still an integrity error', async () => {
  const { dir, cleanup } = tempDir();
  try {
    const file = path.join(dir, 'p0.clog');
    const log = await ChangeLog.create(file, HDR, { blockCount: BLOCKS });
    await log.appendBatch([rec(1), rec(2)]);
    await log.appendBatch([rec(3)]);
    const len = log.byteLength;
    await log.close();
    const garbage = Buffer.alloc(RS + 100, 0xa5);
    fs.appendFileSync(file, garbage);
    // Damage inside the recorded length, with a tail after it.
    const fd = fs.openSync(file, 'r+');
    fs.writeSync(fd, Buffer.alloc(8), 0, 8, CLOG_HEADER_SIZE + RS);
    fs.closeSync(fd);
    await rejectsIntegrity(ChangeLog.open(file, opts({ expectedLength: len, dropTail: true })), escapeRe(file), new RegExp(`at offset ${CLOG_HEADER_SIZE + RS}\\b`), /cleanly closed log/);
    // A file shorter than recorded: records durable at the clean close are missing.
    fs.truncateSync(file, len - 1);
    await rejectsIntegrity(ChangeLog.open(file, opts({ expectedLength: len, dropTail: true })), /were recorded when it was last closed cleanly/);
    // A recorded length that is not a record boundary cannot be a log's length: the longer file is refused as before.
    fs.truncateSync(file, len + RS);
    await rejectsIntegrity(ChangeLog.open(file, opts({ expectedLength: len - 1, dropTail: true })), /were recorded when it was last closed cleanly/);
  } finally {
    cleanup();
  }
});
