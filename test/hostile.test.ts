// Integrity checks and hostile input through the real binary: damaged store
// files give exit 3 naming the file (never wrong data), a full disk fails the
// write and keeps every snapshot, names cannot escape the store, and
// concurrent vsnap processes serialize on the lock.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { volumeWithSmallStore } from './helpers/small-fs.js';
import { vsnap, tmpdir, snapshotTree } from './helpers/cli.js';
import { makeFixture, liveFromFiles } from './helpers/volume-fixture.js';

function clogOf(dir: string, id: number, part: string): string {
  return path.join(dir, '.vsnap', 'model', 'snapshots', String(id).padStart(8, '0'), `${part}.clog`);
}

test('verify passes a healthy store and reports each damaged file with exit 3; reads never return wrong data', async () => {
  const t = tmpdir();
  const fx = makeFixture(t.dir);
  try {
    const before = liveFromFiles(fx);
    assert.equal((await vsnap(['create', fx.manifest, '--name', 'a'])).code, 0);
    assert.equal((await vsnap(['write', fx.manifest, '--offset', '0'], { input: randomBytes(fx.size) })).code, 0);
    assert.equal((await vsnap(['create', fx.manifest, '--name', 'b'])).code, 0);
    const ok = await vsnap(['verify', fx.manifest, '--json']);
    assert.equal(ok.code, 0, ok.stderr);
    const oj = JSON.parse(ok.stdout);
    assert.equal(oj.ok, true);
    assert.ok(oj.bytesRead >= fx.size, 'verify read every logged block');
    assert.match(ok.stderr, /checked 2 snapshot\(s\), 0 clone\(s\), read .*: no problems/);

    // A bit flip inside a logged block of snapshot a, partition p0.
    const clog = clogOf(t.dir, 1, 'p0');
    const fd = fs.openSync(clog, 'r+');
    const b = Buffer.alloc(1);
    fs.readSync(fd, b, 0, 1, 4096 + 32 + 100);
    b[0] ^= 0x10;
    fs.writeSync(fd, b, 0, 1, 4096 + 32 + 100);
    fs.closeSync(fd);
    const bad = await vsnap(['verify', fx.manifest, '--json']);
    assert.equal(bad.code, 3);
    const bj = JSON.parse(bad.stdout);
    assert.equal(bj.ok, false);
    assert.deepEqual(bj.problems.map((p: { snapshot: number; partition: string; file: string }) => [p.snapshot, p.partition, p.file]), [[1, 'p0', clog]]);
    assert.match(bj.problems[0].message, /offset 4096/);
    // Reading the damaged block: exit 3, nothing on stdout.
    const rd = await vsnap(['read', fx.manifest, '--offset', '0', '--length', '4096', '--snapshot', 'a']);
    assert.equal(rd.code, 3);
    assert.equal(rd.stdout, '');
    assert.match(rd.stderr, new RegExp(`${clog.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')} at offset 4096`));
    // Undamaged data of the same snapshot still reads correctly.
    const p1Start = fx.partitions[0].extents[0].length;
    const rd2 = await vsnap(['read', fx.manifest, '--offset', String(p1Start), '--length', '4096', '--snapshot', 'a']);
    assert.equal(rd2.code, 0, rd2.stderr);
    assert.ok(rd2.stdoutBuf.equals(before.subarray(p1Start, p1Start + 4096)));

    // Truncating a cleanly closed log is corruption, not a torn tail.
    const clog2 = clogOf(t.dir, 1, 'p1');
    fs.truncateSync(clog2, fs.statSync(clog2).size - 1000);
    const tr = await vsnap(['verify', fx.manifest, '--json']);
    assert.equal(tr.code, 3);
    assert.ok(JSON.parse(tr.stdout).problems.some((p: { file: string }) => p.file === clog2));
    assert.equal((await vsnap(['read', fx.manifest, '--offset', String(p1Start), '--length', '10', '--snapshot', 'a'])).code, 3);

    // A tampered partition snapshot file and a tampered commit record.
    const psnap = clogOf(t.dir, 2, 'p2').replace(/\.clog$/, '.psnap');
    fs.writeFileSync(psnap, fs.readFileSync(psnap, 'utf8').replace('"worker": 0', '"worker": 1'));
    const sj = path.join(path.dirname(psnap), 'snapshot.json');
    const vj = await vsnap(['verify', fx.manifest, 'b', '--json']);
    assert.equal(vj.code, 3);
    assert.ok(JSON.parse(vj.stdout).problems.some((p: { file: string; message: string }) => p.file === psnap && /checksum/.test(p.message)));
    fs.writeFileSync(sj, fs.readFileSync(sj, 'utf8').replace('"name": "b"', '"name": "c"'));
    const vs = await vsnap(['verify', fx.manifest, '--json']);
    assert.equal(vs.code, 3);
    assert.ok(JSON.parse(vs.stdout).problems.some((p: { file: string }) => p.file === sj));
    const ls = await vsnap(['list', fx.manifest]);
    assert.equal(ls.code, 3, 'a damaged commit record is an integrity error for every command');
    assert.match(ls.stderr, /snapshot\.json/);
  } finally {
    t.cleanup();
  }
});

test('a full disk while logging fails that write (exit 1) and leaves every snapshot intact', async (tt) => {
  // The store on a 160 KiB file system, the backing files elsewhere.
  const v = volumeWithSmallStore();
  if (typeof v === 'string') return tt.skip(v);
  const { t, fx, small } = v;
  try {
    const s1 = liveFromFiles(fx);
    assert.equal((await vsnap(['create', fx.manifest, '--name', 's1'])).code, 0);
    // Writes that each need new log records, until the store fills up.
    let failed: { code: number; stderr: string } | undefined;
    const live = Buffer.from(s1);
    for (let off = 0; off + 16384 <= fx.size && !failed; off += 16384) {
      const data = randomBytes(16384);
      const r = await vsnap(['write', fx.manifest, '--offset', String(off)], { input: data });
      if (r.code === 0) data.copy(live, off);
      else failed = r;
    }
    assert.ok(failed, 'the store filled up');
    assert.equal(failed.code, 1);
    assert.match(failed.stderr, /ENOSPC|no space/i);
    // Once space returns (the operator frees some), everything reads exactly as promised.
    small.resize('4m');
    const snap = await vsnap(['read', fx.manifest, '--offset', '0', '--length', String(fx.size), '--snapshot', 's1']);
    assert.equal(snap.code, 0, snap.stderr);
    assert.ok(snap.stdoutBuf.equals(s1), 'snapshot intact after ENOSPC');
    const now = liveFromFiles(fx);
    const lastOk = live.findIndex((b, i) => b !== s1[i]);
    assert.ok(lastOk >= 0, 'some writes succeeded before the disk filled');
    const v = await vsnap(['verify', fx.manifest]);
    assert.equal(v.code, 0, v.stderr);
    // Every byte is either the snapshot's or an acknowledged write's (the failed write may be partly applied).
    for (let i = 0; i < fx.size; i++) assert.ok(now[i] === live[i] || now[i] === s1[i] || i >= live.length, `byte ${i}`);
  } finally {
    small.unmount();
    t.cleanup();
  }
});

test('snapshot names and partition ids cannot address files outside the store', async () => {
  const t = tmpdir();
  const fx = makeFixture(t.dir);
  try {
    // (A NUL cannot pass through argv at all; the control socket path is checked below.)
    const { checkSnapshotName } = await import('../src/store/names.js');
    assert.throws(() => checkSnapshotName('x\u0000y'), /--name/);
    for (const name of ['..', '../evil', '/etc/passwd', 'a/b', 'x'.repeat(129), '', 'latest', '0042']) {
      const before = snapshotTree(t.dir);
      const r = await vsnap(['create', fx.manifest, '--name', name]);
      assert.equal(r.code, 2, `name ${JSON.stringify(name)}`);
      assert.match(r.stderr, /--name/);
      assert.equal(snapshotTree(t.dir), before);
    }
    // Partition ids of dots only are legal ids; their files stay inside the snapshot directory.
    const m = JSON.parse(fs.readFileSync(fx.manifest, 'utf8'));
    m.partitions[0].id = '..';
    m.partitions[1].id = '.';
    fs.writeFileSync(fx.manifest, JSON.stringify(m));
    const c = await vsnap(['create', fx.manifest, '--json']);
    assert.equal(c.code, 0, c.stderr);
    const store = path.join(t.dir, '.vsnap', 'model');
    for (const p of JSON.parse(c.stdout).partitions) {
      for (const f of [p.snapshotFile, p.changeLogFile]) {
        assert.ok(path.resolve(f).startsWith(path.join(store, 'snapshots') + path.sep), `${f} is inside the store`);
        assert.ok(fs.existsSync(f));
      }
    }
    for (const bad of ['../x', 'a/b', 'x\u0000']) {
      m.partitions[0].id = bad;
      fs.writeFileSync(fx.manifest, JSON.stringify(m));
      const r = await vsnap(['validate', fx.manifest]);
      assert.equal(r.code, 2, `id ${JSON.stringify(bad)}`);
      assert.match(r.stderr, /partitions\[0\]\.id/);
    }
  } finally {
    t.cleanup();
  }
});

test('concurrent vsnap processes on one volume serialize on the lock; each either succeeds or changes nothing', async () => {
  const t = tmpdir();
  const fx = makeFixture(t.dir, { scale: 2 });
  try {
    assert.equal((await vsnap(['create', fx.manifest, '--name', 'base'])).code, 0);
    const base = liveFromFiles(fx);
    const slice = Math.floor(fx.size / 8);
    const datas = Array.from({ length: 8 }, () => randomBytes(slice));
    const runs = await Promise.all([
      ...datas.map((d, i) => vsnap(['write', fx.manifest, '--offset', String(i * slice)], { input: d, env: { VSNAP_LOCK_WAIT_MS: '60000' } })),
      ...[1, 2, 3].map((k) => vsnap(['create', fx.manifest, '--name', `c${k}`], { env: { VSNAP_LOCK_WAIT_MS: '60000' } })),
    ]);
    for (const r of runs) assert.equal(r.code, 0, r.stderr);
    const expect = Buffer.from(base);
    datas.forEach((d, i) => d.copy(expect, i * slice));
    assert.ok(liveFromFiles(fx).equals(expect), 'every write landed whole');
    const l = JSON.parse((await vsnap(['list', fx.manifest, '--json'])).stdout);
    assert.deepEqual(l.map((s: { name: string }) => s.name).sort(), ['base', 'c1', 'c2', 'c3']);
    const v = await vsnap(['verify', fx.manifest]);
    assert.equal(v.code, 0, v.stderr);
    // With no waiting allowed, a loser exits 1 and changes nothing.
    const fast = await Promise.all([0, 1, 2].map(() => vsnap(['create', fx.manifest], { env: { VSNAP_LOCK_WAIT_MS: '0' } })));
    const losers = fast.filter((r) => r.code !== 0);
    for (const r of losers) {
      assert.equal(r.code, 1);
      assert.match(r.stderr, /volume is busy: .* locked by pid \d+ \(create/);
    }
    const after = JSON.parse((await vsnap(['list', fx.manifest, '--json'])).stdout);
    assert.equal(after.length, 4 + fast.filter((r) => r.code === 0).length);
  } finally {
    t.cleanup();
  }
});
