// The commit protocol of a create while `vsnap serve` runs (issue 9, defect
// 1): a worker that dies after PREPARE and before the commit rename aborts
// the create; one that dies after the rename is restarted with the list on
// disk, so later writes still copy into the new snapshot's log; a failed
// fsync of snapshots/ is undone or, if it cannot be, the snapshot stands and
// writes wait until the directory is durable. What `create` reports must be
// what is on disk, and every snapshot is checked against a model computed
// from the files on disk (crash/harness.ts: diskViews), not only through vsnap.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { spawn } from 'node:child_process';
import { vsnap, tmpdir, requireTool } from '../helpers/cli.js';
import { makeFixture, liveFromFiles, type Fixture } from '../helpers/volume-fixture.js';
import { run, runOk } from '../nbd/harness.js';
import { diskSnapshotIds, diskViews, storeDirOf, firstDiff } from '../crash/harness.js';
import { startServe, type Server } from './harness.js';

const BS = 65536;

function qemuIo(uri: string, cmds: string[], readOnly = false) {
  return run('qemu-io', [...(readOnly ? ['-r'] : []), '-f', 'raw', ...cmds.flatMap((c) => ['-c', c]), uri]);
}

async function qemuIoOk(uri: string, cmds: string[], readOnly = false): Promise<void> {
  const r = await runOk('qemu-io', [...(readOnly ? ['-r'] : []), '-f', 'raw', ...cmds.flatMap((c) => ['-c', c]), uri]);
  assert.doesNotMatch(r.stdout + r.stderr, /failed|error|Pattern verification/i, `qemu-io ${cmds.join('; ')}`);
}

async function waitFor(what: string, cond: () => boolean, ms = 20_000): Promise<void> {
  const until = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** Child pids of a process (its workers), from /proc. */
function childPids(pid: number): number[] {
  const out: number[] = [];
  for (const task of fs.readdirSync(`/proc/${pid}/task`)) {
    const raw = fs.readFileSync(`/proc/${pid}/task/${task}/children`, 'utf8').trim();
    if (raw) out.push(...raw.split(/\s+/).map(Number));
  }
  return out;
}

function snapshotEntries(fx: Fixture): string[] {
  return fs.readdirSync(path.join(storeDirOf(fx), 'snapshots')).sort();
}

function assertLive(fx: Fixture, model: Buffer, when: string): void {
  const live = liveFromFiles(fx);
  assert.ok(live.equals(model), `live volume ${when}: ${firstDiff(live, model)}`);
}

/** After the server stopped: vsnap's reads, the on-disk model and verify agree with the expected views. */
async function checkStopped(fx: Fixture, live: Buffer, snaps: Map<string, Buffer>): Promise<void> {
  const l = await vsnap(['list', fx.manifest, '--json']);
  assert.equal(l.code, 0, l.stderr);
  assert.deepEqual((JSON.parse(l.stdout) as { name: string }[]).map((s) => s.name), [...snaps.keys()], 'list');
  const ids = diskSnapshotIds(fx);
  assert.equal(ids.length, snaps.size, `snapshots on disk: ${ids}`);
  const views = diskViews(fx);
  let k = 0;
  for (const [name, expected] of snaps) {
    const fromDisk = views.get(ids[k++])!;
    assert.ok(fromDisk.equals(expected), `snapshot ${name} as the logs on disk hold it: ${firstDiff(fromDisk, expected)}`);
    const r = await vsnap(['read', fx.manifest, '--snapshot', name, '--offset', '0', '--length', String(fx.size)]);
    assert.equal(r.code, 0, r.stderr);
    assert.ok(r.stdoutBuf.equals(expected), `vsnap read --snapshot ${name}: ${firstDiff(r.stdoutBuf, expected)}`);
  }
  const r = await vsnap(['read', fx.manifest, '--offset', '0', '--length', String(fx.size)]);
  assert.equal(r.code, 0, r.stderr);
  assert.ok(r.stdoutBuf.equals(live), `vsnap read of the live volume: ${firstDiff(r.stdoutBuf, live)}`);
  assertLive(fx, live, 'after the server stopped');
  const v = await vsnap(['verify', fx.manifest, '--json']);
  assert.equal(v.code, 0, v.stdout + v.stderr);
  assert.equal(JSON.parse(v.stdout).ok, true);
}

test('serve: a worker killed after PREPARE, before the commit rename, aborts the create; nothing on disk; writes and reads stay right', async (tt) => {
  const skip = requireTool('qemu-io', 'qemu-utils');
  if (skip) return tt.skip(skip);
  const t = tmpdir();
  const fx = makeFixture(t.dir, { blockSize: BS, scale: 1 });
  let srv: Server | undefined;
  try {
    srv = await startServe(fx.manifest, [], { VSNAP_FAULT: 'worker-1-after-prepare' });
    await qemuIoOk(srv.uri, [`write -P 0x11 0 ${fx.size}`, 'flush']);
    const model = Buffer.alloc(fx.size, 0x11);
    assertLive(fx, model, 'after the first writes');
    for (const name of ['cut', 'cut-again']) {
      const c = await vsnap(['create', fx.manifest, '--name', name, '--json']);
      assert.equal(c.code, 1, `create ${name} must fail when a worker dies before the commit point: ${c.stdout}${c.stderr}`);
      assert.match(c.stderr, /worker 1 \(pid \d+\) exited on signal SIGKILL/);
      assert.deepEqual(snapshotEntries(fx), [], 'no snapshot and no .tmp directory on disk after the aborted create');
      const l = await vsnap(['list', fx.manifest, '--json']);
      assert.equal(l.code, 0, l.stderr);
      assert.deepEqual(JSON.parse(l.stdout), []);
    }
    // The create returned after worker 1's restart: writes reach every partition again.
    assert.match(srv.log(), /worker 1 \(pid \d+\) died; restarting it/);
    assert.match(srv.log(), /worker 1 restarted as pid \d+/);
    await qemuIoOk(srv.uri, [`write -P 0x22 ${BS} ${fx.size - 2 * BS}`, `read -P 0x22 ${BS} ${fx.size - 2 * BS}`, `read -P 0x11 0 ${BS}`, 'flush']);
    model.fill(0x22, BS, fx.size - BS);
    assertLive(fx, model, 'after writes following the aborted creates');
    await srv.stop();
    srv = undefined;
    await checkStopped(fx, model, new Map());
  } finally {
    if (srv) await srv.stop().catch(() => undefined);
    t.cleanup();
  }
});

test('serve: a worker killed after the commit rename, before THAW, is restarted with the committed list; its writes copy into the new log', async (tt) => {
  const skip = requireTool('qemu-io', 'qemu-utils');
  if (skip) return tt.skip(skip);
  const t = tmpdir();
  const fx = makeFixture(t.dir, { blockSize: BS, scale: 1 });
  const pause = path.join(t.dir, 'paused');
  let srv: Server | undefined;
  try {
    srv = await startServe(fx.manifest, [], { VSNAP_PAUSE: 'create-after-commit', VSNAP_PAUSE_FILE: pause });
    const s = srv;
    await qemuIoOk(s.uri, [`write -P 0x33 0 ${fx.size}`, 'flush']);
    const atCreate = liveFromFiles(fx);
    const creating = vsnap(['create', fx.manifest, '--name', 'cut', '--json']);
    await waitFor('the coordinator to pause after the commit rename', () => fs.existsSync(pause));
    assert.equal(diskSnapshotIds(fx).length, 1, 'the commit rename is done while paused');
    const workers = childPids(s.proc.pid!);
    assert.equal(workers.length, 3, `three workers: ${workers}`);
    // Any worker will do: every partition is written below.
    const victim = workers[workers.length - 1];
    process.kill(victim, 'SIGKILL');
    await waitFor('the server to see the worker die', () => s.log().includes(`(pid ${victim}) died; restarting it`));
    // Long enough for a restart that did not wait for the outcome to have opened the old list.
    await new Promise((r) => setTimeout(r, 1500));
    fs.rmSync(pause);
    const c = await creating;
    assert.equal(c.code, 0, `the commit point was passed, so create reports the snapshot: ${c.stderr}`);
    const id = JSON.parse(c.stdout).id as number;
    assert.deepEqual(diskSnapshotIds(fx), [id], 'what create reported is on disk');
    assert.match(s.log(), /restarted as pid \d+/);
    // Every partition is written after the thaw, the restarted worker's included.
    await qemuIoOk(s.uri, [`write -P 0x44 0 ${fx.size}`, 'flush']);
    const live = Buffer.alloc(fx.size, 0x44);
    assertLive(fx, live, 'after writes following the create');
    assert.ok(atCreate.equals(Buffer.alloc(fx.size, 0x33)));
    await qemuIoOk(s.exportUri('snapshot/cut'), [`read -P 0x33 0 ${fx.size}`], true);
    await s.stop();
    srv = undefined;
    await checkStopped(fx, live, new Map([['cut', atCreate]]));
  } finally {
    if (srv) await srv.stop().catch(() => undefined);
    t.cleanup();
  }
});

test('serve: workers killed in the middle of a delete: delete fails, the snapshot stays on disk and reads as before, restarted workers log into it', async (tt) => {
  const skip = requireTool('qemu-io', 'qemu-utils');
  if (skip) return tt.skip(skip);
  const t = tmpdir();
  const fx = makeFixture(t.dir, { blockSize: BS, scale: 1 });
  let srv: Server | undefined;
  try {
    srv = await startServe(fx.manifest, [], { VSNAP_FAULT: 'worker-delete-after-merge' });
    const s = srv;
    await qemuIoOk(s.uri, [`write -P 0x71 0 ${fx.size}`, 'flush']);
    const at1 = liveFromFiles(fx);
    assert.equal((await vsnap(['create', fx.manifest, '--name', 's1'])).code, 0);
    await qemuIoOk(s.uri, [`write -P 0x72 0 ${fx.size / 2}`, 'flush']);
    const at2 = liveFromFiles(fx);
    assert.equal((await vsnap(['create', fx.manifest, '--name', 's2'])).code, 0);
    const d = await vsnap(['delete', fx.manifest, 's2']);
    assert.equal(d.code, 1, `the delete must fail when its workers die before the commit point: ${d.stderr}`);
    assert.match(d.stderr, /worker \d+ \(pid \d+\) exited on signal SIGKILL/);
    assert.equal(diskSnapshotIds(fx).length, 2, 'both snapshots are still on disk');
    const l = await vsnap(['list', fx.manifest, '--json']);
    assert.deepEqual((JSON.parse(l.stdout) as { name: string }[]).map((x) => x.name), ['s1', 's2'], 'what delete reported is on disk');
    // The restarted workers opened s2's log again: these writes must copy into it.
    await qemuIoOk(s.uri, [`write -P 0x73 0 ${fx.size}`, 'flush']);
    await qemuIoOk(s.exportUri('snapshot/s2'), [`read -P 0x72 0 ${fx.size / 2}`, `read -P 0x71 ${fx.size / 2} ${fx.size / 2}`], true);
    await s.stop();
    srv = undefined;
    await checkStopped(fx, Buffer.alloc(fx.size, 0x73), new Map([['s1', at1], ['s2', at2]]));
  } finally {
    if (srv) await srv.stop().catch(() => undefined);
    t.cleanup();
  }
});

/** Attach strace to a running server (all its threads) to fail chosen syscalls; it detaches when the server exits. */
async function attachStrace(pid: number, args: string[], log: string): Promise<{ exited: Promise<number | null> }> {
  const st = spawn('strace', ['-qq', '-f', '-o', log, ...args, '-p', String(pid)], { stdio: ['ignore', 'ignore', 'pipe'] });
  let err = '';
  st.stderr.on('data', (d: Buffer) => (err += d));
  const exited = new Promise<number | null>((r) => st.on('exit', r));
  const tracedBy = (task: string) => /TracerPid:\s+(\d+)/.exec(fs.readFileSync(`/proc/${pid}/task/${task}/status`, 'utf8'))?.[1];
  await waitFor(`strace to attach to every thread of ${pid}`, () => {
    if (st.exitCode !== null) throw new Error(`strace exited ${st.exitCode}: ${err}`);
    return fs.readdirSync(`/proc/${pid}/task`).every((task) => tracedBy(task) === String(st.pid));
  });
  // Not the promise itself: an async function would wait for it.
  return { exited };
}

const EIO_CASES = [
  {
    what: 'the fsync of snapshots/ after the rename fails once: the rename is undone, create fails, nothing on disk',
    inject: (sdir: string) => ['-P', sdir, '-e', 'trace=fsync', '-e', 'inject=fsync:error=EIO:when=1'],
    committed: false,
    heldWrites: 0,
  },
  {
    what: 'the fsync fails and so does the undo rename: the snapshot is committed, create reports it, writes fail until snapshots/ is durable',
    // rename(final, tmp) is the only rename whose first path is the final directory.
    inject: (sdir: string) => ['-P', sdir, '-P', path.join(sdir, '00000001'), '-e', 'trace=fsync,rename', '-e', 'inject=fsync:error=EIO:when=1..2', '-e', 'inject=rename:error=EIO:when=1'],
    committed: true,
    heldWrites: 1,
  },
  {
    what: 'the fsync fails and so does the undo fsync: create fails, nothing on disk, writes wait for a durable snapshots/',
    inject: (sdir: string) => ['-P', sdir, '-e', 'trace=fsync', '-e', 'inject=fsync:error=EIO:when=1..3'],
    committed: false,
    heldWrites: 1,
  },
];

for (const tc of EIO_CASES) {
  test(`serve, strace-injected EIO: ${tc.what}`, async (tt) => {
    for (const [tool, pkg] of [['qemu-io', 'qemu-utils'], ['strace', 'strace']]) {
      const skip = requireTool(tool, pkg);
      if (skip) return tt.skip(skip);
    }
    const t = tmpdir();
    const fx = makeFixture(t.dir, { blockSize: BS, scale: 1 });
    let srv: Server | undefined;
    try {
      // One thread pool thread: strace counts calls per thread, so the Nth fsync is well defined.
      srv = await startServe(fx.manifest, [], { UV_THREADPOOL_SIZE: '1' });
      const s = srv;
      await qemuIoOk(s.uri, [`write -P 0x55 0 ${fx.size}`, 'flush']);
      const atCreate = liveFromFiles(fx);
      const sdir = path.join(storeDirOf(fx), 'snapshots');
      const traceLog = path.join(t.dir, 'strace.log');
      const traced = await attachStrace(s.proc.pid!, tc.inject(sdir), traceLog);
      const c = await vsnap(['create', fx.manifest, '--name', 'cut', '--json']);
      const trace = fs.readFileSync(traceLog, 'utf8');
      assert.match(trace, /fsync\(.*INJECTED/, `the fault was injected:\n${trace}`);
      if (tc.committed) {
        assert.equal(c.code, 0, `the snapshot stayed committed, so create reports it: ${c.stderr}\n${trace}`);
        assert.deepEqual(diskSnapshotIds(fx), [JSON.parse(c.stdout).id]);
        assert.match(s.log(), /committed, but .*EIO/);
      } else {
        assert.equal(c.code, 1, `create must fail: ${c.stdout}${c.stderr}\n${trace}`);
        assert.match(c.stderr, /fsync .*snapshots.*EIO/);
        assert.deepEqual(diskSnapshotIds(fx), [], 'no snapshot on disk');
      }
      // Writes wait (fail) while the commit's directory state is not durable, then go on.
      for (let k = 0; k < tc.heldWrites; k++) {
        const w = await qemuIo(s.uri, [`write -P 0x66 0 ${BS}`]);
        assert.match(w.stdout + w.stderr, /write failed: Input\/output error/, 'a write while snapshots/ is not durable fails');
      }
      assertLive(fx, atCreate, 'after the held writes');
      await qemuIoOk(s.uri, [`write -P 0x66 0 ${fx.size}`, 'flush']);
      const live = Buffer.alloc(fx.size, 0x66);
      assertLive(fx, live, 'after the writes that followed');
      await s.stop();
      srv = undefined;
      assert.equal(await traced.exited, 0, 'strace ends with the server');
      await checkStopped(fx, live, tc.committed ? new Map([['cut', atCreate]]) : new Map());
    } finally {
      if (srv) await srv.stop().catch(() => undefined);
      t.cleanup();
    }
  });
}
