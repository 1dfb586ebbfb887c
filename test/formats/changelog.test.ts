import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { open as openFh } from 'node:fs/promises';
import path from 'node:path';
import { crc32 } from 'node:zlib';
import fc from 'fast-check';
import { IntegrityError, OperationError } from '../../src/errors.js';
import {
  ChangeLog,
  CLOG_HEADER_SIZE,
  RECORD_HEADER_SIZE,
  RECORD_MAGIC,
  changeLogRecordCount,
  changeLogRecordSize,
  changeLogSlotOffset,
  encodeChangeLogHeader,
  type ChangeLogHeader,
  type ChangeLogOpenOptions,
} from '../../src/formats/changelog.js';
import { blockData, escapeRe, rejectsIntegrity, tempDir } from './util.js';

const BS = 512; // small blocks keep the property tests fast; the format is the same at any size
const RS = RECORD_HEADER_SIZE + BS;
const BLOCKS = 1000;
const FP = '0123456789abcdef'.repeat(4);

function hdr(over: Partial<ChangeLogHeader> = {}): ChangeLogHeader {
  return { snapshotId: 3, partitionId: 'data', blockSize: BS, fingerprint: FP, createdAtMs: 1_700_000_000_000, ...over };
}

function opts(over: Partial<ChangeLogOpenOptions> = {}): ChangeLogOpenOptions {
  const h = hdr();
  return { expect: { snapshotId: h.snapshotId, partitionId: h.partitionId, blockSize: h.blockSize, fingerprint: h.fingerprint }, blockCount: BLOCKS, cleanClose: true, ...over };
}

const slotOff = (k: number) => CLOG_HEADER_SIZE + k * RS;

/** A cleanly closed log whose batches hold the given blocks; returns its length. */
async function buildLog(file: string, batches: number[][], gen = 0): Promise<number> {
  const log = await ChangeLog.create(file, hdr(), { blockCount: BLOCKS });
  for (const b of batches) await log.appendBatch(b.map((block) => ({ block, data: blockData(block, BS, gen) })));
  const len = log.byteLength;
  await log.close();
  return len;
}

/** Every block of an open log with its data (throws whatever readBlock throws). */
async function contents(log: ChangeLog): Promise<Map<number, Buffer>> {
  const m = new Map<number, Buffer>();
  for (const b of log.blocks()) m.set(b, await log.readBlock(b));
  return m;
}

function batchesOnDisk(file: string): number[] {
  const buf = fs.readFileSync(file);
  const out: number[] = [];
  for (let off = CLOG_HEADER_SIZE; off + RS <= buf.length; off += RS) out.push(Number(buf.readBigUInt64LE(off + 16)));
  return out;
}

/** Invert one byte (always a real change, unlike writing a fixed value). */
function flipByte(file: string, off: number): void {
  const b = fs.readFileSync(file);
  patch(file, off, Buffer.from([b[off] ^ 0xff]));
}

function patch(file: string, off: number, bytes: Buffer): void {
  const fd = fs.openSync(file, 'r+');
  fs.writeSync(fd, bytes, 0, bytes.length, off);
  fs.closeSync(fd);
}

// Three batches: slots 0-2 batch 1, 3-5 batch 2, 6-9 batch 3.
const THREE = [
  [10, 11, 12],
  [20, 21, 22],
  [30, 31, 32, 33],
];

test('byte layout of header and records matches docs/formats.md', async () => {
  const { dir, cleanup } = tempDir();
  try {
    const file = path.join(dir, 'data.clog');
    const len = await buildLog(file, [[7, 900]]);
    const b = fs.readFileSync(file);
    assert.equal(len, CLOG_HEADER_SIZE + 2 * RS);
    assert.equal(b.length, len);
    assert.equal(b.toString('latin1', 0, 8), 'VSNAPCLG');
    assert.equal(b.readUInt32LE(8), 1);
    assert.equal(b.readUInt32LE(12), 4096);
    assert.equal(b.readUInt32LE(16), BS);
    assert.equal(b.readUInt32LE(20), 32);
    assert.equal(b.readBigUInt64LE(24), 3n);
    assert.equal(b.readBigUInt64LE(32), 1_700_000_000_000n);
    assert.equal(b.toString('hex', 40, 72), FP);
    assert.equal(b.readUInt16LE(72), 4);
    assert.equal(b.toString('utf8', 74, 78), 'data');
    assert.ok(b.subarray(78, 4092).every((x) => x === 0));
    assert.equal(b.readUInt32LE(4092), crc32(b.subarray(0, 4092)));
    for (const [k, block] of [7, 900].entries()) {
      const o = slotOff(k);
      assert.equal(b.readUInt32LE(o), RECORD_MAGIC);
      assert.equal(b.toString('latin1', o, o + 4), 'CERL');
      assert.equal(b.readBigUInt64LE(o + 8), BigInt(block));
      assert.equal(b.readBigUInt64LE(o + 16), 1n);
      assert.equal(b.readBigUInt64LE(o + 24), 0n);
      assert.equal(b.readUInt32LE(o + 4), crc32(b.subarray(o + 32, o + RS), crc32(b.subarray(o + 8, o + 32))));
      assert.deepEqual(b.subarray(o + 32, o + RS), blockData(block, BS));
    }
  } finally {
    cleanup();
  }
});

test('the exported geometry counts the records of a real log from its size (what list relies on)', async () => {
  const { dir, cleanup } = tempDir();
  try {
    const file = path.join(dir, 'data.clog');
    assert.equal(changeLogRecordSize(BS), RS);
    await buildLog(file, THREE);
    const size = fs.statSync(file).size;
    const count = THREE.flat().length;
    assert.equal(changeLogRecordCount(size, BS), count);
    assert.equal(changeLogSlotOffset(count, BS), size);
    const log = await ChangeLog.open(file, opts({ expectedLength: size }));
    assert.equal(changeLogRecordCount(log.byteLength, BS), log.count);
    await log.close();
    // A torn partial record and a file shorter than the header count as no more records.
    assert.equal(changeLogRecordCount(size + RS - 1, BS), count);
    assert.equal(changeLogRecordCount(CLOG_HEADER_SIZE, BS), 0);
    assert.equal(changeLogRecordCount(100, BS), 0);
  } finally {
    cleanup();
  }
});

test('create, append, read back, reopen cleanly; headerCrc binds to the header bytes', async () => {
  const { dir, cleanup } = tempDir();
  try {
    const file = path.join(dir, 'data.clog');
    const log = await ChangeLog.create(file, hdr());
    assert.equal(log.count, 0);
    assert.equal(log.byteLength, CLOG_HEADER_SIZE);
    assert.equal(log.headerCrc, encodeChangeLogHeader(hdr()).crc);
    assert.equal(fs.readFileSync(file).readUInt32LE(4092), log.headerCrc);
    await log.appendBatch([{ block: 1, data: blockData(1, BS) }, { block: 999, data: blockData(999, BS) }]);
    await log.appendBatch([{ block: 0, data: blockData(0, BS) }]);
    assert.equal(log.count, 3);
    assert.equal(log.has(999), true);
    assert.equal(log.has(2), false);
    assert.deepEqual([...log.blocks()].sort((a, b) => a - b), [0, 1, 999]);
    assert.deepEqual(await log.readBlock(999), blockData(999, BS));
    const len = log.byteLength;
    assert.equal(fs.statSync(file).size, len);
    await log.close();
    await log.close(); // idempotent

    const again = await ChangeLog.open(file, opts({ expectedLength: len }));
    assert.deepEqual(again.header, hdr());
    assert.equal(again.headerCrc, log.headerCrc);
    assert.equal(again.count, 3);
    assert.deepEqual(await contents(again), new Map([1, 999, 0].map((b) => [b, blockData(b, BS)])));
    // Numbering continues after the highest batch on disk.
    await again.appendBatch([{ block: 5, data: blockData(5, BS) }]);
    await again.close();
    assert.deepEqual(batchesOnDisk(file), [1, 1, 2, 3]);
  } finally {
    cleanup();
  }
});

test('readBlock into a caller buffer at an offset, and readRange of part of a block', async () => {
  const { dir, cleanup } = tempDir();
  try {
    const file = path.join(dir, 'data.clog');
    await buildLog(file, [[4]]);
    const log = await ChangeLog.open(file, opts());
    const big = Buffer.alloc(BS * 3, 0xee);
    const view = await log.readBlock(4, big, 100);
    assert.equal(view.length, BS);
    assert.equal(view.buffer, big.buffer);
    assert.deepEqual(big.subarray(100, 100 + BS), blockData(4, BS));
    assert.ok(big.subarray(0, 100).every((x) => x === 0xee));
    assert.ok(big.subarray(100 + BS).every((x) => x === 0xee));
    const out = Buffer.alloc(50, 1);
    await log.readRange(4, 200, 40, out, 5);
    assert.deepEqual(out.subarray(5, 45), blockData(4, BS).subarray(200, 240));
    assert.ok(out.subarray(0, 5).every((x) => x === 1) && out.subarray(45).every((x) => x === 1));
    await assert.rejects(log.readRange(4, BS - 10, 11, out, 0), RangeError);
    await assert.rejects(log.readBlock(4, Buffer.alloc(BS), 1), RangeError);
    await assert.rejects(log.readBlock(5), /not in change log/);
    await log.close();
  } finally {
    cleanup();
  }
});

test('create refuses an existing file (O_EXCL) and bad header values', async () => {
  const { dir, cleanup } = tempDir();
  try {
    const file = path.join(dir, 'data.clog');
    await buildLog(file, []);
    await assert.rejects(ChangeLog.create(file, hdr()), { code: 'EEXIST' });
    const other = path.join(dir, 'other.clog');
    await assert.rejects(ChangeLog.create(other, hdr({ fingerprint: 'xyz' })), /fingerprint/);
    await assert.rejects(ChangeLog.create(other, hdr({ blockSize: 1000 })), /blockSize/);
    await assert.rejects(ChangeLog.create(other, hdr({ partitionId: 'é'.repeat(33) })), /partitionId/);
    assert.equal(fs.existsSync(other), false);
  } finally {
    cleanup();
  }
});

test('open checks the header against what the caller expects, naming file and offset', async () => {
  const { dir, cleanup } = tempDir();
  try {
    const file = path.join(dir, 'data.clog');
    await buildLog(file, [[1]]);
    const e = opts().expect;
    await rejectsIntegrity(ChangeLog.open(file, opts({ expect: { ...e, snapshotId: 4 } })), escapeRe(file), /at offset 24/, /snapshot id is 3, expected 4/);
    await rejectsIntegrity(ChangeLog.open(file, opts({ expect: { ...e, partitionId: 'boot' } })), /at offset 74/, /partition id/);
    await rejectsIntegrity(ChangeLog.open(file, opts({ expect: { ...e, blockSize: 4096 } })), /at offset 16/);
    await rejectsIntegrity(ChangeLog.open(file, opts({ expect: { ...e, fingerprint: 'f'.repeat(64) } })), /at offset 40/, /fingerprint/);
    // A damaged header byte is caught by the header crc.
    flipByte(file, 74);
    await rejectsIntegrity(ChangeLog.open(file, opts()), escapeRe(file), /at offset 4092/, /crc mismatch/);
    // Not a change log at all.
    fs.writeFileSync(file, Buffer.alloc(5000));
    await rejectsIntegrity(ChangeLog.open(file, opts()), /at offset 0/, /bad magic/);
    fs.writeFileSync(file, Buffer.alloc(100));
    await rejectsIntegrity(ChangeLog.open(file, opts({ cleanClose: false })), /shorter than the 4096-byte header/);
  } finally {
    cleanup();
  }
});

test('appendBatch refuses (as bugs) duplicates, wrong sizes and blocks outside the partition, writing nothing', async () => {
  const { dir, cleanup } = tempDir();
  try {
    const file = path.join(dir, 'data.clog');
    const log = await ChangeLog.create(file, hdr(), { blockCount: BLOCKS });
    await log.appendBatch([{ block: 1, data: blockData(1, BS) }]);
    const len = log.byteLength;
    const notIntegrity = (re: RegExp) => (e: unknown) => e instanceof Error && !(e instanceof IntegrityError) && re.test(e.message);
    await assert.rejects(log.appendBatch([{ block: 2, data: blockData(2, BS) }, { block: 1, data: blockData(1, BS) }]), notIntegrity(/already logged/));
    await assert.rejects(log.appendBatch([{ block: 3, data: blockData(3, BS) }, { block: 3, data: blockData(3, BS) }]), notIntegrity(/twice/));
    await assert.rejects(log.appendBatch([{ block: 4, data: Buffer.alloc(BS - 1) }]), notIntegrity(/exactly 512 bytes/));
    await assert.rejects(log.appendBatch([{ block: BLOCKS, data: blockData(0, BS) }]), notIntegrity(/outside the partition/));
    await assert.rejects(log.appendBatch([{ block: -1, data: blockData(0, BS) }]), notIntegrity(/outside the partition/));
    assert.equal(log.byteLength, len);
    assert.equal(log.has(2), false);
    // The log is still usable: programming errors do not poison it.
    await log.appendBatch([{ block: 2, data: blockData(2, BS) }]);
    await log.appendBatch([]);
    await log.close();
    assert.deepEqual(batchesOnDisk(file), [1, 2]);
    const ro = await ChangeLog.open(file, opts({ readOnly: true }));
    await assert.rejects(ro.appendBatch([{ block: 9, data: blockData(9, BS) }]), /read-only/);
    await ro.close();
  } finally {
    cleanup();
  }
});

test('concurrent appendBatch calls queue: write, fdatasync, write, fdatasync ... and all records land', async () => {
  const { dir, cleanup } = tempDir();
  // Instrument every FileHandle (they share one prototype) to record the order of writes and syncs.
  const probe = await openFh(path.join(dir, '..'), 'r');
  const proto = Object.getPrototypeOf(probe) as { writev: (...a: unknown[]) => Promise<unknown>; datasync: () => Promise<void> };
  await probe.close();
  const origWritev = proto.writev;
  const origDatasync = proto.datasync;
  const events: string[] = [];
  let inflight = 0;
  let maxInflight = 0;
  proto.writev = async function (this: unknown, ...a: unknown[]) {
    inflight++;
    maxInflight = Math.max(maxInflight, inflight);
    events.push('w');
    try {
      return await origWritev.apply(this, a);
    } finally {
      inflight--;
    }
  };
  proto.datasync = async function (this: unknown) {
    inflight++;
    events.push('s');
    // Give a wrongly overlapping implementation every chance to start the next write.
    await new Promise((r) => setTimeout(r, 1));
    try {
      return await origDatasync.apply(this);
    } finally {
      inflight--;
    }
  };
  try {
    const file = path.join(dir, 'data.clog');
    const log = await ChangeLog.create(file, hdr(), { blockCount: BLOCKS });
    events.length = 0;
    const calls: Promise<void>[] = [];
    for (let i = 0; i < 40; i++) {
      calls.push(log.appendBatch([0, 1, 2].map((j) => ({ block: i * 3 + j, data: blockData(i * 3 + j, BS) }))));
    }
    await Promise.all(calls);
    assert.equal(maxInflight, 1);
    assert.equal(events.join(''), 'ws'.repeat(40));
    assert.equal(log.count, 120);
    await log.close();
    const b = batchesOnDisk(file);
    assert.deepEqual(b, Array.from({ length: 120 }, (_, k) => Math.floor(k / 3) + 1));
    const again = await ChangeLog.open(file, opts());
    assert.deepEqual(await contents(again), new Map(Array.from({ length: 120 }, (_, k) => [k, blockData(k, BS)])));
    await again.close();
  } finally {
    proto.writev = origWritev;
    proto.datasync = origDatasync;
    cleanup();
  }
});

test('a failed fdatasync is undone: the batch is dropped, the file cut back, and appends resume once the cut is durable', async () => {
  const { dir, cleanup } = tempDir();
  const probe = await openFh(dir, 'r');
  const proto = Object.getPrototypeOf(probe) as { datasync: () => Promise<void> };
  await probe.close();
  const orig = proto.datasync;
  try {
    const file = path.join(dir, 'data.clog');
    const log = await ChangeLog.create(file, hdr(), { blockCount: BLOCKS });
    await log.appendBatch([{ block: 1, data: blockData(1, BS) }]);
    const good = log.byteLength;
    // Every fdatasync fails, the one after the undo's truncate too: appends stay refused.
    proto.datasync = async () => {
      throw Object.assign(new Error('EIO: i/o error, fdatasync'), { code: 'EIO' });
    };
    await assert.rejects(log.appendBatch([{ block: 2, data: blockData(2, BS) }]), (e: unknown) => e instanceof OperationError && e.errno === 'EIO' && e.message.startsWith(`${file}: appending 1 record(s) at offset ${good} failed: EIO`));
    assert.equal(log.has(2), false);
    assert.equal(log.byteLength, good);
    await assert.rejects(log.appendBatch([{ block: 3, data: blockData(3, BS) }]), (e: unknown) => e instanceof OperationError && e.errno === 'EIO' && /cutting the log back to its last good length/.test(e.message));
    // The disk recovers: the next append first makes the cut durable, then proceeds.
    proto.datasync = orig;
    await log.appendBatch([{ block: 3, data: blockData(3, BS) }]);
    assert.equal(log.byteLength, good + RS);
    assert.equal(fs.statSync(file).size, good + RS);
    const len = log.byteLength;
    await log.close();
    assert.deepEqual(batchesOnDisk(file), [1, 2]);
    const again = await ChangeLog.open(file, opts({ expectedLength: len }));
    assert.deepEqual(await contents(again), new Map([1, 3].map((b) => [b, blockData(b, BS)])));
    await again.close();
  } finally {
    proto.datasync = orig;
    cleanup();
  }
});

// --- torn tails --------------------------------------------------------------

interface TornCase {
  name: string;
  damage: (file: string, len: number) => void;
  /** Slots that survive an unclean open. */
  keep: number;
}

const TORN: TornCase[] = [
  { name: 'cut inside a record header of the last batch', damage: (f) => fs.truncateSync(f, slotOff(8) + 10), keep: 8 },
  { name: 'cut inside record data of the last batch', damage: (f) => fs.truncateSync(f, slotOff(7) + RECORD_HEADER_SIZE + 100), keep: 7 },
  { name: 'cut exactly at the start of the last batch', damage: (f) => fs.truncateSync(f, slotOff(6) + 1), keep: 6 },
  { name: 'partial trailing slot after a complete log', damage: (f, len) => patch(f, len, Buffer.alloc(RS - 1, 0x5a)), keep: 10 },
  { name: 'zeroed last-batch region (length kept)', damage: (f) => patch(f, slotOff(6), Buffer.alloc(4 * RS)), keep: 6 },
  { name: 'zeroed middle of the last batch, later records intact', damage: (f) => patch(f, slotOff(7), Buffer.alloc(RS)), keep: 7 },
  { name: 'torn data in the last batch, headers intact', damage: (f) => patch(f, slotOff(8) + RECORD_HEADER_SIZE + 300, Buffer.alloc(BS - 300)), keep: 8 },
];

for (const c of TORN) {
  test(`torn tail: ${c.name} — recovered on unclean open, refused on clean open`, async () => {
    const { dir, cleanup } = tempDir();
    try {
      const file = path.join(dir, 'data.clog');
      const len = await buildLog(file, THREE);
      c.damage(file, len);
      const damaged = fs.readFileSync(file);

      // Clean open: the damage is an error, at open or (data-only damage) on read and in verify.
      let cleanErr: unknown;
      try {
        const log = await ChangeLog.open(file, opts({ expectedLength: len }));
        try {
          const v = await log.verify();
          assert.ok(v.problems.length > 0);
          assert.match(v.problems[0].message, escapeRe(file));
          await contents(log);
        } finally {
          await log.close();
        }
      } catch (e) {
        cleanErr = e;
      }
      assert.ok(cleanErr instanceof IntegrityError, `clean open/read should fail, got ${String(cleanErr)}`);
      assert.match(cleanErr.message, escapeRe(file));
      assert.match(cleanErr.message, /at offset \d+/);
      assert.deepEqual(fs.readFileSync(file), damaged, 'a refused clean open must not modify the file');

      // A read-only unclean open recovers in memory and leaves the file alone.
      const ro = await ChangeLog.open(file, opts({ cleanClose: false, readOnly: true }));
      assert.equal(ro.count, c.keep);
      await ro.close();
      assert.deepEqual(fs.readFileSync(file), damaged);

      const log = await ChangeLog.open(file, opts({ cleanClose: false }));
      const all = THREE.flat();
      assert.equal(log.count, c.keep);
      assert.equal(log.byteLength, slotOff(c.keep));
      assert.equal(fs.statSync(file).size, slotOff(c.keep));
      assert.deepEqual(await contents(log), new Map(all.slice(0, c.keep).map((b) => [b, blockData(b, BS)])));
      assert.deepEqual((await log.verify()).problems, []);
      // Appending continues the numbering after the surviving batches.
      await log.appendBatch([{ block: 500, data: blockData(500, BS) }]);
      const newLen = log.byteLength;
      await log.close();
      const lastSurviving = c.keep > 6 ? 3 : 2;
      assert.deepEqual(batchesOnDisk(file).slice(-1), [lastSurviving + 1]);
      const clean = await ChangeLog.open(file, opts({ expectedLength: newLen }));
      assert.deepEqual(await clean.readBlock(500), blockData(500, BS));
      await clean.close();
    } finally {
      cleanup();
    }
  });
}

test('damage in an older batch is corruption, not a torn tail: IntegrityError with file and offset', async () => {
  const { dir, cleanup } = tempDir();
  try {
    const file = path.join(dir, 'data.clog');
    const len = await buildLog(file, THREE);
    patch(file, slotOff(1), Buffer.alloc(RECORD_HEADER_SIZE)); // batch 1, followed by batches 2 and 3
    const before = fs.readFileSync(file);
    await rejectsIntegrity(ChangeLog.open(file, opts({ cleanClose: false })), escapeRe(file), new RegExp(`at offset ${slotOff(1)}\\b`));
    await rejectsIntegrity(ChangeLog.open(file, opts({ expectedLength: len })), escapeRe(file), new RegExp(`at offset ${slotOff(1)}\\b`));
    assert.deepEqual(fs.readFileSync(file), before, 'nothing may be truncated when refusing');
  } finally {
    cleanup();
  }
});

test('damage in the second-newest batch followed only by the newest batch is treated as torn (documented limit)', async () => {
  const { dir, cleanup } = tempDir();
  try {
    const file = path.join(dir, 'data.clog');
    await buildLog(file, THREE);
    // Slot 5 is the last record of batch 2; only batch-3 records follow it.
    patch(file, slotOff(5), Buffer.alloc(RECORD_HEADER_SIZE));
    const log = await ChangeLog.open(file, opts({ cleanClose: false }));
    assert.equal(log.count, 5);
    await log.close();
  } finally {
    cleanup();
  }
});

test('records of two different batches after the damage are corruption', async () => {
  const { dir, cleanup } = tempDir();
  try {
    const file = path.join(dir, 'data.clog');
    await buildLog(file, THREE);
    patch(file, slotOff(4), Buffer.alloc(RECORD_HEADER_SIZE)); // batch 2 then batch 2 and 3 records follow
    await rejectsIntegrity(ChangeLog.open(file, opts({ cleanClose: false })), new RegExp(`at offset ${slotOff(4)}\\b`), /not a torn append/);
  } finally {
    cleanup();
  }
});

test('unclean open refuses to drop records that were durable at the last clean close', async () => {
  const { dir, cleanup } = tempDir();
  try {
    const file = path.join(dir, 'data.clog');
    const len = await buildLog(file, THREE);
    fs.truncateSync(file, slotOff(8) + 5);
    await rejectsIntegrity(ChangeLog.open(file, opts({ cleanClose: false, expectedLength: len })), escapeRe(file), /recorded at its last clean close/);
    // With the length recorded before batch 3, dropping batch 3's torn part is fine.
    const log = await ChangeLog.open(file, opts({ cleanClose: false, expectedLength: slotOff(6) }));
    assert.equal(log.count, 8);
    await log.close();
  } finally {
    cleanup();
  }
});

test('clean open: duplicate blocks, non-consecutive batches and out-of-range blocks are corruption', async () => {
  const { dir, cleanup } = tempDir();
  try {
    const file = path.join(dir, 'data.clog');
    await buildLog(file, THREE);
    // Out of range for a smaller partition.
    await rejectsIntegrity(ChangeLog.open(file, opts({ blockCount: 31 })), new RegExp(`at offset ${slotOff(7)}\\b`), /outside the partition/);
    const orig = fs.readFileSync(file);
    // Make slot 4 claim block 10 (already at slot 0).
    const dup = Buffer.from(orig);
    dup.writeBigUInt64LE(10n, slotOff(4) + 8);
    fs.writeFileSync(file, dup);
    await rejectsIntegrity(ChangeLog.open(file, opts()), new RegExp(`at offset ${slotOff(4)}\\b`), /logged twice/);
    // Make slot 6 claim batch 5.
    const skip = Buffer.from(orig);
    skip.writeBigUInt64LE(5n, slotOff(6) + 16);
    fs.writeFileSync(file, skip);
    await rejectsIntegrity(ChangeLog.open(file, opts()), new RegExp(`at offset ${slotOff(6)}\\b`), /batch 5 follows batch 2/);
  } finally {
    cleanup();
  }
});

test('readBlock and verify catch data damage that a header-only open cannot see', async () => {
  const { dir, cleanup } = tempDir();
  try {
    const file = path.join(dir, 'data.clog');
    const len = await buildLog(file, THREE);
    flipByte(file, slotOff(2) + RECORD_HEADER_SIZE + 17);
    const log = await ChangeLog.open(file, opts({ expectedLength: len }));
    await rejectsIntegrity(log.readBlock(12), escapeRe(file), new RegExp(`at offset ${slotOff(2)}\\b`), /crc mismatch/);
    await rejectsIntegrity(log.readRange(12, 0, 1, Buffer.alloc(1), 0), /crc mismatch/);
    const v = await log.verify();
    assert.equal(v.bytesRead, len);
    assert.deepEqual(
      v.problems.map((p) => p.offset),
      [slotOff(2)],
    );
    assert.deepEqual(await log.readBlock(11), blockData(11, BS));
    await log.close();
  } finally {
    cleanup();
  }
});

test('verify notices a file changed behind an open log (truncated or header rewritten)', async () => {
  const { dir, cleanup } = tempDir();
  try {
    const file = path.join(dir, 'data.clog');
    await buildLog(file, THREE);
    const log = await ChangeLog.open(file, opts());
    fs.truncateSync(file, slotOff(9) + 3);
    const v = await log.verify();
    assert.ok(v.problems.some((p) => /file is \d+ bytes, expected/.test(p.message)));
    assert.ok(v.problems.some((p) => p.offset === slotOff(9) && /cut short/.test(p.message)));
    await rejectsIntegrity(log.readBlock(33), /cut short/);
    await log.close();
  } finally {
    cleanup();
  }
});

test('a batch of more than IOV_MAX buffers is written completely', async () => {
  const { dir, cleanup } = tempDir();
  try {
    const file = path.join(dir, 'data.clog');
    const log = await ChangeLog.create(file, hdr(), { blockCount: 5000 });
    const blocks = Array.from({ length: 1500 }, (_, i) => i * 3);
    await log.appendBatch(blocks.map((b) => ({ block: b, data: blockData(b, BS) })));
    const len = log.byteLength;
    await log.close();
    assert.equal(fs.statSync(file).size, slotOff(1500));
    const again = await ChangeLog.open(file, opts({ blockCount: 5000, expectedLength: len }));
    assert.deepEqual((await again.verify()).problems, []);
    assert.deepEqual(await again.readBlock(1499 * 3), blockData(1499 * 3, BS));
    await again.close();
  } finally {
    cleanup();
  }
});

// --- properties --------------------------------------------------------------

/** Batches of distinct blocks for property tests. */
const batchesArb = fc
  .uniqueArray(fc.nat({ max: BLOCKS - 1 }), { minLength: 1, maxLength: 40 })
  .chain((blocks) =>
    fc.array(fc.nat({ max: 5 }), { minLength: blocks.length, maxLength: blocks.length }).map((cuts) => {
      const out: number[][] = [[]];
      blocks.forEach((b, i) => {
        if (i > 0 && cuts[i] === 0) out.push([]);
        out[out.length - 1].push(b);
      });
      return out;
    }),
  );

/**
 * Open (clean or not), read everything and verify. Returns 'detected' if an
 * IntegrityError surfaced anywhere, else the contents. Any data returned must
 * be the original data of that block.
 */
async function observe(file: string, o: ChangeLogOpenOptions, original: Map<number, Buffer>): Promise<'detected' | Map<number, Buffer>> {
  let log: ChangeLog;
  try {
    log = await ChangeLog.open(file, o);
  } catch (e) {
    if (e instanceof IntegrityError) return 'detected';
    throw e;
  }
  try {
    let detected = false;
    const seen = new Map<number, Buffer>();
    for (const b of log.blocks()) {
      try {
        const d = await log.readBlock(b);
        assert.ok(original.has(b), `block ${b} appeared from nowhere`);
        assert.deepEqual(d, original.get(b), `wrong data for block ${b}`);
        seen.set(b, d);
      } catch (e) {
        if (!(e instanceof IntegrityError)) throw e;
        detected = true;
      }
    }
    const v = await log.verify();
    if (v.problems.length > 0) detected = true;
    return detected ? 'detected' : seen;
  } finally {
    await log.close();
  }
}

test('property: random truncation of a cleanly closed log is always detected on clean open', async () => {
  const { dir, cleanup } = tempDir();
  let n = 0;
  try {
    await fc.assert(
      fc.asyncProperty(batchesArb, fc.double({ min: 0, max: 1, noNaN: true, maxExcluded: true }), async (batches, where) => {
        const file = path.join(dir, `t${n++}.clog`);
        const len = await buildLog(file, batches);
        const cut = Math.floor(where * len);
        fs.truncateSync(file, cut);
        const original = new Map(batches.flat().map((b) => [b, blockData(b, BS)]));
        assert.equal(await observe(file, opts({ expectedLength: len }), original), 'detected');
        fs.rmSync(file);
      }),
      { numRuns: 150 },
    );
  } finally {
    cleanup();
  }
});

test('property: a crash at any point after the last clean close recovers exactly the complete records', async () => {
  const { dir, cleanup } = tempDir();
  let n = 0;
  try {
    await fc.assert(
      fc.asyncProperty(batchesArb, fc.nat(), fc.double({ min: 0, max: 1, noNaN: true }), async (batches, split, where) => {
        const file = path.join(dir, `c${n++}.clog`);
        // The first k batches were closed cleanly (length recorded); the rest were appended after.
        const k = split % (batches.length + 1);
        const cleanLen = await buildLog(file, batches.slice(0, k));
        const log = await ChangeLog.open(file, opts({ expectedLength: cleanLen }));
        for (const b of batches.slice(k)) await log.appendBatch(b.map((block) => ({ block, data: blockData(block, BS) })));
        const len = log.byteLength;
        await log.close();
        // The crash tears the file anywhere after the clean length.
        const cut = cleanLen + Math.floor(where * (len - cleanLen));
        fs.truncateSync(file, cut);
        const flat = batches.flat();
        const whole = Math.floor((cut - CLOG_HEADER_SIZE) / RS);
        const original = new Map(flat.map((b) => [b, blockData(b, BS)]));
        const got = await observe(file, opts({ cleanClose: false, expectedLength: cleanLen }), original);
        assert.notEqual(got, 'detected');
        assert.deepEqual([...(got as Map<number, Buffer>).keys()], flat.slice(0, whole));
        fs.rmSync(file);
      }),
      { numRuns: 150 },
    );
  } finally {
    cleanup();
  }
});

test('property: a random bit flip anywhere in a clean log is detected (open, readBlock or verify), never wrong data', async () => {
  const { dir, cleanup } = tempDir();
  let n = 0;
  try {
    await fc.assert(
      fc.asyncProperty(batchesArb, fc.double({ min: 0, max: 1, noNaN: true, maxExcluded: true }), fc.nat({ max: 7 }), async (batches, where, bit) => {
        const file = path.join(dir, `f${n++}.clog`);
        const len = await buildLog(file, batches);
        // Half the flips land in the records (where most bytes are not), half anywhere.
        const pos = Math.floor(where * len);
        const b = fs.readFileSync(file);
        b[pos] ^= 1 << bit;
        fs.writeFileSync(file, b);
        const original = new Map(batches.flat().map((x) => [x, blockData(x, BS)]));
        // crc32 catches every single-bit error, so clean open + verify must always see it...
        assert.equal(await observe(file, opts({ expectedLength: len }), original), 'detected', `flip at ${pos} bit ${bit} went unnoticed`);
        // ...and an unclean open may drop a torn-looking newest batch, but never returns wrong data
        // (observe asserts every block it reads against the original).
        await observe(file, opts({ cleanClose: false }), original);
        fs.rmSync(file);
      }),
      { numRuns: 300 },
    );
  } finally {
    cleanup();
  }
});

test('property: random multi-byte garbage never yields wrong data', async () => {
  const { dir, cleanup } = tempDir();
  let n = 0;
  try {
    await fc.assert(
      fc.asyncProperty(
        batchesArb,
        fc.array(fc.tuple(fc.double({ min: 0, max: 1, noNaN: true, maxExcluded: true }), fc.nat({ max: 255 })), { minLength: 1, maxLength: 8 }),
        fc.boolean(),
        async (batches, edits, clean) => {
          const file = path.join(dir, `g${n++}.clog`);
          const len = await buildLog(file, batches);
          const b = fs.readFileSync(file);
          for (const [w, v] of edits) b[Math.floor(w * len)] = v;
          fs.writeFileSync(file, b);
          const original = new Map(batches.flat().map((x) => [x, blockData(x, BS)]));
          const got = await observe(file, opts(clean ? { expectedLength: len } : { cleanClose: false }), original);
          if (clean && got !== 'detected') assert.deepEqual(got, original); // edits that changed nothing
          fs.rmSync(file);
        },
      ),
      { numRuns: 200 },
    );
  } finally {
    cleanup();
  }
});

// --- merge -------------------------------------------------------------------

test('mergeFrom moves exactly the blocks dst lacks, keeps dst copies, and is idempotent', async () => {
  const { dir, cleanup } = tempDir();
  try {
    const dstFile = path.join(dir, 'dst.clog');
    const srcFile = path.join(dir, 'src.clog');
    await buildLog(dstFile, [[1, 2, 3], [4]], 1);
    const src = await ChangeLog.create(srcFile, hdr({ snapshotId: 4 }), { blockCount: BLOCKS });
    await src.appendBatch([3, 4, 5, 6].map((b) => ({ block: b, data: blockData(b, BS, 2) })));
    await src.appendBatch([7, 1].map((b) => ({ block: b, data: blockData(b, BS, 2) })));
    const dst = await ChangeLog.open(dstFile, opts());
    assert.equal(await ChangeLog.mergeFrom(dst, src), 3);
    assert.equal(await ChangeLog.mergeFrom(dst, src), 0);
    const expected = new Map<number, Buffer>([
      [1, blockData(1, BS, 1)],
      [2, blockData(2, BS, 1)],
      [3, blockData(3, BS, 1)],
      [4, blockData(4, BS, 1)],
      [5, blockData(5, BS, 2)],
      [6, blockData(6, BS, 2)],
      [7, blockData(7, BS, 2)],
    ]);
    assert.deepEqual(await contents(dst), expected);
    assert.deepEqual((await dst.verify()).problems, []);
    await assert.rejects(ChangeLog.mergeFrom(dst, dst), /same log/);
    const other = await ChangeLog.create(path.join(dir, 'other.clog'), hdr({ partitionId: 'boot' }));
    await assert.rejects(ChangeLog.mergeFrom(dst, other), /different partitions/);
    await other.close();
    await dst.close();
    await src.close();
  } finally {
    cleanup();
  }
});

test('mergeFrom after a crash mid-merge moves only what is still missing', async () => {
  const { dir, cleanup } = tempDir();
  try {
    const bs = 4096;
    const rs = RECORD_HEADER_SIZE + bs;
    const h = { ...hdr(), blockSize: bs };
    const o = { ...opts(), expect: { ...opts().expect, blockSize: bs }, blockCount: 100_000 };
    const dstFile = path.join(dir, 'dst.clog');
    const srcFile = path.join(dir, 'src.clog');
    const dst = await ChangeLog.create(dstFile, h, { blockCount: 100_000 });
    await dst.appendBatch([0, 10, 20].map((b) => ({ block: b, data: blockData(b, bs, 1) })));
    const src = await ChangeLog.create(srcFile, { ...h, snapshotId: 4 }, { blockCount: 100_000 });
    // 5000 records of 4 KiB: three merge batches of ~8 MiB.
    const srcBlocks = Array.from({ length: 5000 }, (_, i) => i * 2);
    for (let i = 0; i < srcBlocks.length; i += 500) {
      await src.appendBatch(srcBlocks.slice(i, i + 500).map((b) => ({ block: b, data: blockData(b, bs, 2) })));
    }
    const cleanLen = dst.byteLength;
    assert.equal(await ChangeLog.mergeFrom(dst, src), 4997); // 0, 10, 20 were already in dst
    const batches = batchesOnDisk2(dstFile, rs);
    assert.ok(new Set(batches).size >= 3, 'merge should take several batches');
    await dst.close();

    // Crash inside the last merge batch: tear the file in the middle of it.
    const lastStart = batches.indexOf(batches[batches.length - 1]);
    const tornAt = CLOG_HEADER_SIZE + (lastStart + 100) * rs + 77;
    fs.truncateSync(dstFile, tornAt);
    const recovered = await ChangeLog.open(dstFile, { ...o, cleanClose: false, expectedLength: cleanLen });
    assert.equal(recovered.count, lastStart + 100);
    const missing = srcBlocks.filter((b) => !recovered.has(b)).length;
    assert.ok(missing > 0);
    assert.equal(await ChangeLog.mergeFrom(recovered, src), missing);
    assert.equal(await ChangeLog.mergeFrom(recovered, src), 0);
    assert.equal(recovered.count, 5000);
    for (const b of [0, 10, 20]) assert.deepEqual(await recovered.readBlock(b), blockData(b, bs, 1));
    for (const b of [2, 4998, 9998]) assert.deepEqual(await recovered.readBlock(b), blockData(b, bs, 2));
    assert.deepEqual((await recovered.verify()).problems, []);
    await recovered.close();
    await src.close();
  } finally {
    cleanup();
  }
});

function batchesOnDisk2(file: string, rs: number): number[] {
  const buf = fs.readFileSync(file);
  const out: number[] = [];
  for (let off = CLOG_HEADER_SIZE; off + rs <= buf.length; off += rs) out.push(Number(buf.readBigUInt64LE(off + 16)));
  return out;
}

test('mergeFrom refuses to spread a damaged source record', async () => {
  const { dir, cleanup } = tempDir();
  try {
    const dstFile = path.join(dir, 'dst.clog');
    const srcFile = path.join(dir, 'src.clog');
    await buildLog(dstFile, [[1]]);
    await buildLog(srcFile, [[2, 3]]);
    flipByte(srcFile, slotOff(1) + RECORD_HEADER_SIZE);
    const dst = await ChangeLog.open(dstFile, opts());
    const src = await ChangeLog.open(srcFile, opts());
    await rejectsIntegrity(ChangeLog.mergeFrom(dst, src), escapeRe(srcFile), new RegExp(`at offset ${slotOff(1)}\\b`));
    assert.equal(dst.has(2), false);
    await dst.close();
    await src.close();
  } finally {
    cleanup();
  }
});

// --- performance -------------------------------------------------------------

test('performance: opening a log of 10,000 64-KiB records takes well under a second', async (t) => {
  const { dir, cleanup } = tempDir();
  try {
    const bs = 65536;
    const h = { ...hdr(), blockSize: bs };
    const file = path.join(dir, 'big.clog');
    const log = await ChangeLog.create(file, h, { blockCount: 1 << 20 });
    const data = Buffer.alloc(bs, 0x33);
    for (let b = 0; b < 10_000; b += 125) {
      await log.appendBatch(Array.from({ length: 125 }, (_, i) => ({ block: (b + i) * 7, data })));
    }
    const len = log.byteLength;
    await log.close();
    const o = { ...opts(), expect: { ...opts().expect, blockSize: bs }, blockCount: 1 << 20 };
    const times: number[] = [];
    for (const cleanClose of [true, true, false]) {
      const t0 = performance.now();
      const l = await ChangeLog.open(file, { ...o, cleanClose, expectedLength: len });
      times.push(performance.now() - t0);
      assert.equal(l.count, 10_000);
      assert.equal(l.has(9999 * 7), true);
      await l.close();
    }
    t.diagnostic(`open of 10,000 x 64 KiB records: clean ${times[0].toFixed(1)} ms (cold-ish), ${times[1].toFixed(1)} ms (warm); unclean ${times[2].toFixed(1)} ms`);
    assert.ok(times[1] < 1000, `clean open took ${times[1]} ms`);
    assert.ok(times[2] < 1000, `unclean open took ${times[2]} ms`);
  } finally {
    cleanup();
  }
});
