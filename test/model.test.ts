// Model-based test of the snapshot engine through the in-process API (the
// same coordinator and forked workers the CLI uses): thousands of random
// writes, creates, deletes and reads, every read checked against a plain
// in-memory model, and the backing files checked byte-for-byte after every
// mutation.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { loadManifest } from '../src/manifest/load.js';
import { Store } from '../src/store/store.js';
import { Cluster } from '../src/coordinator/cluster.js';
import { tmpdir } from './helpers/cli.js';
import { makeFixture, liveFromFiles, checkGapsUntouched, rng } from './helpers/volume-fixture.js';

async function openCluster(manifest: string): Promise<{ store: Store; cluster: Cluster }> {
  const store = await Store.open(loadManifest(manifest), { command: 'test', create: true });
  const cluster = await Cluster.start(store);
  return { store, cluster };
}

const SEEDS = (process.env.VSNAP_MODEL_SEEDS ?? '1,2,3').split(',').map(Number);
const STEPS = Number(process.env.VSNAP_MODEL_STEPS ?? 700);

for (const seed of SEEDS) {
  test(`random operations match the model (seed ${seed}, ${STEPS} steps)`, async () => {
    const t = tmpdir();
    const fx = makeFixture(t.dir, { blockSize: 4096, scale: 4 });
    const rand = rng(seed);
    const int = (n: number) => Math.floor(rand() * n);
    let live = liveFromFiles(fx);
    const snaps = new Map<number, Buffer>();
    let { store, cluster } = await openCluster(fx.manifest);
    const counts = { write: 0, create: 0, delete: 0, read: 0, reopen: 0 };
    try {
      for (let step = 0; step < STEPS; step++) {
        const r = rand();
        const where = `seed ${seed} step ${step}`;
        if (r < 0.5) {
          // Unaligned offsets and lengths, often spanning blocks, extents and partitions.
          const len = 1 + int(r < 0.1 ? 6 * fx.blockSize : 2 * fx.blockSize);
          const off = int(fx.size - len + 1);
          const data = randomBytes(len);
          await cluster.write(off, data, rand() < 0.1);
          data.copy(live, off);
          counts.write++;
          assert.ok(liveFromFiles(fx).equals(live), `${where}: backing files differ from the model after write ${off}+${len}`);
          const gap = checkGapsUntouched(fx);
          assert.equal(gap, undefined, `${where}: ${gap}`);
        } else if (r < 0.58) {
          const rec = await cluster.createSnapshot(`s${step}`, null);
          snaps.set(rec.id, Buffer.from(live));
          counts.create++;
        } else if (r < 0.63 && snaps.size > 0) {
          const ids = [...snaps.keys()];
          const id = ids[int(ids.length)];
          await cluster.deleteSnapshot(id);
          snaps.delete(id);
          counts.delete++;
        } else if (r < 0.66) {
          // Close cleanly and reopen: logs, indexes and state must survive.
          await cluster.close();
          store.release();
          ({ store, cluster } = await openCluster(fx.manifest));
          assert.deepEqual(store.snapshots.map((s) => s.id), [...snaps.keys()].sort((a, b) => a - b), `${where}: snapshots after reopen`);
          counts.reopen++;
        } else {
          const ids = [0, ...snaps.keys()];
          const view = ids[int(ids.length)];
          const len = 1 + int(3 * fx.blockSize);
          const off = int(fx.size - len + 1);
          const got = await cluster.read(view, off, len);
          const model = view === 0 ? live : snaps.get(view)!;
          assert.ok(got.equals(model.subarray(off, off + len)), `${where}: read of ${view === 0 ? 'live' : `snapshot ${view}`} at ${off}+${len} differs from the model`);
          counts.read++;
        }
      }
      // Finally every snapshot read whole.
      for (const [id, model] of snaps) {
        assert.ok((await cluster.read(id, 0, fx.size)).equals(model), `seed ${seed}: snapshot ${id} read whole differs`);
      }
      assert.ok(counts.create > 5 && counts.delete > 2 && counts.write > 100, `too few operations of some kind: ${JSON.stringify(counts)}`);
    } finally {
      await cluster.close().catch(() => cluster.kill());
      store.release();
      t.cleanup();
    }
  });
}

test('concurrent writes to one block copy it once and the snapshot keeps the old block', async () => {
  const t = tmpdir();
  const fx = makeFixture(t.dir, { blockSize: 4096, scale: 4 });
  const { store, cluster } = await openCluster(fx.manifest);
  try {
    const before = liveFromFiles(fx);
    const rec = await cluster.createSnapshot('s', null);
    // 32 overlapping unaligned writes into the same two blocks, all at once.
    const writes = Array.from({ length: 32 }, (_, i) => ({ off: 4096 - 700 + i * 37, data: randomBytes(900) }));
    await Promise.all(writes.map((w) => cluster.write(w.off, w.data)));
    const snap = await cluster.read(rec.id, 0, fx.size);
    assert.ok(snap.equals(before), 'the snapshot must still read the old contents');
    const st = await cluster.status();
    const logged = st.flatMap((s) => s.partitions).reduce((a, p) => a + p.loggedBlocks, 0);
    assert.equal(logged, 2, 'two blocks touched, two blocks logged: one copy per block');
  } finally {
    await cluster.close();
    store.release();
    t.cleanup();
  }
});

test('partition snapshots are written by the workers that own them, not the coordinator', async () => {
  const t = tmpdir();
  const fx = makeFixture(t.dir);
  const { store, cluster } = await openCluster(fx.manifest);
  try {
    const rec = await cluster.createSnapshot('pids', null);
    const pids = new Map(rec.partitions.map((p) => [p.id, p.pid]));
    assert.notEqual(pids.get('p0'), process.pid);
    // p0 and p2 share worker 0; p1 is worker 1; p3 is worker 2.
    assert.equal(pids.get('p0'), pids.get('p2'));
    assert.notEqual(pids.get('p0'), pids.get('p1'));
    assert.notEqual(pids.get('p1'), pids.get('p3'));
    for (const pid of pids.values()) assert.notEqual(pid, process.pid);
    const { readPartitionSnapshot } = await import('../src/formats/psnap.js');
    const path = await import('node:path');
    const { snapshotDir } = await import('../src/store/store.js');
    for (const p of rec.partitions) {
      const st = await readPartitionSnapshot(path.join(snapshotDir(store.dir, rec.id), p.snapshotFile));
      assert.equal(st.pid, p.pid, 'the psnap names the pid that wrote it');
      assert.equal(st.worker, p.worker);
    }
  } finally {
    await cluster.close();
    store.release();
    t.cleanup();
  }
});
