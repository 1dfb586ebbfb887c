// The descriptor pool (src/formats/fd-pool.ts) and the change logs on top of
// it: LRU eviction, no close while a use is in flight, reopen after eviction
// (same inode or an IntegrityError), pinning, and a bound on the descriptors
// really held (counted in /proc/self/fd, not taken from the pool's word).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { open } from 'node:fs/promises';
import path from 'node:path';
import { FdPool, changeLogFds, type PooledFile } from '../../src/formats/fd-pool.js';
import { ChangeLog, type ChangeLogHeader } from '../../src/formats/changelog.js';
import { blockData, rejectsIntegrity, tempDir } from './util.js';

/** Descriptors of this process open on files under `dir`. */
function fdsUnder(dir: string): number {
  let n = 0;
  for (const fd of fs.readdirSync('/proc/self/fd')) {
    try {
      if (fs.readlinkSync(`/proc/self/fd/${fd}`).startsWith(dir + path.sep)) n++;
    } catch {
      // closed meanwhile (readdir's own descriptor)
    }
  }
  return n;
}

async function adoptNew(pool: FdPool, file: string, content = path.basename(file)): Promise<PooledFile> {
  fs.writeFileSync(file, content);
  const fh = await open(file, 'r');
  return pool.adopt(file, 'r', fh, await fh.stat());
}

async function readAll(f: PooledFile): Promise<string> {
  return f.use(async (fh) => {
    const b = Buffer.alloc(64);
    const { bytesRead } = await fh.read(b, 0, 64, 0);
    return b.subarray(0, bytesRead).toString();
  });
}

test('the pool keeps at most `limit` idle descriptors, closing the least recently used', async () => {
  const { dir, cleanup } = tempDir();
  try {
    const pool = new FdPool(3);
    const files: PooledFile[] = [];
    for (let i = 0; i < 6; i++) files.push(await adoptNew(pool, path.join(dir, `f${i}`)));
    await pool.settle();
    assert.equal(fdsUnder(dir), 3);
    assert.deepEqual(files.map((f) => f.isOpen), [false, false, false, true, true, true]);
    // Using f3 makes it the most recent: the next open evicts f4, not f3.
    assert.equal(await readAll(files[3]), 'f3');
    assert.equal(await readAll(files[0]), 'f0'); // reopened after eviction, right content
    await pool.settle();
    assert.deepEqual(files.map((f) => f.isOpen), [true, false, false, true, false, true]);
    assert.equal(fdsUnder(dir), 3);
    for (const f of files) await f.close();
    assert.equal(fdsUnder(dir), 0);
  } finally {
    cleanup();
  }
});

test('a descriptor in use is never evicted, and close() waits for its users', async () => {
  const { dir, cleanup } = tempDir();
  try {
    const pool = new FdPool(1);
    const a = await adoptNew(pool, path.join(dir, 'a'));
    const fh = a.tryAcquire();
    assert.ok(fh, 'open descriptors are handed out without a reopen');
    const b = await adoptNew(pool, path.join(dir, 'b'));
    await pool.settle();
    // `a` is the least recently used but busy: the idle `b` goes instead.
    assert.equal(a.isOpen, true);
    assert.equal(b.isOpen, false);
    assert.equal(fdsUnder(dir), 1);
    const buf = Buffer.alloc(1);
    assert.equal((await fh.read(buf, 0, 1, 0)).bytesRead, 1);
    // ... and close() waits for the user: the descriptor still works meanwhile.
    let closed = false;
    const closing = a.close().then(() => (closed = true));
    await new Promise((r) => setTimeout(r, 20));
    assert.equal(closed, false);
    assert.equal((await fh.read(buf, 0, 1, 0)).bytesRead, 1);
    await assert.rejects(a.acquire(), /is closed/);
    a.release();
    await closing;
    assert.equal(closed, true);
    assert.equal(fdsUnder(dir), 0);
    assert.equal(await readAll(b), 'b');
    await b.close();
  } finally {
    cleanup();
  }
});

test('the bound is soft while everything is busy; descriptors over it close as their uses end', async () => {
  const { dir, cleanup } = tempDir();
  try {
    const pool = new FdPool(2);
    const [x, y] = [await adoptNew(pool, path.join(dir, 'x')), await adoptNew(pool, path.join(dir, 'y'))];
    assert.ok(x.tryAcquire());
    assert.ok(y.tryAcquire());
    const z = await adoptNew(pool, path.join(dir, 'z'));
    await pool.settle();
    assert.equal(z.isOpen, false, 'the only idle one is evicted at once');
    await z.acquire(); // reopened although x and y are busy: I/O never waits for a descriptor
    await pool.settle();
    assert.equal(fdsUnder(dir), 3);
    x.release();
    await pool.settle();
    assert.equal(fdsUnder(dir), 2);
    assert.equal(x.isOpen, false);
    y.release();
    z.release();
    await pool.settle();
    assert.equal(fdsUnder(dir), 2);
    for (const f of [x, y, z]) await f.close();
  } finally {
    cleanup();
  }
});

test('a pinned file keeps its descriptor; unpinned, it is evicted like the others', async () => {
  const { dir, cleanup } = tempDir();
  try {
    const pool = new FdPool(1);
    const newest = await adoptNew(pool, path.join(dir, 'newest'));
    newest.pin(true);
    const others: PooledFile[] = [];
    for (let i = 0; i < 4; i++) others.push(await adoptNew(pool, path.join(dir, `o${i}`)));
    await pool.settle();
    assert.equal(newest.isOpen, true);
    assert.deepEqual(others.map((f) => f.isOpen), [false, false, false, false]);
    assert.equal(fdsUnder(dir), 1);
    assert.equal(await readAll(others[0]), 'o0'); // over the bound only while in use
    await pool.settle();
    assert.equal(fdsUnder(dir), 1);
    newest.pin(false);
    assert.equal(await readAll(others[1]), 'o1');
    await pool.settle();
    assert.equal(newest.isOpen, false, 'unpinned, it is the least recently used');
    assert.equal(fdsUnder(dir), 1);
    assert.equal(await readAll(newest), 'newest');
    for (const f of [newest, ...others]) await f.close();
  } finally {
    cleanup();
  }
});

test('a file replaced behind the pool while evicted is an integrity error on reopen', async () => {
  const { dir, cleanup } = tempDir();
  try {
    const pool = new FdPool(1);
    const a = await adoptNew(pool, path.join(dir, 'a'));
    const b = await adoptNew(pool, path.join(dir, 'b'));
    await pool.settle();
    assert.equal(a.isOpen, false);
    fs.writeFileSync(path.join(dir, 'a.new'), 'imposter');
    fs.renameSync(path.join(dir, 'a.new'), path.join(dir, 'a'));
    await rejectsIntegrity(readAll(a), /a was replaced behind vsnap/, /inode/);
    fs.rmSync(path.join(dir, 'a'));
    await assert.rejects(readAll(a), (e: Error) => /reopening the file failed/.test(e.message) && /ENOENT/.test(e.message));
    await pool.settle();
    assert.equal(fdsUnder(dir), 1, 'failed reopens leave no descriptor behind');
    await a.close();
    await b.close();
  } finally {
    cleanup();
  }
});

const BS = 512;
const FP = 'ab'.repeat(32);
const hdr = (id: number): ChangeLogHeader => ({ snapshotId: id, partitionId: 'p0', blockSize: BS, fingerprint: FP, createdAtMs: 1_700_000_000_000 });

test('change logs: many logs, few descriptors, every read right after evictions (appends, merge and verify too)', async () => {
  const { dir, cleanup } = tempDir();
  const pool = changeLogFds();
  const saved = pool.limit;
  pool.limit = 4;
  try {
    const N = 40;
    const logs: ChangeLog[] = [];
    for (let id = 1; id <= N; id++) {
      const log = await ChangeLog.create(path.join(dir, `${id}.clog`), hdr(id), { blockCount: 64 });
      // Log `id` holds blocks id % 7 .. +2, generation id: a mix-up shows in the content.
      await log.appendBatch([0, 1, 2].map((k) => ({ block: (id % 7) + k * 10, data: blockData((id % 7) + k * 10, BS, id) })));
      logs.push(log);
    }
    await pool.settle();
    assert.ok(fdsUnder(dir) <= 4, `${fdsUnder(dir)} descriptors held for ${N} logs`);
    // Reopen them all as a worker does at start: scanned, then released.
    for (const l of logs) await l.close();
    assert.equal(fdsUnder(dir), 0);
    const reopened: ChangeLog[] = [];
    for (let id = 1; id <= N; id++) {
      reopened.push(await ChangeLog.open(path.join(dir, `${id}.clog`), { expect: { snapshotId: id, partitionId: 'p0', blockSize: BS, fingerprint: FP }, blockCount: 64, cleanClose: true }));
    }
    await pool.settle();
    assert.ok(fdsUnder(dir) <= 4, `${fdsUnder(dir)} descriptors held after opening ${N} logs`);
    // Concurrent reads across all logs, in a scrambled order.
    const order = reopened.map((_, i) => (i * 17) % N);
    await Promise.all(
      order.map(async (i) => {
        const id = i + 1;
        for (const k of [0, 1, 2]) {
          const b = (id % 7) + k * 10;
          assert.deepEqual(await reopened[i].readBlock(b), blockData(b, BS, id), `log ${id} block ${b}`);
        }
      }),
    );
    await pool.settle();
    assert.ok(fdsUnder(dir) <= 4);
    // A merge between two evicted logs, then verify of both.
    // Log 1 holds blocks 1, 11, 21 and log 40 blocks 5, 15, 25: all three move.
    assert.equal(await ChangeLog.mergeFrom(reopened[0], reopened[N - 1]), 3);
    for (const l of [reopened[0], reopened[N - 1]]) assert.deepEqual((await l.verify()).problems, []);
    for (const blk of [5, 15, 25]) assert.deepEqual(await reopened[0].readBlock(blk), blockData(blk, BS, N));
    assert.deepEqual(await reopened[0].readBlock(11), blockData(11, BS, 1));
    // A pinned log stays open through a burst of reads of others.
    reopened[5].pin();
    for (const l of reopened) await l.readBlock(l.blocks().next().value as number);
    await pool.settle();
    assert.ok(fdsUnder(dir) <= 5);
    const st = fs.readlinkSync; // the pinned one is among them
    const open6 = fs.readdirSync('/proc/self/fd').some((fd) => {
      try {
        return st(`/proc/self/fd/${fd}`) === path.join(dir, '6.clog');
      } catch {
        return false;
      }
    });
    assert.equal(open6, true, 'the pinned log kept its descriptor');
    for (const l of reopened) await l.close();
    assert.equal(fdsUnder(dir), 0);
  } finally {
    pool.limit = saved;
    cleanup();
  }
});
