// Crash windows of WRITE_ZEROES under vsnap serve (docs/reliability.md, fault
// points zero-before-punch and zero-after-punch): the worker dies after the
// copy-on-write records of the range are durable, before or after the live
// range is punched. The server restarts it; the zero fails; every snapshot
// still reads its model (through vsnap and from the change logs on disk), the
// live range is old (before) or zero (after), `verify` is clean, and a re-run
// of the zero without the fault does not copy the blocks again. The order
// itself (log fdatasync before fallocate) is checked with strace.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import { vsnap, tmpdir, requireTools } from '../helpers/cli.js';
import { liveFromFiles } from '../helpers/volume-fixture.js';
import { diskViews, firstDiff, readClogFile, storeDirOf } from '../crash/harness.js';
import { run, runOk, pattern, SYSTEM_PYTHON_ENV, assertSameBytes } from '../nbd/harness.js';
import { startServe } from './harness.js';
import { makeSparseFixture, putFile, allocatedBytes, MiB, KiB } from '../helpers/sparse-fixture.js';

const missing = (): string | undefined => requireTools([['nbdsh', 'python3-libnbd'], ['nbdcopy', 'libnbd-bin'], ['strace', 'strace']]);

const readAll = async (uri: string) => (await runOk('nbdcopy', [uri, '-'], { env: SYSTEM_PYTHON_ENV })).stdoutBuf;
/** A zero across p0/p1, unaligned at both ends, over data no log holds yet; Z2 inside p2. */
const Z = { off: MiB + 3000, len: 2 * MiB };
const Z2 = { off: 6 * MiB + 1000, len: 200 * KiB };

function loggedCount(fx: ReturnType<typeof makeSparseFixture>, id: number): number {
  return fx.partitions.reduce((a, p) => a + readClogFile(path.join(storeDirOf(fx), 'snapshots', String(id).padStart(8, '0'), `${p.id}.clog`), fx.blockSize, id).blocks.size, 0);
}

for (const point of ['zero-before-punch', 'zero-after-punch']) {
  test(`serve: a worker killed at ${point}: the zero fails, snapshots intact, live old/zero as the window says; re-run copies nothing again`, async (tt) => {
    const skip = missing();
    if (skip) return tt.skip(skip);
    const t = tmpdir();
    try {
      const fx = makeSparseFixture(t.dir);
      putFile(fx, 'a.img', 0, pattern(8 * MiB, 41));
      putFile(fx, 'b.img', 0, pattern(6 * MiB, 42));
      let id = 0;
      let snap: Buffer = Buffer.alloc(0);
      let srv = await startServe(fx.manifest, [], { VSNAP_FAULT: point });
      try {
        const c = await vsnap(['create', fx.manifest, '--name', 's1', '--json']);
        assert.equal(c.code, 0, c.stderr);
        id = JSON.parse(c.stdout).id as number;
        snap = liveFromFiles(fx);
        const r = await run('nbdsh', ['-u', srv.uri, '-c', `h.zero(${Z.len}, ${Z.off})`], { env: SYSTEM_PYTHON_ENV });
        assert.notEqual(r.code, 0, 'the zero fails when its worker dies');
        assert.match(r.stderr, /EIO|Input\/output error/i);
        // Both pieces' workers (p0 on worker 0, p1 on worker 1) reach the point and die.
        await waitFor(() => (srv.log().match(/restarted as pid \d+/g) ?? []).length >= 2, srv.log);
        const want = Buffer.from(snap);
        if (point === 'zero-after-punch') want.fill(0, Z.off, Z.off + Z.len);
        const live = liveFromFiles(fx);
        assert.ok(live.equals(want), `${point}: live backing files: ${firstDiff(live, want)}`);
        assertSameBytes(await readAll(srv.uri), want, 'live through vsnap after the crash');
        assertSameBytes(await readAll(srv.exportUri('snapshot/s1')), snap, 'snapshot through vsnap after the crash');
      } finally {
        await srv.stop();
      }
      const view = diskViews(fx).get(id)!;
      assert.ok(view.equals(snap), `snapshot from the change logs: ${firstDiff(view, snap)}`);
      const copied = loggedCount(fx, id);
      assert.ok(copied > 0, 'the copy-on-write records were durable before the crash');
      let v = await vsnap(['verify', fx.manifest]);
      assert.equal(v.code, 0, v.stdout + v.stderr);

      // Re-run without the fault, traced: every fallocate of a backing file comes after the log's fdatasync.
      srv = await startServe(fx.manifest);
      try {
        const trace = path.join(t.dir, 'strace.log');
        const pids = [srv.proc.pid!, ...workerPids(srv.proc.pid!)];
        const st = await attachStrace(['-e', 'trace=fallocate,fdatasync,pwritev,pwritev2,pwrite64,write', '-y', '-o', trace], pids);
        // The same range again (its blocks are logged now), and a fresh one that needs copies first.
        await runOk('nbdsh', ['-u', srv.uri, '-c', `h.zero(${Z.len}, ${Z.off})`, '-c', `h.zero(${Z2.len}, ${Z2.off})`, '-c', 'h.flush()'], { env: SYSTEM_PYTHON_ENV });
        await detach(st);
        checkOrder(fs.readFileSync(trace, 'utf8'));
        const want = Buffer.from(snap);
        want.fill(0, Z.off, Z.off + Z.len);
        want.fill(0, Z2.off, Z2.off + Z2.len);
        assertSameBytes(liveFromFiles(fx), want, 'the re-run zeroed both ranges');
        assertSameBytes(await readAll(srv.exportUri('snapshot/s1')), snap, 'snapshot after the re-run');
      } finally {
        await srv.stop();
      }
      v = await vsnap(['verify', fx.manifest]);
      assert.equal(v.code, 0, v.stdout + v.stderr);
      const blocks = Math.ceil(Z.len / fx.blockSize) + Math.ceil(Z2.len / fx.blockSize) + 4;
      assert.ok(loggedCount(fx, id) <= blocks, `at most ${blocks} blocks logged (no block copied twice: the log would refuse it)`);
      assert.ok(diskViews(fx).get(id)!.equals(snap), 'snapshot from the logs after the re-run');
    } finally {
      t.cleanup();
    }
  });
}

/** strace -f attached to these processes (all their threads), once it is tracing. */
async function attachStrace(args: string[], pids: number[]): Promise<ChildProcess> {
  const st = spawn('strace', ['-f', '-qq', ...args, ...pids.flatMap((p) => ['-p', String(p)])], { stdio: ['ignore', 'ignore', 'pipe'] });
  let err = '';
  st.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  // strace reports nothing when attached (-qq); its threads show a TracerPid once it is.
  for (let i = 0; i < 100; i++) {
    const traced = pids.every((p) => fs.readdirSync(`/proc/${p}/task`).every((tid) => /TracerPid:\s*[1-9]/.test(safeRead(`/proc/${p}/task/${tid}/status`))));
    if (traced) return st;
    await new Promise((r) => setTimeout(r, 50));
  }
  st.kill('SIGKILL');
  throw new Error(`strace did not attach: ${err}`);
}

async function detach(st: ChildProcess): Promise<void> {
  const gone = new Promise((r) => st.on('exit', r));
  st.kill('SIGINT');
  await gone;
}

function safeRead(file: string): string {
  try {
    return fs.readFileSync(file, 'utf8');
  } catch {
    return '';
  }
}

async function waitFor(ok: () => boolean, log: () => string): Promise<void> {
  for (let i = 0; i < 200 && !ok(); i++) await new Promise((r) => setTimeout(r, 50));
  assert.ok(ok(), `timed out; server log:\n${log()}`);
}

/** Child pids of a process (the workers of vsnap serve). */
function workerPids(pid: number): number[] {
  const out: number[] = [];
  for (const d of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const stat = fs.readFileSync(`/proc/${d}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      if (ppid === pid) out.push(Number(d));
    } catch {
      // gone meanwhile
    }
  }
  return out;
}

/** The process a thread id belongs to (strace -f names threads; libuv's pool threads do the I/O). */
function tgidOf(tid: string, cache: Map<string, string>): string {
  let g = cache.get(tid);
  if (g === undefined) {
    try {
      g = /^Tgid:\s*(\d+)/m.exec(fs.readFileSync(`/proc/${tid}/status`, 'utf8'))?.[1] ?? tid;
    } catch {
      g = tid;
    }
    cache.set(tid, g);
  }
  return g;
}

/**
 * The strace log, in order: in each process, a fallocate of a backing file
 * (`-y` names the file) must start only when every change-log write that
 * process started before it is covered by an fdatasync of that log that
 * started after the write and completed. A call split by another thread
 * (`<unfinished ...>` / `<... resumed>`) starts at its first line and
 * completes at its resumed line.
 */
function checkOrder(log: string): void {
  const tgids = new Map<string, string>();
  /** Per process and log: writes started, and the count the last completed fdatasync covers. */
  const logs = new Map<string, { written: number; durable: number }>();
  const syncing = new Map<string, { key: string; covers: number }>(); // tid -> fdatasync in flight
  let falloc = 0;
  let synced = 0;
  const entry = (key: string) => logs.get(key) ?? (logs.set(key, { written: 0, durable: 0 }), logs.get(key)!);
  for (const line of log.split('\n')) {
    const start = /^(\d+)\s+(\w+)\((\d+)<([^>]*)>/.exec(line);
    const resumed = /^(\d+)\s+<\.\.\. (\w+) resumed>.*= (-?\d+)/.exec(line);
    if (start) {
      const [, tid, call, , file] = start;
      const proc = tgidOf(tid, tgids);
      if (call === 'fallocate' && file.endsWith('.img')) {
        falloc++;
        for (const [key, e] of logs) if (key.startsWith(`${proc} `)) assert.ok(e.durable >= e.written, `fallocate before ${key.slice(proc.length + 1)} was synced: ${line}`);
      }
      if (!file.endsWith('.clog')) continue;
      const key = `${proc} ${file}`;
      const e = entry(key);
      if (call !== 'fdatasync') e.written++;
      else if (/<unfinished \.\.\.>$/.test(line)) syncing.set(tid, { key, covers: e.written });
      else if (/ = 0$/.test(line)) (e.durable = Math.max(e.durable, e.written)), synced++;
    } else if (resumed && resumed[2] === 'fdatasync') {
      const p = syncing.get(resumed[1]);
      syncing.delete(resumed[1]);
      if (p && Number(resumed[3]) === 0) {
        const e = entry(p.key);
        e.durable = Math.max(e.durable, p.covers);
        synced++;
      }
    }
  }
  assert.ok(falloc > 0, `strace saw no fallocate of a backing file:\n${log.slice(0, 2000)}`);
  assert.ok([...logs.values()].some((e) => e.written > 0) && synced > 0, 'strace saw change-log appends and their syncs');
}

test('serve: fallocate unsupported (EOPNOTSUPP) makes zero write zeroes, FAST_ZERO ENOTSUP, trim a no-op; fallocate EIO fails the zero; snapshots intact', async (tt) => {
  const skip = missing();
  if (skip) return tt.skip(skip);
  const t = tmpdir();
  try {
    const fx = makeSparseFixture(t.dir);
    putFile(fx, 'a.img', 0, pattern(8 * MiB, 51));
    putFile(fx, 'b.img', 0, pattern(6 * MiB, 52));
    const files = ['a.img', 'b.img'].map((f) => path.join(t.dir, f));
    const alloc = () => files.reduce((a, f) => a + allocatedBytes(f), 0);
    let id = 0;
    let snap: Buffer = Buffer.alloc(0);
    const want = liveFromFiles(fx);
    const srv = await startServe(fx.manifest);
    try {
      const c = await vsnap(['create', fx.manifest, '--name', 's1', '--json']);
      assert.equal(c.code, 0, c.stderr);
      id = JSON.parse(c.stdout).id as number;
      snap = Buffer.from(want);
      const workers = workerPids(srv.proc.pid!);
      assert.ok(workers.length >= 2, 'two workers');
      const a0 = alloc();
      let st = await attachStrace(['-e', 'trace=fallocate', '-e', 'inject=fallocate:error=EOPNOTSUPP', '-o', path.join(t.dir, 'st1.log')], workers);
      const out = await nbdsh(`
h.zero(${Z.len}, ${Z.off})
try:
    h.zero(${Z.len}, ${Z.off}, nbd.CMD_FLAG_FAST_ZERO)
    print("fast ok")
except nbd.Error as e:
    print("fast", e.errno)
h.zero(${Z2.len}, ${Z2.off}, nbd.CMD_FLAG_NO_HOLE)
h.trim(${4 * MiB}, ${MiB})
h.flush()
print("done")
`, srv.uri);
      await detach(st);
      assert.match(out, /fast ENOTSUP/);
      assert.match(out, /done/);
      assert.match(fs.readFileSync(path.join(t.dir, 'st1.log'), 'utf8'), /fallocate\(.*EOPNOTSUPP/, 'the injection happened');
      want.fill(0, Z.off, Z.off + Z.len);
      want.fill(0, Z2.off, Z2.off + Z2.len);
      assertSameBytes(liveFromFiles(fx), want, 'zeroes written where the file system cannot punch; the trim changed nothing');
      assert.ok(alloc() >= a0, 'nothing was deallocated');

      // EIO from fallocate: the zero fails; the range is old (a failed fallocate changed nothing here).
      st = await attachStrace(['-e', 'trace=fallocate', '-e', 'inject=fallocate:error=EIO', '-o', path.join(t.dir, 'st2.log')], workers);
      const r = await run('nbdsh', ['-u', srv.uri, '-c', `h.zero(${64 * KiB}, ${7 * MiB + 4096})`], { env: SYSTEM_PYTHON_ENV });
      await detach(st);
      assert.notEqual(r.code, 0);
      assert.match(r.stderr, /EIO|Input\/output error/i);
      assert.match(srv.log(), /fallocate PUNCH_HOLE of .*b?\.img at \d+ length \d+ failed \(EIO\)/, 'the server log names the call, the file and the errno');
      assertSameBytes(liveFromFiles(fx), want, 'a failed punch leaves the range as it was');
      assertSameBytes(await readAll(srv.exportUri('snapshot/s1')), snap, 'snapshot through vsnap');
    } finally {
      await srv.stop();
    }
    assert.ok(diskViews(fx).get(id)!.equals(snap), 'snapshot from the change logs');
    const v = await vsnap(['verify', fx.manifest]);
    assert.equal(v.code, 0, v.stdout + v.stderr);
  } finally {
    t.cleanup();
  }
});

async function nbdsh(script: string, uri: string): Promise<string> {
  return (await runOk('nbdsh', ['-u', uri, '-c', script], { env: SYSTEM_PYTHON_ENV })).stdout;
}
