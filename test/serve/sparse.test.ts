// Sparse volumes through vsnap serve with the real clients: base:allocation
// tells the backing files' holes (checked against nbdkit's file plugin on the
// same files), a snapshot's map is its logged blocks plus the source's
// allocation, and nbdcopy/qemu-img copies come out sparse. Every model is
// built without vsnap (test/helpers/sparse-fixture.ts).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { vsnap, tmpdir, requireTools } from '../helpers/cli.js';
import { liveFromFiles, checkGapsUntouched } from '../helpers/volume-fixture.js';
import { runOk, pattern, SYSTEM_PYTHON_ENV, assertSameBytes } from '../nbd/harness.js';
import { startServe } from './harness.js';
import { makeSparseFixture, putFile, nbdMap, referenceLiveMap, touchedBlocks, snapshotMapModel, allocatedBytes, writeSparseImage, referenceCopyAllocation, MiB, KiB, type MapEntry } from '../helpers/sparse-fixture.js';

const TOOLS: [string, string][] = [
  ['qemu-io', 'qemu-utils'],
  ['qemu-img', 'qemu-utils'],
  ['nbdinfo', 'libnbd-bin'],
  ['nbdcopy', 'libnbd-bin'],
  ['nbdkit', 'nbdkit'],
];

const missing = (): string | undefined => requireTools(TOOLS);

const dataBytes = (m: MapEntry[]) => m.filter((e) => e.type === 0).reduce((a, e) => a + e.length, 0);

test('base:allocation: live map equals nbdkit file plugin through the mapping; snapshot map = logged blocks + source; copies are sparse', async (tt) => {
  const skip = missing();
  if (skip) return tt.skip(skip);
  const t = tmpdir();
  try {
    const fx = makeSparseFixture(t.dir);
    // Data inside extents, across an extent boundary, and in the unmapped gaps.
    putFile(fx, 'a.img', 100_000, pattern(5000, 1));
    putFile(fx, 'a.img', 4 * MiB - 8192, pattern(16 * KiB, 2)); // gap, then p1's a-extent
    putFile(fx, 'a.img', 3 * MiB, pattern(4096, 3)); // unmapped
    putFile(fx, 'b.img', MiB + 10, pattern(64 * KiB, 4));
    putFile(fx, 'b.img', 3 * MiB - 4096, pattern(8192, 5)); // end of p1's b-extent, then the gap
    putFile(fx, 'b.img', 5 * MiB, pattern(300 * KiB, 6));
    putFile(fx, 'a.img', 6 * MiB + 512 * KiB, pattern(256 * KiB, 7));
    const srv = await startServe(fx.manifest);
    try {
      const fresh = await referenceLiveMap(fx);
      assert.ok(fresh.some((e) => e.type === 3) && fresh.some((e) => e.type === 0), 'the reference has holes and data');
      assert.deepEqual(await nbdMap(srv.uri, fx.size), fresh, 'fresh volume: vsnap map = nbdkit maps through the manifest');

      const c = await vsnap(['create', fx.manifest, '--name', 's1', '--json']);
      assert.equal(c.code, 0, c.stderr);
      const before = liveFromFiles(fx);
      const writes = [
        { off: 2 * MiB - 4096, len: 8192, p: '0x11' }, // p0/p1 boundary: a hole block and a data block
        { off: 6 * MiB + 100_000, len: 1000, p: '0x22' }, // inside data
        { off: 7 * MiB + 100, len: 5000, p: '0x33' }, // inside a hole
      ];
      await runOk('qemu-io', ['-f', 'raw', ...writes.flatMap((w) => ['-c', `write -P ${w.p} ${w.off} ${w.len}`]), '-c', 'flush', srv.uri]);
      const live = await referenceLiveMap(fx);
      assert.deepEqual(await nbdMap(srv.uri, fx.size), live, 'after writes: data where written');
      const logged = writes.flatMap((w) => touchedBlocks(fx, w.off, w.len));
      const snapUri = srv.exportUri('snapshot/s1');
      const snapMap = await nbdMap(snapUri, fx.size);
      assert.deepEqual(snapMap, snapshotMapModel(live, logged, fx.size), 'snapshot map: logged blocks are data, the rest follows the source');
      assert.deepEqual(await nbdMap(srv.exportUri(`snapshot/${JSON.parse(c.stdout).id}`), fx.size), snapMap, 'by id too');

      // Content, then sparse copies: nbdcopy -S 0 (no zero detection of its own: only block status makes holes).
      const liveNow = liveFromFiles(fx);
      const out1 = path.join(t.dir, 'live-copy.raw');
      await runOk('nbdcopy', ['-S', '0', srv.uri, out1], { env: SYSTEM_PYTHON_ENV });
      assertSameBytes(fs.readFileSync(out1), liveNow, 'nbdcopy of live');
      // nbdcopy copies whole 256 KiB requests where any data is: the reference is nbdcopy from nbdkit of an image with the same map.
      const ref1 = path.join(t.dir, 'live-ref.raw');
      writeSparseImage(ref1, liveNow, live);
      const refAlloc1 = await referenceCopyAllocation(ref1, path.join(t.dir, 'live-ref-copy.raw'));
      assert.ok(allocatedBytes(out1) <= refAlloc1 && allocatedBytes(out1) < fx.size / 2, `nbdcopy of live allocates ${allocatedBytes(out1)} bytes; from nbdkit ${refAlloc1}`);
      const out2 = path.join(t.dir, 'snap-copy.raw');
      await runOk('nbdcopy', ['-S', '0', snapUri, out2], { env: SYSTEM_PYTHON_ENV });
      assertSameBytes(fs.readFileSync(out2), before, 'nbdcopy of the snapshot');
      const ref2 = path.join(t.dir, 'snap-ref.raw');
      writeSparseImage(ref2, before, snapMap);
      const refAlloc2 = await referenceCopyAllocation(ref2, path.join(t.dir, 'snap-ref-copy.raw'));
      assert.ok(allocatedBytes(out2) <= refAlloc2 && allocatedBytes(out2) < fx.size / 2, `nbdcopy of the snapshot allocates ${allocatedBytes(out2)} bytes; from nbdkit ${refAlloc2}`);
      const out3 = path.join(t.dir, 'snap-convert.raw');
      await runOk('qemu-img', ['convert', '-f', 'raw', '-O', 'raw', snapUri, out3]);
      assertSameBytes(fs.readFileSync(out3), before, 'qemu-img convert of the snapshot');
      assert.ok(allocatedBytes(out3) <= dataBytes(snapMap) + 64 * KiB, `qemu-img convert output allocates ${allocatedBytes(out3)} bytes`);
      const out4 = path.join(t.dir, 'live-convert.raw');
      await runOk('qemu-img', ['convert', '-f', 'raw', '-O', 'raw', srv.uri, out4]);
      assertSameBytes(fs.readFileSync(out4), liveNow, 'qemu-img convert of live');
      assert.ok(allocatedBytes(out4) <= dataBytes(live) + 64 * KiB, `qemu-img convert of live allocates ${allocatedBytes(out4)} bytes`);
      // qemu-img map over NBD reads the same holes.
      const qmap = JSON.parse((await runOk('qemu-img', ['map', '-f', 'raw', '--output=json', srv.uri])).stdout) as { start: number; length: number; data: boolean; zero: boolean }[];
      const qAsMap = qmap.map((e) => ({ offset: e.start, length: e.length, type: e.data ? 0 : 3 }));
      assert.deepEqual(qAsMap.filter((e) => e.type === 3).reduce((a, e) => a + e.length, 0), fx.size - dataBytes(live), 'qemu-img map: hole bytes');
    } finally {
      await srv.stop();
    }
    assert.equal(checkGapsUntouched(fx), undefined);
  } finally {
    t.cleanup();
  }
});

test('block status of a 1 TiB sparse volume answers quickly (time in the test output)', async (tt) => {
  const skip = missing();
  if (skip) return tt.skip(skip);
  const t = tmpdir();
  try {
    const T = 2 ** 40;
    const q = T / 4;
    fs.closeSync(fs.openSync(path.join(t.dir, 'big.img'), 'w'));
    fs.truncateSync(path.join(t.dir, 'big.img'), T);
    const manifest = path.join(t.dir, 'volume.json');
    const partitions = [0, 1, 2, 3].map((k) => ({ id: `p${k}`, worker: k % 2, extents: [{ file: 'big.img', offset: k * q, length: q }] }));
    fs.writeFileSync(manifest, JSON.stringify({ name: 'big', blockSize: 65536, partitions }));
    const srv = await startServe(manifest);
    try {
      const times: number[] = [];
      for (let k = 0; k < 3; k++) {
        const t0 = process.hrtime.bigint();
        const r = await runOk('nbdinfo', ['--map', '--json', srv.uri]);
        times.push(Number(process.hrtime.bigint() - t0) / 1e6);
        const entries = JSON.parse(r.stdout) as MapEntry[];
        assert.ok(entries.every((e) => e.type === 3), 'all hole,zero');
        assert.equal(entries.reduce((a, e) => a + e.length, 0), T);
      }
      // A figure for the report, not a timed assertion (the machine is shared).
      tt.diagnostic(`nbdinfo --map of a 1 TiB sparse volume (whole process, 3 runs): ${times.map((x) => x.toFixed(0)).join(', ')} ms`);
    } finally {
      await srv.stop();
    }
  } finally {
    t.cleanup();
  }
});
