// A clone map whose last record is whole but wrong (the record magic with a
// bad crc, or a valid crc naming a block past the partition) is damage, not
// a torn append (docs/formats.md "Open and recovery"), through the real
// binary: verify exits 3 naming clone, partition, file and offset and leaves
// the map as it is; `serve` keeps serving everything else and refuses only
// that clone's export at NBD_OPT_GO, saying why in its log and to the client,
// and never cuts the map; `clone repair --dry-run` prints what it would drop
// and changes nothing; `clone repair` drops it, after which the clone
// verifies clean and reads as before except the dropped block, which reads
// as the snapshot. A partial (torn) tail is still cut silently, as before.
// Also `clone reset` over a dangling symlink (replaced) and a directory
// (refused: "not a regular file", exit 3), and verify's words for a missing
// overlay file.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { vsnap, vsnapOk as ok, storeOf, tmpdir, requireTool } from './helpers/cli.js';
import { makeFixture, type Fixture } from './helpers/volume-fixture.js';
import { run, runOk } from './nbd/harness.js';
import { startServe, qemuIoThroughServer } from './serve/harness.js';
import { encodeMapRecord, MAP_RECORD_SIZE, OVERLAY_HEADER_SIZE } from '../src/formats/overlay.js';

const skip = requireTool('qemu-io', 'qemu-utils') ?? requireTool('qemu-img', 'qemu-utils');

interface Problem {
  clone: string | null;
  partition: string | null;
  file: string | null;
  message: string;
}

async function verifyJson(manifest: string): Promise<{ code: number; problems: Problem[] }> {
  const r = await vsnap(['verify', manifest, '--json']);
  return { code: r.code, problems: (JSON.parse(r.stdout) as { problems: Problem[] }).problems };
}

/** A clone "c" of snapshot "base" whose whole volume was written (0x5a) and flushed; returns the store. */
async function writtenClone(fx: Fixture): Promise<string> {
  await ok(['create', fx.manifest, '--name', 'base']);
  await ok(['clone', 'create', fx.manifest, 'base', 'c']);
  await ok(['clone', 'create', fx.manifest, 'base', 'other']);
  await qemuIoThroughServer(fx.manifest, [['clone/c', `write -P 0x5a 0 ${fx.size}`]]);
  return storeOf(fx.manifest);
}

/** Both exports saved through a server, and what it logged. */
async function readThroughServer(fx: Fixture, dir: string): Promise<{ clone: Buffer; base: Buffer }> {
  const srv = await startServe(fx.manifest);
  try {
    const out = (n: string) => path.join(dir, `${n}.raw`);
    await runOk('qemu-img', ['convert', '-f', 'raw', '-O', 'raw', srv.exportUri('clone/c'), out('clone')]);
    await runOk('qemu-img', ['convert', '-f', 'raw', '-O', 'raw', srv.exportUri('snapshot/base'), out('base')]);
    return { clone: fs.readFileSync(out('clone')), base: fs.readFileSync(out('base')) };
  } finally {
    await srv.stop();
  }
}

for (const kind of ['crc', 'range'] as const) {
  test(`a whole bad last map record (${kind === 'crc' ? 'record magic, bad crc' : 'valid crc, block past the partition'}): verify exit 3, serve refuses only that export, clone repair drops it`, { skip, timeout: 240_000 }, async () => {
    const t = tmpdir();
    try {
      const fx = makeFixture(t.dir);
      const store = await writtenClone(fx);
      const ovm = path.join(store, 'clones', 'c', 'p0.ovm');
      const good = fs.readFileSync(ovm);
      const records = (good.length - OVERLAY_HEADER_SIZE) / MAP_RECORD_SIZE;
      assert.equal(records, 3, 'p0 has 3 blocks, all written and flushed');
      const last = OVERLAY_HEADER_SIZE + (records - 1) * MAP_RECORD_SIZE;
      const lostBlock = Number(good.readBigUInt64LE(last + 8));
      const bad = Buffer.from(good);
      if (kind === 'crc') bad[last + 4] ^= 0x01;
      else encodeMapRecord(3, bad, last); // p0 has 3 blocks: block 3 is past it, with a valid crc
      fs.writeFileSync(ovm, bad);

      // verify: exit 3, naming clone, partition, file and the record's offset; the map stays as it is.
      const v = await verifyJson(fx.manifest);
      assert.equal(v.code, 3, JSON.stringify(v.problems));
      assert.deepEqual(v.problems.map((p) => [p.clone, p.partition, p.file]), [['c', 'p0', ovm]]);
      assert.match(v.problems[0].message, new RegExp(`map record at offset ${last}: ${kind === 'crc' ? 'record crc mismatch' : "block 3 is past the partition's 3 blocks"}`));
      const vt = await vsnap(['verify', fx.manifest]);
      assert.equal(vt.code, 3);
      assert.match(vt.stderr, new RegExp(`problem: clone c of snapshot 1 partition p0 \\S+p0\\.ovm: .*offset ${last}`));
      assert.ok(fs.readFileSync(ovm).equals(bad), 'verify changed the map');

      // serve: the clone's export is refused at GO, naming the file and offset; everything else is served; the map is not cut.
      const srv = await startServe(fx.manifest);
      try {
        const r = await run('qemu-io', ['-f', 'raw', '-c', `read -P 0x5a 0 ${fx.size}`, srv.exportUri('clone/c')]);
        assert.notEqual(r.code, 0, 'the damaged clone was opened');
        assert.match(r.stdout + r.stderr, new RegExp(`not available: \\S+p0\\.ovm at offset ${last}: map record`));
        await runOk('qemu-io', ['-f', 'raw', '-c', `read 0 ${fx.size}`, srv.exportUri('live')]);
        await runOk('qemu-io', ['-r', '-f', 'raw', '-c', `read 0 ${fx.size}`, srv.exportUri('snapshot/base')]);
        await runOk('qemu-io', ['-f', 'raw', '-c', `write -P 0x33 0 4096`, '-c', 'flush', '-c', 'read -P 0x33 0 4096', srv.exportUri('clone/other')]);
        // Still refused on a second try (nothing was cut meanwhile).
        assert.notEqual((await run('qemu-io', ['-f', 'raw', '-c', 'read 0 512', srv.exportUri('clone/c')])).code, 0);
        // repair is offline: the server has the overlays open.
        const busy = await vsnap(['clone', 'repair', fx.manifest, 'c']);
        assert.equal(busy.code, 1, busy.stderr);
        assert.match(busy.stderr, /volume is served by pid \d+/);
        assert.match(srv.log(), new RegExp(`GO: export "clone/c" is not available: \\S+p0\\.ovm at offset ${last}: map record: .*vsnap clone repair`));
      } finally {
        await srv.stop();
      }
      assert.ok(fs.readFileSync(ovm).equals(bad), 'serve cut the damaged map');

      // repair --dry-run: prints the record, changes nothing.
      const dry = await vsnap(['clone', 'repair', fx.manifest, 'c', '--dry-run']);
      assert.equal(dry.code, 0, dry.stderr);
      assert.match(dry.stdout, new RegExp(`^would drop: clone c partition p0 \\S+p0\\.ovm map record at offset ${last}: `, 'm'));
      assert.match(dry.stderr, /1 map record\(s\) would be dropped.*dry run: nothing changed/);
      assert.ok(fs.readFileSync(ovm).equals(bad), 'a dry run changed the map');

      // repair: drops it (and only it), prints it; then verify is clean and the clone reads as before but for that block.
      const rep = await vsnap(['clone', 'repair', fx.manifest, 'c']);
      assert.equal(rep.code, 0, rep.stderr);
      assert.match(rep.stdout, new RegExp(`^dropped: clone c partition p0 \\S+p0\\.ovm map record at offset ${last}: `, 'm'));
      assert.ok(fs.readFileSync(ovm).equals(good.subarray(0, last)), 'the map is cut at the bad record, the records before it kept');
      assert.equal((await verifyJson(fx.manifest)).code, 0);
      assert.match((await vsnap(['clone', 'repair', fx.manifest, 'c'])).stderr, /nothing to repair/);
      const { clone, base } = await readThroughServer(fx, t.dir);
      const bs = fx.blockSize;
      const lost = clone.subarray(lostBlock * bs, (lostBlock + 1) * bs);
      // (Overwritten with a record of another block, the record of lostBlock is gone in both cases.)
      assert.ok(lost.equals(base.subarray(lostBlock * bs, (lostBlock + 1) * bs)), 'the dropped block reads as the snapshot');
      const kept = Buffer.concat([clone.subarray(0, lostBlock * bs), clone.subarray((lostBlock + 1) * bs)]);
      assert.ok(kept.every((x) => x === 0x5a), 'every other written block reads as written');
    } finally {
      t.cleanup();
    }
  });
}

test('a partial (torn) last map record is still cut at open, silently: verify clean, the clone serves its flushed writes', { skip, timeout: 120_000 }, async () => {
  const t = tmpdir();
  try {
    const fx = makeFixture(t.dir);
    const store = await writtenClone(fx);
    const ovm = path.join(store, 'clones', 'c', 'p0.ovm');
    const good = fs.readFileSync(ovm);
    fs.appendFileSync(ovm, encodeMapRecord(1).subarray(0, 15));
    assert.equal((await verifyJson(fx.manifest)).code, 0);
    const { clone } = await readThroughServer(fx, t.dir);
    assert.ok(clone.every((x) => x === 0x5a));
    assert.ok(fs.readFileSync(ovm).equals(good), 'the torn tail is cut at open');
  } finally {
    t.cleanup();
  }
});

test('clone reset replaces a dangling symlink in place of an overlay file, refuses a directory (not a regular file, exit 3); verify says "missing"', { timeout: 60_000 }, async () => {
  const t = tmpdir();
  try {
    const fx = makeFixture(t.dir);
    await ok(['create', fx.manifest, '--name', 'base']);
    await ok(['clone', 'create', fx.manifest, 'base', 'c']);
    const store = await storeOf(fx.manifest);
    const dir = path.join(store, 'clones', 'c');

    // A missing map: verify names the file and says "missing", in its own words.
    fs.rmSync(path.join(dir, 'p1.ovm'));
    const missing = await verifyJson(fx.manifest);
    assert.equal(missing.code, 3);
    assert.deepEqual(missing.problems.map((p) => [p.clone, p.partition, p.file]), [['c', 'p1', path.join(dir, 'p1.ovm')]]);
    assert.match(missing.problems[0].message, /^\S+p1\.ovm: missing \(/);
    assert.doesNotMatch(missing.problems[0].message, /ENOENT: no such file/);

    // A dangling symlink in its place: verify says missing too; reset replaces it with a fresh file.
    fs.symlinkSync(path.join(t.dir, 'nowhere'), path.join(dir, 'p1.ovm'));
    fs.rmSync(path.join(dir, 'p2.ovl'));
    fs.symlinkSync(path.join(t.dir, 'nowhere'), path.join(dir, 'p2.ovl'));
    const dangling = await verifyJson(fx.manifest);
    assert.equal(dangling.code, 3);
    assert.ok(dangling.problems.every((p) => /: missing \(/.test(p.message)), JSON.stringify(dangling.problems));
    await ok(['clone', 'reset', fx.manifest, 'c']);
    for (const f of ['p1.ovm', 'p2.ovl']) {
      const st = fs.lstatSync(path.join(dir, f));
      assert.ok(st.isFile(), `${f} is a regular file after the reset`);
      assert.equal(st.mode & 0o777, 0o600);
    }
    assert.equal((await verifyJson(fx.manifest)).code, 0);

    // A symlink to a file outside the store: the link is replaced, the file it names never written (adversary E5).
    const victim = path.join(t.dir, 'victim.txt');
    fs.writeFileSync(victim, 'precious bytes\n');
    fs.rmSync(path.join(dir, 'p0.ovm'));
    fs.symlinkSync(victim, path.join(dir, 'p0.ovm'));
    await ok(['clone', 'reset', fx.manifest, 'c']);
    assert.equal(fs.readFileSync(victim, 'utf8'), 'precious bytes\n', 'the symlink\'s target is untouched');
    assert.ok(fs.lstatSync(path.join(dir, 'p0.ovm')).isFile(), 'p0.ovm is a fresh regular file');
    assert.equal((await verifyJson(fx.manifest)).code, 0);

    // A directory in place of an overlay file: refused, named, exit 3; nothing is removed.
    fs.rmSync(path.join(dir, 'p3.ovl'));
    fs.mkdirSync(path.join(dir, 'p3.ovl'));
    fs.writeFileSync(path.join(dir, 'p3.ovl', 'keep'), 'x');
    const r = await vsnap(['clone', 'reset', fx.manifest, 'c']);
    assert.equal(r.code, 3, r.stderr);
    assert.match(r.stderr, /\S+p3\.ovl: not a regular file \(a directory\)/);
    assert.equal(fs.readFileSync(path.join(dir, 'p3.ovl', 'keep'), 'utf8'), 'x');
    // Moved away as the message says, the reset makes it again.
    fs.renameSync(path.join(dir, 'p3.ovl'), path.join(t.dir, 'moved'));
    await ok(['clone', 'reset', fx.manifest, 'c']);
    assert.equal((await verifyJson(fx.manifest)).code, 0);
  } finally {
    t.cleanup();
  }
});
