// restore, export, diff and prune through the real binary, checked against
// a model and against qemu-img (which nobody here wrote).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { spawnSync } from 'node:child_process';
import { vsnap, tmpdir, requireTool } from './helpers/cli.js';
import { makeFixture, liveFromFiles, rng, type Fixture } from './helpers/volume-fixture.js';

async function randomWrites(fx: Fixture, live: Buffer, seed: number, n: number): Promise<void> {
  const rand = rng(seed);
  for (let i = 0; i < n; i++) {
    const len = 1 + Math.floor(rand() * 3 * fx.blockSize);
    const off = Math.floor(rand() * (fx.size - len));
    const data = randomBytes(len);
    const r = await vsnap(['write', fx.manifest, '--offset', String(off)], { input: data });
    assert.equal(r.code, 0, r.stderr);
    data.copy(live, off);
  }
}

async function snap(fx: Fixture, name: string): Promise<number> {
  const r = await vsnap(['create', fx.manifest, '--name', name, '--json']);
  assert.equal(r.code, 0, r.stderr);
  return JSON.parse(r.stdout).id;
}

function qemuCompare(a: string, b: string): { code: number; out: string } {
  const r = spawnSync('qemu-img', ['compare', '-q', '-f', 'raw', '-F', 'raw', a, b], { encoding: 'utf8' });
  return { code: r.status ?? -1, out: r.stdout + r.stderr };
}

test('restore returns the live volume to a snapshot; newer snapshots still read as before', async () => {
  const t = tmpdir();
  const fx = makeFixture(t.dir, { scale: 2 });
  try {
    const live = liveFromFiles(fx);
    const s1 = await snap(fx, 's1');
    const m1 = Buffer.from(live);
    await randomWrites(fx, live, 1, 8);
    const s2 = await snap(fx, 's2');
    const m2 = Buffer.from(live);
    await randomWrites(fx, live, 2, 8);
    const s3 = await snap(fx, 's3');
    const m3 = Buffer.from(live);
    await randomWrites(fx, live, 3, 8);

    const r = await vsnap(['restore', fx.manifest, 's1', '--json']);
    assert.equal(r.code, 0, r.stderr);
    const j = JSON.parse(r.stdout);
    assert.equal(j.snapshot, s1);
    assert.ok(j.restoredBytes > 0 && j.restoredBytes % fx.blockSize === 0);
    assert.ok(j.restoredBytes < fx.size, 'restore writes only what changed');
    assert.ok(liveFromFiles(fx).equals(m1), 'backing files hold snapshot s1 after restore');
    for (const [id, model] of [[s1, m1], [s2, m2], [s3, m3]] as const) {
      const rd = await vsnap(['read', fx.manifest, '--offset', '0', '--length', String(fx.size), '--snapshot', String(id)]);
      assert.equal(rd.code, 0, rd.stderr);
      assert.ok(rd.stdoutBuf.equals(model), `snapshot ${id} still reads as taken`);
    }
    // Restoring again is idempotent; restoring the newest works too.
    assert.equal((await vsnap(['restore', fx.manifest, 's3'])).code, 0);
    assert.ok(liveFromFiles(fx).equals(m3));
  } finally {
    t.cleanup();
  }
});

test('restore --partition restores only the named partitions', async () => {
  const t = tmpdir();
  const fx = makeFixture(t.dir);
  try {
    const before = liveFromFiles(fx);
    await snap(fx, 'base');
    const junk = randomBytes(fx.size);
    assert.equal((await vsnap(['write', fx.manifest, '--offset', '0'], { input: junk })).code, 0);
    const r = await vsnap(['restore', fx.manifest, 'base', '--partition', 'p1', '--partition', 'p3']);
    assert.equal(r.code, 0, r.stderr);
    const now = liveFromFiles(fx);
    let pos = 0;
    for (const p of fx.partitions) {
      const len = p.extents.reduce((a, e) => a + e.length, 0);
      const want = p.id === 'p1' || p.id === 'p3' ? before : junk;
      assert.ok(now.subarray(pos, pos + len).equals(want.subarray(pos, pos + len)), `partition ${p.id}`);
      pos += len;
    }
    const bad = await vsnap(['restore', fx.manifest, 'base', '--partition', 'nope']);
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /--partition: no partition "nope"/);
  } finally {
    t.cleanup();
  }
});

test('export writes a sparse raw image that qemu-img compare accepts against the model', async (tt) => {
  const skip = requireTool('qemu-img', 'qemu-utils');
  if (skip) return tt.skip(skip);
  const t = tmpdir();
  const fx = makeFixture(t.dir, { scale: 4 });
  try {
    // Zero a large stretch so sparseness is visible.
    assert.equal((await vsnap(['write', fx.manifest, '--offset', '0'], { input: Buffer.alloc(fx.size - 8192) })).code, 0);
    const live = liveFromFiles(fx);
    await snap(fx, 'a');
    const modelA = path.join(t.dir, 'model-a.raw');
    fs.writeFileSync(modelA, live);
    await randomWrites(fx, live, 9, 6);
    const out = path.join(t.dir, 'a.raw');
    const r = await vsnap(['export', fx.manifest, 'a', '--output', out]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(fs.statSync(out).size, fx.size);
    const cmp = qemuCompare(modelA, out);
    assert.equal(cmp.code, 0, `qemu-img compare: ${cmp.out}`);
    assert.ok(fs.statSync(out).blocks * 512 < fx.size / 2, 'zero blocks are holes');
    const modelLive = path.join(t.dir, 'model-live.raw');
    fs.writeFileSync(modelLive, live);
    const outLive = path.join(t.dir, 'live.raw');
    assert.equal((await vsnap(['export', fx.manifest, 'live', '--output', outLive])).code, 0);
    assert.equal(qemuCompare(modelLive, outLive).code, 0);
    // Refuses to overwrite one of its own backing files.
    const bad = await vsnap(['export', fx.manifest, 'a', '--output', path.join(t.dir, 'b.img')]);
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /--output: .*b\.img is the backing file b\.img/);
  } finally {
    t.cleanup();
  }
});

test('export --split rebuilds every backing file as of the snapshot', async (tt) => {
  const skip = requireTool('qemu-img', 'qemu-utils');
  if (skip) return tt.skip(skip);
  const t = tmpdir();
  const fx = makeFixture(t.dir);
  try {
    await snap(fx, 'pristine');
    // The backing files at the snapshot instant are the expected output.
    const expected = path.join(t.dir, 'expected');
    fs.mkdirSync(expected);
    for (const f of fx.initial.keys()) fs.copyFileSync(path.join(t.dir, f), path.join(expected, f));
    await randomWrites(fx, liveFromFiles(fx), 4, 6);
    const split = path.join(t.dir, 'split');
    const r = await vsnap(['export', fx.manifest, 'pristine', '--split', split]);
    assert.equal(r.code, 0, r.stderr);
    for (const f of fx.initial.keys()) {
      const c = qemuCompare(path.join(expected, f), path.join(split, f));
      assert.equal(c.code, 0, `${f}: ${c.out}`);
      assert.equal(fs.statSync(path.join(split, f)).size, fx.initial.get(f)!.length);
    }
  } finally {
    t.cleanup();
  }
});

test('diff covers every changed byte, little else; --exact drops rewritten-equal blocks; --by-file maps to files', async () => {
  const t = tmpdir();
  const fx = makeFixture(t.dir, { scale: 2 });
  try {
    const live = liveFromFiles(fx);
    await snap(fx, 'from');
    const from = Buffer.from(live);
    await randomWrites(fx, live, 5, 10);
    await snap(fx, 'mid');
    await randomWrites(fx, live, 6, 5);
    // Rewrite an untouched block with its own content: logged as changed, equal in fact.
    const bs = fx.blockSize;
    let untouched = -1;
    for (let b = 0; b < fx.size / bs && untouched < 0; b++) if (from.subarray(b * bs, (b + 1) * bs).equals(live.subarray(b * bs, (b + 1) * bs))) untouched = b;
    assert.ok(untouched >= 0, 'the seed leaves some block untouched');
    const same = Buffer.from(live.subarray(untouched * bs, (untouched + 1) * bs));
    assert.equal((await vsnap(['write', fx.manifest, '--offset', String(untouched * bs)], { input: same })).code, 0);
    const r = await vsnap(['diff', fx.manifest, 'from', '--json', '--by-file']);
    assert.equal(r.code, 0, r.stderr);
    const d = JSON.parse(r.stdout);
    assert.equal(d.from, 1);
    assert.equal(d.to, 'live');
    const covered = new Uint8Array(fx.size);
    for (const x of d.ranges) {
      assert.equal(x.offset % 512, 0);
      covered.fill(1, x.offset, x.offset + x.length);
    }
    let changedBlocks = 0;
    for (let b = 0; b < fx.size / fx.blockSize; b++) {
      const s = b * fx.blockSize;
      if (!from.subarray(s, s + fx.blockSize).equals(live.subarray(s, s + fx.blockSize))) changedBlocks++;
    }
    for (let i = 0; i < fx.size; i++) if (from[i] !== live[i]) assert.equal(covered[i], 1, `byte ${i} changed but no range covers it`);
    const total = d.ranges.reduce((a: number, x: { length: number }) => a + x.length, 0);
    // Every touched block is reported; --exact brings it down to the changed ones.
    const ex = JSON.parse((await vsnap(['diff', fx.manifest, 'from', '--exact', '--json'])).stdout);
    const exactTotal = ex.ranges.reduce((a: number, x: { length: number }) => a + x.length, 0);
    assert.ok(exactTotal < total, '--exact dropped the equal block');
    // Blocks can straddle partitions' extents but every exact range is a changed block.
    assert.ok(exactTotal <= changedBlocks * fx.blockSize * 2, 'little else');
    assert.ok(d.files.length > 0);
    const fileBytes = d.files.reduce((a: number, x: { length: number }) => a + x.length, 0);
    assert.equal(fileBytes, total, 'file ranges cover the same bytes as volume ranges');
    // Between two snapshots.
    const mid = JSON.parse((await vsnap(['diff', fx.manifest, 'from', 'mid', '--json'])).stdout);
    assert.equal(mid.to, 2);
    assert.ok(mid.ranges.length > 0);
    const wrong = await vsnap(['diff', fx.manifest, 'mid', 'from']);
    assert.equal(wrong.code, 2);
    assert.match(wrong.stderr, /not newer/);
  } finally {
    t.cleanup();
  }
});

test('prune keeps by rules, honours --expires even with no flags, and --dry-run changes nothing', async () => {
  const t = tmpdir();
  const fx = makeFixture(t.dir);
  try {
    await snap(fx, 'keep-1');
    assert.equal((await vsnap(['create', fx.manifest, '--name', 'ci-temp', '--expires', '1s'])).code, 0);
    await snap(fx, 'keep-2');
    await new Promise((r) => setTimeout(r, 1200));
    const dry = await vsnap(['prune', fx.manifest, '--dry-run', '--json']);
    assert.equal(dry.code, 0, dry.stderr);
    const dj = JSON.parse(dry.stdout);
    assert.deepEqual(dj.deleted.map((d: { name: string }) => d.name), ['ci-temp']);
    assert.equal(JSON.parse((await vsnap(['list', fx.manifest, '--json'])).stdout).length, 3, 'dry run deleted nothing');
    const real = JSON.parse((await vsnap(['prune', fx.manifest, '--json'])).stdout);
    assert.deepEqual(real.deleted.map((d: { name: string }) => d.name), ['ci-temp']);
    assert.deepEqual(real.kept.map((d: { name: string }) => d.name), ['keep-1', 'keep-2']);
    // Named snapshots are manual: the rules leave them alone unless --include-manual.
    const manual = JSON.parse((await vsnap(['prune', fx.manifest, '--keep-last', '1', '--json'])).stdout);
    assert.deepEqual(manual.deleted, []);
    const last = JSON.parse((await vsnap(['prune', fx.manifest, '--keep-last', '1', '--include-manual', '--json'])).stdout);
    assert.deepEqual(last.deleted.map((d: { name: string }) => d.name), ['keep-1']);
    const names = JSON.parse((await vsnap(['list', fx.manifest, '--json'])).stdout).map((s: { name: string }) => s.name);
    assert.deepEqual(names, ['keep-2']);
    const bad = await vsnap(['prune', fx.manifest, '--keep-daily', 'x']);
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /--keep-daily.*"x"/);
  } finally {
    t.cleanup();
  }
});

test('a snapshot made stale by a foreign writer refuses read, export and restore (exit 3) unless --force', async () => {
  const t = tmpdir();
  const fx = makeFixture(t.dir);
  try {
    await snap(fx, 's');
    // Another program writes into c.img (partitions p2 and p3) behind vsnap's back.
    const fd = fs.openSync(path.join(t.dir, 'c.img'), 'r+');
    fs.writeSync(fd, Buffer.from('foreign'), 0, 7, 100);
    fs.closeSync(fd);
    const st = JSON.parse((await vsnap(['status', fx.manifest, '--json'])).stdout);
    const stale = st.partitions.filter((p: { stale: number[] }) => p.stale.length).map((p: { id: string }) => p.id);
    assert.deepEqual(stale, ['p2', 'p3']);
    const p2Start = fx.partitions.slice(0, 2).reduce((a, p) => a + p.extents.reduce((x, e) => x + e.length, 0), 0);
    const rd = await vsnap(['read', fx.manifest, '--offset', String(p2Start), '--length', '10', '--snapshot', 's']);
    assert.equal(rd.code, 3);
    assert.match(rd.stderr, /stale.*c\.img was modified outside vsnap.*--force/);
    assert.equal((await vsnap(['read', fx.manifest, '--offset', '0', '--length', '10', '--snapshot', 's'])).code, 0, 'p0 is not stale');
    assert.equal((await vsnap(['read', fx.manifest, '--offset', String(p2Start), '--length', '10', '--snapshot', 's', '--force'])).code, 0);
    assert.equal((await vsnap(['export', fx.manifest, 's', '--output', path.join(t.dir, 'x.raw')])).code, 3);
    assert.equal((await vsnap(['restore', fx.manifest, 's'])).code, 3);
    // It stays stale after later clean runs of vsnap.
    assert.equal((await vsnap(['write', fx.manifest, '--offset', '0'], { input: Buffer.alloc(10) })).code, 0);
    assert.equal((await vsnap(['restore', fx.manifest, 's'])).code, 3);
    assert.equal((await vsnap(['restore', fx.manifest, 's', '--force'])).code, 0);
  } finally {
    t.cleanup();
  }
});
