// The overlay format (docs/formats.md "Writable clones"): headers checked
// field by field, map records appended only as told, a torn map tail cut at
// open, damage before valid records refused, reset empties both files.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { tmpdir } from '../helpers/cli.js';
import { repairMap } from '../../src/formats/overlay-repair.js';
import { IntegrityError } from '../../src/errors.js';
import {
  MAP_RECORD_SIZE,
  OVERLAY_HEADER_SIZE,
  OverlayFile,
  createOverlay,
  encodeMapRecord,
  resetOverlayFiles,
  scanMap,
  type OverlayHeader,
} from '../../src/formats/overlay.js';

const H: OverlayHeader = { partitionId: 'p0', blockSize: 4096, blockCount: 64, snapshotId: 3, fingerprint: 'ab'.repeat(32) };

function paths(dir: string) {
  return { data: path.join(dir, 'p0.ovl'), map: path.join(dir, 'p0.ovm') };
}

test('scanMap: valid records, a torn tail is cut, damage before valid records is refused', () => {
  const recs = Buffer.concat([encodeMapRecord(1), encodeMapRecord(5), encodeMapRecord(63)]);
  assert.deepEqual(scanMap(recs, 64, 'm'), { blocks: [1, 5, 63], validBytes: 48 });
  // A partial trailing record and a zeroed one are a torn append.
  assert.deepEqual(scanMap(Buffer.concat([recs, Buffer.alloc(7)]), 64, 'm').validBytes, 48);
  assert.deepEqual(scanMap(Buffer.concat([recs, Buffer.alloc(MAP_RECORD_SIZE)]), 64, 'm').validBytes, 48);
  // Out of range is invalid; with a valid crc it is a whole record a torn append cannot leave: refused, not cut.
  assert.throws(() => scanMap(encodeMapRecord(64), 64, 'm.ovm'), (e: Error) => e instanceof IntegrityError && /m\.ovm at offset 4096: map record: block 64 is past the partition's 64 blocks in a whole record with the record magic/.test(e.message));
  // The record magic with a bad crc at the tail: refused, naming the offset and the block field.
  const crc = Buffer.from(recs);
  crc[2 * MAP_RECORD_SIZE + 4] ^= 1;
  assert.throws(() => scanMap(crc, 64, 'm.ovm'), (e: Error) => e instanceof IntegrityError && /m\.ovm at offset 4128: map record: record crc mismatch \(its block field says 63\).*vsnap clone repair/.test(e.message));
  // Behind a zeroed record (a sector of the append that never landed), the same.
  assert.throws(() => scanMap(Buffer.concat([recs, Buffer.alloc(MAP_RECORD_SIZE), crc.subarray(32)]), 64, 'm.ovm'), /at offset 4160: map record: record crc mismatch/);
  // Foreign bytes (no record magic) at the tail are still a torn append.
  assert.equal(scanMap(Buffer.concat([recs, Buffer.alloc(MAP_RECORD_SIZE, 0xa5)]), 64, 'm').validBytes, 48);
  // A flipped bit in record 1 with record 2 still valid: damage, named by offset.
  const bad = Buffer.from(recs);
  bad[MAP_RECORD_SIZE + 9] ^= 1;
  assert.throws(() => scanMap(bad, 64, 'file.ovm'), (e: Error) => e instanceof IntegrityError && /file\.ovm at offset 4112: invalid map record followed by valid ones/.test(e.message));
});

test('overlay files: create, write, map only what is appended, reopen, torn tail, header mismatch, reset', async () => {
  const t = tmpdir();
  try {
    const p = paths(t.dir);
    await createOverlay(p, H);
    assert.equal(fs.statSync(p.data).size, OVERLAY_HEADER_SIZE);
    await assert.rejects(createOverlay(p, H), /EEXIST/);
    let o = await OverlayFile.open(p, H);
    await o.write(2 * 4096, [Buffer.alloc(4096, 7), Buffer.alloc(4096, 8)]);
    await o.syncData();
    await o.appendMapped([2]);
    await o.close();
    o = await OverlayFile.open(p, H);
    assert.deepEqual([...o.mapped], [2], 'block 3 was written but never mapped');
    const buf = Buffer.alloc(4096);
    await o.read(2 * 4096, 4096, buf, 0);
    assert.ok(buf.equals(Buffer.alloc(4096, 7)));
    await o.close();
    // A torn append: half a record at the end is cut at open.
    fs.appendFileSync(p.map, encodeMapRecord(9).subarray(0, 10));
    o = await OverlayFile.open(p, H);
    assert.deepEqual([...o.mapped], [2]);
    await o.close();
    assert.equal(fs.statSync(p.map).size, OVERLAY_HEADER_SIZE + MAP_RECORD_SIZE);
    // Another clone's (or snapshot's) overlay is refused, naming the field.
    await assert.rejects(OverlayFile.open(p, { ...H, snapshotId: 4 }), (e: Error) => e instanceof IntegrityError && /p0\.ovl at offset 0: snapshotId is 3, the clone expects 4/.test(e.message));
    fs.writeFileSync(p.map, Buffer.alloc(100));
    await assert.rejects(OverlayFile.open(p, H), /p0\.ovm at offset 0: overlay header is 100 bytes/);
    // Reset of files nobody has open.
    fs.rmSync(p.data);
    fs.rmSync(p.map);
    await createOverlay(p, H);
    o = await OverlayFile.open(p, H);
    await o.write(0, [Buffer.alloc(4096, 1)]);
    await o.syncData();
    await o.appendMapped([0]);
    await o.close();
    await resetOverlayFiles(p, H);
    o = await OverlayFile.open(p, H);
    assert.equal(o.mapped.size, 0);
    await o.close();
    assert.equal(fs.statSync(p.data).size, OVERLAY_HEADER_SIZE);
    // Reset gives fresh headers: a damaged map header, a cut data file, a missing one all open again.
    for (const damage of [() => fs.writeFileSync(p.map, Buffer.alloc(OVERLAY_HEADER_SIZE, 0x77)), () => fs.truncateSync(p.data, 10), () => fs.rmSync(p.data)]) {
      damage();
      await assert.rejects(OverlayFile.open(p, H));
      await resetOverlayFiles(p, H);
      o = await OverlayFile.open(p, H);
      assert.equal(o.mapped.size, 0);
      await o.close();
      for (const f of [p.data, p.map]) {
        assert.equal(fs.statSync(f).size, OVERLAY_HEADER_SIZE);
        assert.equal(fs.statSync(f).mode & 0o777, 0o600, f);
      }
    }
    // An open overlay's reset rewrites its headers too (damaged behind the server's back).
    o = await OverlayFile.open(p, H);
    fs.writeFileSync(p.map, Buffer.alloc(OVERLAY_HEADER_SIZE + MAP_RECORD_SIZE, 0x55));
    await o.reset();
    await o.close();
    o = await OverlayFile.open(p, H);
    assert.equal(o.mapped.size, 0);
    await o.close();
  } finally {
    t.cleanup();
  }
});

test('repairMap: drops only the invalid records (keeping valid ones after them), dry run changes nothing, a damaged header is refused', async () => {
  const t = tmpdir();
  try {
    const p = paths(t.dir);
    await createOverlay(p, H);
    const hdr = fs.readFileSync(p.map);
    const badCrc = encodeMapRecord(9);
    badCrc[4] ^= 1;
    // [1] [zeros] [crc-bad 9] [5] [partial]
    const file = Buffer.concat([hdr, encodeMapRecord(1), Buffer.alloc(MAP_RECORD_SIZE), badCrc, encodeMapRecord(5), Buffer.alloc(3, 0xee)]);
    fs.writeFileSync(p.map, file);
    await assert.rejects(OverlayFile.open(p, H), IntegrityError);
    const dry = (await repairMap(p.map, H, { dryRun: true }))!;
    assert.deepEqual(dry.dropped.map((d) => [d.offset, d.block]), [[4112, 0n], [4128, 9n]]);
    assert.deepEqual([dry.kept, dry.tornBytes, dry.sizeBefore, dry.sizeAfter], [1, 3, file.length, OVERLAY_HEADER_SIZE + 32]);
    assert.ok(fs.readFileSync(p.map).equals(file), 'a dry run changed the map');
    await repairMap(p.map, H, { dryRun: false });
    assert.ok(fs.readFileSync(p.map).equals(Buffer.concat([hdr, encodeMapRecord(1), encodeMapRecord(5)])));
    const o = await OverlayFile.open(p, H);
    assert.deepEqual([o.mapped.has(1), o.mapped.has(5), o.mapped.has(9)], [true, true, false]);
    await o.close();
    assert.equal(await repairMap(p.map, H, { dryRun: false }), undefined, 'nothing left to repair');
    fs.writeFileSync(p.map, Buffer.concat([Buffer.from('garbage!'), hdr.subarray(8)]));
    await assert.rejects(repairMap(p.map, H, { dryRun: true }), (e: Error) => e instanceof IntegrityError && /bad magic.*vsnap clone reset is the repair/.test(e.message));
  } finally {
    t.cleanup();
  }
});
