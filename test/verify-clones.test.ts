// `vsnap verify` checks clones, through the real binary: a clone written
// through the server's clone export (qemu-io) verifies clean and verify
// changes nothing in the store (digest before/after); a torn tail of a map
// (what a crash leaves and recovery cuts) is not a problem; a damaged map
// header, a bad record followed by valid ones, a cut data file, a damaged
// clone.json and a clone whose snapshot is gone each exit 3, naming the
// clone, partition and file in the text and in --json's `clone` field.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { vsnap, vsnapOk as ok, storeOf, treeDigest as digest, tmpdir, requireTool } from './helpers/cli.js';
import { makeFixture } from './helpers/volume-fixture.js';
import { run, runOk } from './nbd/harness.js';
import { startServe, qemuIoThroughServer } from './serve/harness.js';
import { encodeMapRecord, MAP_RECORD_SIZE, OVERLAY_HEADER_SIZE } from '../src/formats/overlay.js';
import { mapRecordsProblem } from '../src/commands/verify-clones.js';
import { writeRecord } from '../src/formats/record-json.js';

const skip = requireTool('qemu-io', 'qemu-utils');

interface Problem {
  snapshot: number | null;
  clone: string | null;
  partition: string | null;
  file: string | null;
  message: string;
}
interface Report {
  ok: boolean;
  snapshots: number;
  clones: number;
  problems: Problem[];
}

/** verify --json: the exit code and the report (printed before exit 3 too). */
async function verifyJson(manifest: string, ...more: string[]): Promise<{ code: number; report: Report; stderr: string }> {
  const r = await vsnap(['verify', manifest, ...more, '--json']);
  return { code: r.code, report: JSON.parse(r.stdout) as Report, stderr: r.stderr };
}

test('map record scan: a torn tail is accepted, a bad record before valid ones is named with its reason', () => {
  const recs = Buffer.concat([encodeMapRecord(1), encodeMapRecord(2), Buffer.alloc(MAP_RECORD_SIZE), Buffer.alloc(7, 0xff)]);
  assert.deepEqual(mapRecordsProblem(recs, 10), { blocks: [{ block: 1, offset: OVERLAY_HEADER_SIZE }, { block: 2, offset: OVERLAY_HEADER_SIZE + 16 }] });
  const bad = Buffer.concat([encodeMapRecord(1), encodeMapRecord(20), encodeMapRecord(3)]);
  const r = mapRecordsProblem(bad, 10);
  assert.match(r.problem!, new RegExp(`record at offset ${OVERLAY_HEADER_SIZE + 16}: block 20 is past the partition's 10 blocks, followed by a valid record at offset ${OVERLAY_HEADER_SIZE + 32}`));
  const crc = Buffer.concat([encodeMapRecord(1), encodeMapRecord(2), encodeMapRecord(3)]);
  crc[16 + 8] ^= 1;
  assert.match(mapRecordsProblem(crc, 10).problem!, /record crc mismatch/);
  // A whole record with the record magic at the tail (bad crc, or a block past the end) is damage too: the open refuses it.
  const tail = Buffer.concat([encodeMapRecord(1), encodeMapRecord(2)]);
  tail[16 + 4] ^= 1;
  assert.match(mapRecordsProblem(tail, 10).problem!, new RegExp(`^map record at offset ${OVERLAY_HEADER_SIZE + 16}: record crc mismatch \\(its block field says 2\\) in a whole record with the record magic`));
  assert.match(mapRecordsProblem(Buffer.concat([encodeMapRecord(1), encodeMapRecord(10)]), 10).problem!, /offset 4112: block 10 is past the partition's 10 blocks in a whole record with the record magic/);
});

test('verify checks clones: clean after writes through the clone export, read-only, each damage exit 3 naming the clone', { skip, timeout: 180_000 }, async () => {
  const t = tmpdir();
  try {
    const fx = makeFixture(t.dir);
    await ok(['create', fx.manifest, '--name', 'base']);
    await ok(['create', fx.manifest, '--name', 'other']);
    await ok(['clone', 'create', fx.manifest, 'base', 'c1']);
    await ok(['clone', 'create', fx.manifest, 'other', 'c2']);
    const store = await storeOf(fx.manifest);
    await qemuIoThroughServer(fx.manifest, [
      ['clone/c1', `write -P 0x5a 0 ${fx.size}`],
      ['clone/c2', `write -P 0x11 ${fx.blockSize + 100} 5000`],
    ]);
    const ovm = path.join(store, 'clones', 'c1', 'p1.ovm');
    const ovl = path.join(store, 'clones', 'c1', 'p1.ovl');
    assert.ok(fs.statSync(ovm).size > OVERLAY_HEADER_SIZE, 'the writes are mapped');

    // Clean, and read-only: the store is the same, byte for byte, afterwards.
    const before = digest(store);
    const clean = await vsnap(['verify', fx.manifest]);
    assert.equal(clean.code, 0, clean.stderr);
    assert.match(clean.stderr, /checked 2 snapshot\(s\), 2 clone\(s\), read .*: no problems/);
    const cj = await verifyJson(fx.manifest);
    assert.equal(cj.code, 0);
    assert.deepEqual([cj.report.ok, cj.report.snapshots, cj.report.clones, cj.report.problems], [true, 2, 2, []]);
    // With a snapshot named, its clones only.
    assert.equal((await verifyJson(fx.manifest, 'other')).report.clones, 1);
    assert.equal(digest(store), before, 'verify changed the store');

    // A torn tail (a crash mid-append) is what recovery cuts: no problem, and verify leaves it there.
    const good = fs.readFileSync(ovm);
    fs.appendFileSync(ovm, Buffer.concat([Buffer.alloc(MAP_RECORD_SIZE), encodeMapRecord(1).subarray(0, 9)]));
    const torn = fs.readFileSync(ovm);
    const tj = await verifyJson(fx.manifest);
    assert.equal(tj.code, 0, JSON.stringify(tj.report.problems));
    assert.ok(fs.readFileSync(ovm).equals(torn), 'verify cut the torn tail (it must change nothing)');

    // A bad record followed by a valid one is damage: exit 3, naming clone, partition, file and offset.
    const recs = (good.length - OVERLAY_HEADER_SIZE) / MAP_RECORD_SIZE;
    fs.writeFileSync(ovm, Buffer.concat([good, Buffer.alloc(MAP_RECORD_SIZE), encodeMapRecord(0)]));
    const bj = await verifyJson(fx.manifest);
    assert.equal(bj.code, 3);
    assert.deepEqual(bj.report.problems.map((p) => [p.clone, p.snapshot, p.partition, p.file]), [['c1', 1, 'p1', ovm]]);
    assert.match(bj.report.problems[0].message, new RegExp(`record at offset ${OVERLAY_HEADER_SIZE + recs * MAP_RECORD_SIZE}: bad record magic`));
    const bt = await vsnap(['verify', fx.manifest]);
    assert.equal(bt.code, 3);
    assert.match(bt.stderr, /problem: clone c1 of snapshot 1 partition p1 \S+p1\.ovm: .*followed by a valid record/);
    assert.match(bt.stderr, /checked 2 snapshot\(s\), 2 clone\(s\), read .*: 1 problem\(s\)/);

    // A damaged map header: the clone cannot be opened.
    fs.writeFileSync(ovm, good);
    const hdr = Buffer.from(good);
    hdr[20] ^= 0xff;
    fs.writeFileSync(ovm, hdr);
    const hj = await verifyJson(fx.manifest);
    assert.equal(hj.code, 3);
    assert.deepEqual(hj.report.problems.map((p) => [p.clone, p.partition, p.file]), [['c1', 'p1', ovm]]);
    assert.match(hj.report.problems[0].message, /at offset 0: header crc mismatch/);
    fs.writeFileSync(ovm, good);

    // The data file cut behind vsnap: mapped blocks would read as zeros.
    const data = fs.readFileSync(ovl);
    fs.truncateSync(ovl, OVERLAY_HEADER_SIZE + fx.blockSize);
    const dj = await verifyJson(fx.manifest);
    assert.equal(dj.code, 3);
    assert.deepEqual(dj.report.problems.map((p) => [p.clone, p.partition, p.file]), [['c1', 'p1', ovl]]);
    assert.match(dj.report.problems[0].message, /^4 mapped block\(s\) lie past the end of the data file \(8192 bytes\), first block [1-4] /);
    fs.writeFileSync(ovl, data);

    // clone.json damaged: named, with no snapshot.
    const cjFile = path.join(store, 'clones', 'c2', 'clone.json');
    const rec = fs.readFileSync(cjFile, 'utf8');
    fs.writeFileSync(cjFile, rec.replace('"c2"', '"c3"'));
    const rj = await verifyJson(fx.manifest);
    assert.equal(rj.code, 3);
    assert.deepEqual(rj.report.problems.map((p) => [p.clone, p.snapshot, p.partition, p.file]), [['c2', null, null, cjFile]]);

    // A clone whose snapshot is not in the store (a well-formed record naming snapshot 9).
    const fields = JSON.parse(rec) as Record<string, unknown>;
    for (const k of ['format', 'version', 'checksum']) delete fields[k];
    await writeRecord(cjFile, 'vsnap-clone', { ...fields, snapshot: { id: 9, name: 'gone' } });
    const gj = await verifyJson(fx.manifest);
    assert.equal(gj.code, 3);
    const gone = gj.report.problems.filter((p) => p.clone === 'c2');
    assert.ok(gone.some((p) => p.file === cjFile && /snapshot 9 "gone" is not in the store/.test(p.message)), JSON.stringify(gone));
    // Only the clone is wrong: no problem is a snapshot's.
    assert.ok(gj.report.problems.every((p) => p.clone !== null));
    fs.writeFileSync(cjFile, rec);
    assert.equal((await verifyJson(fx.manifest)).code, 0);
  } finally {
    t.cleanup();
  }
});

test('clone reset repairs a damaged overlay header, offline and through the server; the clone then works and verifies clean', { skip, timeout: 180_000 }, async () => {
  const t = tmpdir();
  try {
    const fx = makeFixture(t.dir);
    await ok(['create', fx.manifest, '--name', 'base']);
    await ok(['clone', 'create', fx.manifest, 'base', 'c']);
    const store = await storeOf(fx.manifest);
    const dir = path.join(store, 'clones', 'c');
    const damage = (file: string) => {
      const fd = fs.openSync(path.join(dir, file), 'r+');
      fs.writeSync(fd, Buffer.from('garbage!'), 0, 8, 0);
      fs.closeSync(fd);
    };
    const images = () => ['a.img', 'b.img', 'c.img'].map((f) => fs.readFileSync(path.join(fx.dir, f)).toString('hex')).join();
    const backing = images();
    const same = async (srv: Awaited<ReturnType<typeof startServe>>) =>
      runOk('qemu-img', ['compare', '-f', 'raw', '-F', 'raw', srv.exportUri('clone/c'), srv.exportUri('snapshot/base')]);

    let srv = await startServe(fx.manifest);
    await runOk('qemu-io', ['-f', 'raw', '-c', `write -P 0x21 0 ${fx.size}`, '-c', 'flush', srv.exportUri('clone/c')]);
    await srv.stop();

    // Offline: a damaged map header makes verify fail; reset repairs it.
    damage('p0.ovm');
    damage('p3.ovl');
    assert.equal((await verifyJson(fx.manifest)).report.problems.filter((p) => p.clone === 'c').length, 2);
    await ok(['clone', 'reset', fx.manifest, 'c']);
    assert.equal((await verifyJson(fx.manifest)).code, 0);
    srv = await startServe(fx.manifest);
    try {
      await same(srv);
      await runOk('qemu-io', ['-f', 'raw', '-c', `write -P 0x42 0 ${fx.size}`, '-c', `read -P 0x42 0 ${fx.size}`, '-c', 'flush', srv.exportUri('clone/c')]);
      // Damaged behind the running server, on overlays its workers have open: reset through the server.
      damage('p1.ovm');
      await ok(['clone', 'reset', fx.manifest, 'c']);
      await same(srv);
    } finally {
      await srv.stop();
    }
    assert.equal((await verifyJson(fx.manifest)).code, 0);

    // Damaged before the server opened it: the clone export is refused until a reset through the server.
    damage('p2.ovm');
    srv = await startServe(fx.manifest);
    try {
      const failed = await run('qemu-io', ['-f', 'raw', '-c', `read 0 ${fx.size}`, srv.exportUri('clone/c')]);
      // Refused at open (NBD_OPT_GO), naming the file and why, rather than failing each read.
      assert.notEqual(failed.code, 0, 'reading a clone whose map header is damaged fails');
      assert.match(failed.stdout + failed.stderr, /not available: \S+p2\.ovm at offset 0: bad magic/, 'reading a clone whose map header is damaged fails');
      await ok(['clone', 'reset', fx.manifest, 'c']);
      await runOk('qemu-io', ['-f', 'raw', '-c', `write -P 0x43 ${fx.blockSize} ${fx.size - fx.blockSize}`, '-c', `read -P 0x43 ${fx.blockSize} ${fx.size - fx.blockSize}`, '-c', 'flush', srv.exportUri('clone/c')]);
    } finally {
      await srv.stop();
    }
    assert.equal((await verifyJson(fx.manifest)).code, 0);
    assert.equal(images(), backing, 'the backing files never see a clone write');
  } finally {
    t.cleanup();
  }
});
