// HandleCache's flush bookkeeping with a fake fdatasync that the test
// completes or fails by hand: which sync a flush joins, when one more is
// queued, and that a failed sync fails every later one (issue 9, defect 2).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ExtentIO, HandleCache, isSyncFailure } from '../../src/worker/extent-io.js';
import { OperationError } from '../../src/errors.js';

interface Call {
  fd: number;
  resolve: () => void;
  reject: (e: Error) => void;
}

/** A HandleCache over two 64 KiB files (one extent each), whose fdatasync calls wait for the test. */
function setup() {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vsnap-handle-sync-'));
  const a = path.join(dir, 'a.img');
  const b = path.join(dir, 'b.img');
  fs.writeFileSync(a, Buffer.alloc(65536));
  fs.writeFileSync(b, Buffer.alloc(65536));
  const calls: Call[] = [];
  const handles = new HandleCache(true, {
    fdatasync: (fd) => new Promise<void>((resolve, reject) => calls.push({ fd, resolve, reject })),
  });
  const io = new ExtentIO(
    [
      { path: a, offset: 0, length: 65536 },
      { path: b, offset: 0, length: 65536 },
    ],
    handles,
  );
  const write = (off: number) => io.write(off, Buffer.alloc(512, 7));
  return { dir, a, b, calls, handles, io, write, cleanup: () => fs.rmSync(dir, { recursive: true, force: true }) };
}

/** Lets pending promise callbacks run. */
const tick = () => new Promise<void>((r) => setImmediate(r));

/** Tracks whether a promise settled, and how. */
function watch(p: Promise<void>) {
  const w = { settled: false, error: undefined as unknown };
  p.then(
    () => (w.settled = true),
    (e) => {
      w.settled = true;
      w.error = e ?? new Error('rejected');
    },
  );
  return w;
}

test('a flush with nothing written since the last sync does not sync', async () => {
  const s = setup();
  try {
    await s.handles.sync();
    assert.equal(s.calls.length, 0);
    const f = watch(s.handles.sync([s.a]));
    await tick();
    assert.equal(f.settled, true);
    assert.equal(s.calls.length, 0);
  } finally {
    s.cleanup();
  }
});

test('a second flush joins a sync that started after its writes, and waits for it', async () => {
  const s = setup();
  try {
    await s.write(0);
    const first = watch(s.handles.sync());
    await tick();
    assert.equal(s.calls.length, 1, 'one fdatasync for the one file written');
    const second = watch(s.handles.sync());
    await tick();
    assert.equal(s.calls.length, 1, 'the second flush joins the running sync');
    assert.equal(second.settled, false, 'the second flush must not return before the running sync');
    s.calls[0].resolve();
    await tick();
    assert.equal(first.settled, true);
    assert.equal(second.settled, true);
    assert.equal(first.error, undefined);
    assert.equal(second.error, undefined);
  } finally {
    s.cleanup();
  }
});

test('a write completed during a sync needs one more sync, shared by every flush that arrives meanwhile', async () => {
  const s = setup();
  try {
    await s.write(0);
    const first = watch(s.handles.sync());
    await tick();
    await s.write(512); // completes while the first sync runs: not covered by it
    const later = [watch(s.handles.sync()), watch(s.handles.sync([s.a])), watch(s.handles.sync())];
    await tick();
    assert.equal(s.calls.length, 1, 'no second fdatasync while the first runs');
    s.calls[0].resolve();
    await tick();
    assert.equal(first.settled, true);
    for (const l of later) assert.equal(l.settled, false, 'a flush after the second write waits for a sync that started after it');
    assert.equal(s.calls.length, 2, 'exactly one more fdatasync, started when the first ended');
    s.calls[1].resolve();
    await tick();
    for (const l of later) assert.deepEqual([l.settled, l.error], [true, undefined]);
    // Everything is covered now.
    await s.handles.sync();
    assert.equal(s.calls.length, 2);
  } finally {
    s.cleanup();
  }
});

test('a failed sync fails every waiter and every later sync of that file, without syncing again', async () => {
  const s = setup();
  try {
    await s.write(0); // a.img
    await s.write(65536); // b.img
    const first = watch(s.handles.sync());
    await tick();
    assert.equal(s.calls.length, 2);
    const joined = watch(s.handles.sync());
    await tick();
    const fdA = s.handles.get(s.a);
    const callA = s.calls.find((c) => c.fd === fdA)!;
    const callB = s.calls.find((c) => c.fd !== fdA)!;
    callA.reject(Object.assign(new Error('EIO: i/o error, fdatasync'), { code: 'EIO' }));
    callB.resolve();
    await tick();
    for (const w of [first, joined]) {
      assert.equal(w.settled, true);
      assert.ok(w.error instanceof OperationError, String(w.error));
      assert.ok(isSyncFailure(w.error), (w.error as Error).message);
      assert.match((w.error as Error).message, new RegExp(`fdatasync of ${s.a.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')} failed \\(EIO\\)`));
    }
    // Nothing new written: still an error (the fsyncgate pattern would succeed here).
    await assert.rejects(s.handles.sync(), (e) => isSyncFailure(e));
    await assert.rejects(s.handles.sync([s.a]), (e) => isSyncFailure(e));
    // New writes to the failed file: an error, and no fdatasync that could succeed over lost pages.
    await s.write(1024);
    await assert.rejects(s.handles.sync([s.a]), (e) => isSyncFailure(e));
    assert.equal(s.calls.length, 2, 'the failed file is never synced again');
    // The other file still syncs normally for a FUA write of it alone.
    await s.write(65536 + 512);
    const fuaB = watch(s.handles.sync([s.b]));
    await tick();
    assert.equal(s.calls.length, 3);
    s.calls[2].resolve();
    await tick();
    assert.deepEqual([fuaB.settled, fuaB.error], [true, undefined]);
    assert.deepEqual(s.handles.failures().map((f) => f.path), [s.a]);
  } finally {
    s.cleanup();
  }
});

test('a sync queued behind a failing one fails too', async () => {
  const s = setup();
  try {
    await s.write(0);
    const first = watch(s.handles.sync());
    await tick();
    await s.write(512);
    const queued = watch(s.handles.sync());
    await tick();
    s.calls[0].reject(Object.assign(new Error('EIO'), { code: 'EIO' }));
    await tick();
    assert.equal(first.settled, true);
    assert.equal(queued.settled, true);
    assert.ok(isSyncFailure(queued.error));
    assert.equal(s.calls.length, 1);
  } finally {
    s.cleanup();
  }
});

test('syncNow syncs files this process never wrote (a dead predecessor did), and its failure is reported', async () => {
  const s = setup();
  try {
    const log = path.join(s.dir, 'p0.clog');
    fs.writeFileSync(log, 'log');
    const done = watch(s.handles.syncNow([s.a, s.b], [log]));
    await tick();
    assert.equal(s.calls.length, 3, 'both backing files and the log');
    s.calls[0].resolve();
    s.calls[1].resolve();
    s.calls[2].reject(Object.assign(new Error('EIO'), { code: 'EIO' }));
    await tick();
    assert.equal(done.settled, true);
    assert.ok(isSyncFailure(done.error), String(done.error));
    assert.match((done.error as Error).message, /p0\.clog/);
  } finally {
    s.cleanup();
  }
});

test('ENOSPC from fdatasync is reported as ENOSPC', async () => {
  const s = setup();
  try {
    await s.write(0);
    const f = watch(s.handles.sync());
    await tick();
    s.calls[0].reject(Object.assign(new Error('ENOSPC'), { code: 'ENOSPC' }));
    await tick();
    assert.equal((f.error as OperationError).errno, 'ENOSPC');
  } finally {
    s.cleanup();
  }
});
