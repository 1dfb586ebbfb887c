// WRITE_ZEROES (with and without NO_HOLE), FAST_ZERO and TRIM through vsnap
// serve with the real clients: the live volume reads zeroes where the model
// says, every snapshot keeps its view (read through vsnap and straight from
// the change logs on disk), holes are punched only where allowed, and zeroing
// never writes the zeroes it can punch.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { vsnap, tmpdir, requireTools } from '../helpers/cli.js';
import { liveFromFiles, checkGapsUntouched } from '../helpers/volume-fixture.js';
import { diskViews, firstDiff, readClogFile, storeDirOf } from '../crash/harness.js';
import { runOk, pattern, SYSTEM_PYTHON_ENV, assertSameBytes } from '../nbd/harness.js';
import { startServe } from './harness.js';
import { makeSparseFixture, putFile, nbdMap, referenceLiveMap, touchedBlocks, snapshotMapModel, allocatedBytes, MiB, KiB } from '../helpers/sparse-fixture.js';

const TOOLS: [string, string][] = [
  ['qemu-io', 'qemu-utils'],
  ['nbdinfo', 'libnbd-bin'],
  ['nbdcopy', 'libnbd-bin'],
  ['nbdsh', 'python3-libnbd'],
  ['nbdkit', 'nbdkit'],
];

const missing = (): string | undefined => requireTools(TOOLS);

async function nbdsh(uri: string, script: string): Promise<string> {
  return (await runOk('nbdsh', ['-u', uri, '-c', script], { env: SYSTEM_PYTHON_ENV })).stdout;
}

async function readAll(uri: string): Promise<Buffer> {
  return (await runOk('nbdcopy', [uri, '-'], { env: SYSTEM_PYTHON_ENV })).stdoutBuf;
}

test('zero (punch and NO_HOLE), FAST_ZERO and TRIM keep every snapshot; live reads the model; verify is clean', async (tt) => {
  const skip = missing();
  if (skip) return tt.skip(skip);
  const t = tmpdir();
  try {
    const fx = makeSparseFixture(t.dir);
    putFile(fx, 'a.img', 0, pattern(8 * MiB, 21)); // fully allocated files
    putFile(fx, 'b.img', 0, pattern(6 * MiB, 22));
    const files = ['a.img', 'b.img'].map((f) => path.join(t.dir, f));
    const alloc = () => files.reduce((a, f) => a + allocatedBytes(f), 0);
    // Blocks copied into the snapshot's logs, per 512-byte sector of the volume.
    const logged = new Uint8Array(fx.size / 512);
    let snapId = 0;
    let snap = Buffer.alloc(0);
    const srv = await startServe(fx.manifest);
    try {
      const c = await vsnap(['create', fx.manifest, '--name', 's1', '--json']);
      assert.equal(c.code, 0, c.stderr);
      snapId = JSON.parse(c.stdout).id as number;
      const live = liveFromFiles(fx);
      snap = Buffer.from(live);
      const log = (off: number, len: number) => {
        for (const r of touchedBlocks(fx, off, len)) logged.fill(1, r.offset / 512, (r.offset + r.length) / 512);
      };

      // A write, then a punching zero across p0/p1 (unaligned), then a NO_HOLE zero.
      await runOk('qemu-io', ['-f', 'raw', '-c', `write -P 0x44 ${3 * MiB} ${256 * KiB}`, srv.uri]);
      live.fill(0x44, 3 * MiB, 3 * MiB + 256 * KiB);
      log(3 * MiB, 256 * KiB);
      const a0 = alloc();
      await runOk('qemu-io', ['-f', 'raw', '-c', `write -z -u ${MiB + 1000} ${2 * MiB}`, srv.uri]);
      live.fill(0, MiB + 1000, 3 * MiB + 1000);
      log(MiB + 1000, 2 * MiB);
      const a1 = alloc();
      assert.ok(a0 - a1 >= MiB, `a punching zero of 2 MiB freed ${a0 - a1} bytes`);
      await runOk('qemu-io', ['-f', 'raw', '-c', `write -z ${5 * MiB + 3000} ${300 * KiB}`, srv.uri]);
      live.fill(0, 5 * MiB + 3000, 5 * MiB + 3000 + 300 * KiB);
      log(5 * MiB + 3000, 300 * KiB);
      assert.ok(alloc() >= a1, `a NO_HOLE zero (qemu-io write -z without -u) freed ${a1 - alloc()} bytes`);

      // TRIM: only whole blocks already in the newest log are punched; the rest keep their data.
      const tOff = 3 * MiB - 128 * KiB;
      const tLen = 512 * KiB;
      await runOk('qemu-io', ['-f', 'raw', '-c', `discard ${tOff} ${tLen}`, srv.uri]);
      let trimmed = 0;
      for (const r of touchedBlocks(fx, tOff, tLen)) {
        for (let b = r.offset; b < r.offset + r.length; b += fx.blockSize) {
          if (b < tOff || b + fx.blockSize > tOff + tLen || !logged[b / 512]) continue;
          live.fill(0, b, b + fx.blockSize);
          trimmed++;
        }
      }
      assert.ok(trimmed > 0, 'the trim range has logged whole blocks');

      // nbdsh: NO_HOLE with FUA; FAST_ZERO refused where a copy would be needed, done where none is.
      const out = await nbdsh(
        srv.uri,
        `
h.zero(70000, ${6 * MiB + 5000}, nbd.CMD_FLAG_NO_HOLE | nbd.CMD_FLAG_FUA)
try:
    h.zero(65536, ${7 * MiB + 100}, nbd.CMD_FLAG_FAST_ZERO)
    print("fast-unlogged ok")
except nbd.Error as e:
    print("fast-unlogged", e.errno)
h.zero(65536, ${3 * MiB + 64 * KiB}, nbd.CMD_FLAG_FAST_ZERO)
print("fast-logged ok")
h.flush()
`,
      );
      assert.match(out, /fast-unlogged ENOTSUP/);
      assert.match(out, /fast-logged ok/);
      live.fill(0, 6 * MiB + 5000, 6 * MiB + 5000 + 70000);
      log(6 * MiB + 5000, 70000);
      live.fill(0, 3 * MiB + 64 * KiB, 3 * MiB + 128 * KiB);

      assertSameBytes(await readAll(srv.uri), live, 'live through vsnap');
      assertSameBytes(liveFromFiles(fx), live, 'live backing files');
      assertSameBytes(await readAll(srv.exportUri('snapshot/s1')), snap, 'snapshot through vsnap');
      const liveMap = await referenceLiveMap(fx);
      assert.deepEqual(await nbdMap(srv.uri, fx.size), liveMap, 'live map = nbdkit maps after zero and trim');
      const loggedRanges: { offset: number; length: number }[] = [];
      logged.forEach((v, k) => v && loggedRanges.push({ offset: k * 512, length: 512 }));
      assert.deepEqual(await nbdMap(srv.exportUri('snapshot/s1'), fx.size), snapshotMapModel(liveMap, loggedRanges, fx.size), 'snapshot map');
    } finally {
      await srv.stop();
    }
    // Straight from the disk: the snapshot's view, and its logs hold exactly the blocks the model says were copied.
    const view = diskViews(fx).get(snapId)!;
    assert.ok(view.equals(snap), `snapshot ${snapId} from the change logs: ${firstDiff(view, snap)}`);
    fx.partitions.forEach((p, k) => {
      const clog = readClogFile(path.join(storeDirOf(fx), 'snapshots', String(snapId).padStart(8, '0'), `${p.id}.clog`), fx.blockSize, snapId);
      const want: number[] = [];
      const plen = p.extents.reduce((x, e) => x + e.length, 0);
      for (let b = 0; b < plen / fx.blockSize; b++) if (logged[(fx.volumeOffsets[k] + b * fx.blockSize) / 512]) want.push(b);
      assert.deepEqual([...clog.blocks.keys()].sort((x, y) => x - y), want, `partition ${p.id}: logged blocks`);
    });
    assert.equal(checkGapsUntouched(fx), undefined);
    const v = await vsnap(['verify', fx.manifest]);
    assert.equal(v.code, 0, v.stdout + v.stderr);
  } finally {
    t.cleanup();
  }
});

test('zeroing 1 GiB writes no zeroes: no snapshot punches; with a snapshot, holes need no copy and FAST_ZERO succeeds', async (tt) => {
  const skip = missing();
  if (skip) return tt.skip(skip);
  const t = tmpdir();
  try {
    const G = 1024 * MiB;
    const file = path.join(t.dir, 'big.img');
    fs.closeSync(fs.openSync(file, 'w'));
    fs.truncateSync(file, 2 * G);
    const fd = fs.openSync(file, 'r+');
    fs.writeSync(fd, pattern(MiB, 31), 0, MiB, G / 2);
    fs.writeSync(fd, pattern(MiB, 32), 0, MiB, G + 5 * MiB);
    fs.closeSync(fd);
    const manifest = path.join(t.dir, 'volume.json');
    const partitions = [0, 1].map((k) => ({ id: `p${k}`, worker: k, extents: [{ file: 'big.img', offset: k * G, length: G }] }));
    fs.writeFileSync(manifest, JSON.stringify({ name: 'big', blockSize: 65536, partitions }));
    const srv = await startServe(manifest);
    try {
      // 1 GiB across both partitions, no snapshot: punched, nothing written.
      const out = await nbdsh(srv.uri, `h.zero(${G}, ${G / 2}, nbd.CMD_FLAG_FUA)\nprint(h.pread(${MiB}, ${G / 2}) == bytes(${MiB}), h.pread(${MiB}, ${G + 5 * MiB}) == bytes(${MiB}))`);
      assert.equal(out.trim(), 'True True');
      assert.ok(allocatedBytes(file) < MiB, `the backing file allocates ${allocatedBytes(file)} bytes after zeroing 1 GiB`);
      const c = await vsnap(['create', manifest, '--name', 's1', '--json']);
      assert.equal(c.code, 0, c.stderr);
      const dir = path.join(t.dir, '.vsnap', 'big', 'snapshots', String(JSON.parse(c.stdout).id).padStart(8, '0'));
      const clogBytes = () => fs.readdirSync(dir).filter((n) => n.endsWith('.clog')).reduce((a, n) => a + fs.statSync(path.join(dir, n)).size, 0);
      const before = clogBytes();
      // Over holes, a snapshot needs no copy: FAST_ZERO is done, and the logs do not grow.
      const fast = await nbdsh(srv.uri, `h.zero(${G}, ${G / 2}, nbd.CMD_FLAG_FAST_ZERO)\nh.zero(${G}, 0)\nprint("ok")`);
      assert.equal(fast.trim(), 'ok');
      assert.equal(clogBytes(), before, 'zeroing holes under a snapshot copies nothing');
      assert.ok(allocatedBytes(file) < MiB);
    } finally {
      await srv.stop();
    }
  } finally {
    t.cleanup();
  }
});
