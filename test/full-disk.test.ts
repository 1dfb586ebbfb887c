// A store that fills up while logging (issue 9: "a full disk ... makes the
// volume unusable"): the write that hits the full disk fails with ENOSPC
// (exit 1), the failed change-log append is undone, every later command
// still works (a write fails with ENOSPC again while the disk is full, never
// EIO or an integrity error), and once space is freed writes work again and
// the snapshot still reads as it was. The store lives on a small tmpfs.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { volumeWithSmallStore } from './helpers/small-fs.js';
import { vsnap } from './helpers/cli.js';
import { liveFromFiles } from './helpers/volume-fixture.js';

const CHUNK = 16384;

test('a full disk during vsnap write: ENOSPC; then read, write, read --snapshot, verify and delete all work', async (tt) => {
  // The store on a 160 KiB file system, the backing files elsewhere.
  const v = volumeWithSmallStore();
  if (typeof v === 'string') return tt.skip(v);
  const { t, fx, small } = v;
  try {
    const s1 = liveFromFiles(fx);
    assert.equal((await vsnap(['create', fx.manifest, '--name', 's1'])).code, 0);

    const live = Buffer.from(s1);
    /** A failed write may be applied in part (it spans partitions of different workers): take what is there. */
    const settle = (off: number) => liveFromFiles(fx).copy(live, off, off, off + CHUNK);
    let failedAt = -1;
    for (let off = 0; off + CHUNK <= fx.size; off += CHUNK) {
      const data = randomBytes(CHUNK);
      const r = await vsnap(['write', fx.manifest, '--offset', String(off)], { input: data });
      if (r.code === 0) {
        data.copy(live, off);
        continue;
      }
      assert.equal(r.code, 1, r.stderr);
      assert.match(r.stderr, /ENOSPC/);
      assert.doesNotMatch(r.stderr, /internal error/);
      failedAt = off;
      settle(off);
      break;
    }
    assert.ok(failedAt > 0, 'some writes succeeded, then the store filled up');

    // Still full: the same write fails the same way, and nothing else is broken.
    const again = await vsnap(['write', fx.manifest, '--offset', String(failedAt)], { input: randomBytes(CHUNK) });
    assert.equal(again.code, 1, again.stderr);
    assert.match(again.stderr, /ENOSPC/);
    assert.doesNotMatch(again.stderr, /EIO|recorded when it was last closed cleanly/);
    settle(failedAt);
    const fullRead = await vsnap(['read', fx.manifest, '--offset', '0', '--length', String(fx.size), '--snapshot', 's1']);
    assert.equal(fullRead.code, 0, fullRead.stderr);
    assert.ok(fullRead.stdoutBuf.equals(s1), 'the snapshot reads as it was while the disk is full');

    // Space is freed: the first write works.
    small.resize('4m');
    const data = randomBytes(CHUNK);
    const w = await vsnap(['write', fx.manifest, '--offset', String(failedAt)], { input: data });
    assert.equal(w.code, 0, w.stderr);
    data.copy(live, failedAt);
    const rl = await vsnap(['read', fx.manifest, '--offset', '0', '--length', String(fx.size)]);
    assert.equal(rl.code, 0, rl.stderr);
    assert.ok(rl.stdoutBuf.equals(live), 'the live volume holds every acknowledged write');
    const rs = await vsnap(['read', fx.manifest, '--offset', '0', '--length', String(fx.size), '--snapshot', 's1']);
    assert.equal(rs.code, 0, rs.stderr);
    assert.ok(rs.stdoutBuf.equals(s1), 'the snapshot still reads as it was');
    const v = await vsnap(['verify', fx.manifest]);
    assert.equal(v.code, 0, v.stderr);
    const d = await vsnap(['delete', fx.manifest, 's1']);
    assert.equal(d.code, 0, d.stderr);
    const ls = await vsnap(['list', fx.manifest, '--json']);
    assert.equal(ls.code, 0, ls.stderr);
    assert.deepEqual(JSON.parse(ls.stdout), []);
    const after = await vsnap(['read', fx.manifest, '--offset', '0', '--length', String(fx.size)]);
    assert.ok(after.stdoutBuf.equals(live), 'deleting the snapshot leaves the live volume alone');
  } finally {
    small.unmount();
    t.cleanup();
  }
});
