// Writers that bypass vsnap while it runs (README "Writers that bypass vsnap"):
// QEMU's tools are kept out by QEMU's own image locks; other writers (dd) are
// detected, the snapshots they spoil reported stale after the server stops.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { spawn } from 'node:child_process';
import { vsnap, tmpdir, requireTool, BIN } from '../helpers/cli.js';
import { makeFixture } from '../helpers/volume-fixture.js';
import { run, runOk } from '../nbd/harness.js';
import { startServe } from './harness.js';

function needQemu(): string | undefined {
  return requireTool('qemu-io', 'qemu-utils') ?? requireTool('qemu-img', 'qemu-utils');
}

/** Whether some process holds an OFD/POSIX lock on byte `b` of the file (from /proc/locks). */
function lockedByte(file: string, b: number): boolean {
  const ino = fs.statSync(file).ino;
  return fs
    .readFileSync('/proc/locks', 'utf8')
    .split('\n')
    .some((l) => {
      const f = l.trim().split(/\s+/);
      // "1: OFDLCK ADVISORY READ -1 fe:00:2150907 100 101"
      return f.length >= 8 && f[5].endsWith(`:${ino}`) && Number(f[6]) <= b && (f[7] === 'EOF' || Number(f[7]) >= b);
    });
}

test('QEMU tools refuse a backing file while vsnap serve holds it, and work again after it stops', async (tt) => {
  const skip = needQemu();
  if (skip) return tt.skip(skip);
  const t = tmpdir();
  const fx = makeFixture(t.dir);
  const c = path.join(t.dir, 'c.img');
  try {
    const srv = await startServe(fx.manifest);
    let stopped = false;
    try {
      const before = fs.readFileSync(c);
      // A read-write open (qemu-io, and so qemu-system) wants "write", which vsnap does not share.
      const w = await run('qemu-io', ['-f', 'raw', '-c', 'write -P 0x55 0 512', c]);
      assert.notEqual(w.code, 0, `qemu-io wrote into a file vsnap serves: ${w.stdout}`);
      assert.match(w.stderr, /Failed to get "write" lock/);
      assert.deepEqual(fs.readFileSync(c), before, 'the backing file is unchanged');
      // A reader that needs consistent data does not share "write", which vsnap holds.
      const out = path.join(t.dir, 'copy.raw');
      const cv = await run('qemu-img', ['convert', '-f', 'raw', '-O', 'raw', c, out]);
      assert.notEqual(cv.code, 0);
      assert.match(cv.stderr, /Failed to get shared "write" lock/);
      // -U (force share) is QEMU's documented way around its locks.
      await runOk('qemu-img', ['convert', '-U', '-f', 'raw', '-O', 'raw', c, out]);
      // qemu-img info reads no data and takes no lock (QEMU's choice): it works either way.
      await runOk('qemu-img', ['info', '-f', 'raw', c]);
      await runOk('qemu-img', ['info', '-U', '-f', 'raw', c]);
      // vsnap's own command through the running server is not locked out.
      assert.equal((await vsnap(['create', fx.manifest, '--name', 's'])).code, 0);
      await srv.stop();
      stopped = true;
    } finally {
      if (!stopped) srv.proc.kill('SIGKILL');
    }
    await runOk('qemu-io', ['-f', 'raw', '-c', 'write -P 0x55 0 512', c]);
    assert.ok(fs.readFileSync(c).subarray(0, 512).every((x) => x === 0x55), 'qemu-io writes once vsnap has stopped');
  } finally {
    t.cleanup();
  }
});

test('vsnap refuses to open a backing file that a QEMU process holds for writing', async (tt) => {
  const skip = needQemu();
  if (skip) return tt.skip(skip);
  const t = tmpdir();
  const fx = makeFixture(t.dir);
  const c = path.join(t.dir, 'c.img');
  // qemu-io holding c.img read-write, as a running VM would.
  const holder = spawn('qemu-io', ['-f', 'raw', '-c', 'sleep 20000', c], { stdio: 'ignore' });
  try {
    const deadline = Date.now() + 10_000;
    while (!lockedByte(c, 101)) {
      assert.ok(Date.now() < deadline, 'qemu-io never took its image lock');
      await new Promise((r) => setTimeout(r, 20));
    }
    const r = await vsnap(['read', fx.manifest, '--offset', '0', '--length', '16']);
    assert.equal(r.code, 1, r.stderr);
    assert.match(r.stderr, /c\.img: Failed to get (shared )?"write" lock/);
    const s = await vsnap(['create', fx.manifest, '--name', 'x']);
    assert.equal(s.code, 1, s.stderr);
    holder.kill('SIGKILL');
    await new Promise((r) => holder.once('exit', r));
    assert.equal((await vsnap(['read', fx.manifest, '--offset', '0', '--length', '16'])).code, 0, 'works once QEMU let go');
  } finally {
    holder.kill('SIGKILL');
    t.cleanup();
  }
});

test('a dd write into a backing file while vsnap serve runs, after its last NBD write, makes the snapshots on that file stale', async (tt) => {
  const skip = needQemu();
  if (skip) return tt.skip(skip);
  const t = tmpdir();
  const fx = makeFixture(t.dir);
  const u = fx.blockSize;
  const c = path.join(t.dir, 'c.img');
  try {
    const srv = await startServe(fx.manifest);
    let stopped = false;
    try {
      assert.equal((await vsnap(['create', fx.manifest, '--name', 's'])).code, 0);
      // NBD writes after the snapshot through every worker: p0 and p1 (a.img and
      // b.img, workers 0 and 1, both writing a.img) and the start of p2 (c.img).
      await runOk('qemu-io', ['-f', 'raw', '-c', `write -P 1 0 ${8 * u}`, '-c', `write -P 2 ${8 * u} ${u}`, '-c', 'flush', srv.uri]);
      // Another program writes c.img behind vsnap's back. The wait lets the
      // file-time clock (kernel ticks of a few ms) move past vsnap's last write.
      await new Promise((r) => setTimeout(r, 50));
      await runOk('dd', ['if=/dev/zero', `of=${c}`, 'bs=1', 'seek=100', 'count=7', 'conv=notrunc', 'status=none']);
      await srv.stop();
      stopped = true;
    } finally {
      if (!stopped) srv.proc.kill('SIGKILL');
    }
    // p2 (c.img, a.img, b.img) and p3 (c.img) are stale; p0 and p1, whose files only vsnap wrote, are not.
    const p2 = 8 * u;
    const rd = await vsnap(['read', fx.manifest, '--snapshot', 's', '--offset', String(p2), '--length', '16']);
    assert.equal(rd.code, 3, rd.stderr);
    assert.match(rd.stderr, /stale.*c\.img was modified outside vsnap/);
    const ok = await vsnap(['read', fx.manifest, '--snapshot', 's', '--offset', '0', '--length', String(8 * u)]);
    assert.equal(ok.code, 0, `no false alarm for files only vsnap wrote: ${ok.stderr}`);
    const v = await vsnap(['verify', fx.manifest]);
    assert.equal(v.code, 3, v.stdout + v.stderr);
    assert.match(v.stdout + v.stderr, /c\.img/);
    assert.doesNotMatch(v.stdout + v.stderr, /[ab]\.img was modified/);
  } finally {
    t.cleanup();
  }
});

test('a session of vsnap serve with only its own writes leaves no snapshot stale', async (tt) => {
  const skip = needQemu();
  if (skip) return tt.skip(skip);
  const t = tmpdir();
  const fx = makeFixture(t.dir);
  try {
    const srv = await startServe(fx.manifest);
    try {
      assert.equal((await vsnap(['create', fx.manifest, '--name', 's'])).code, 0);
      for (let i = 0; i < 3; i++) {
        await runOk('qemu-io', ['-f', 'raw', '-c', `aio_write -P ${i + 1} 0 ${fx.size}`, '-c', 'aio_flush', srv.uri]);
        await new Promise((r) => setTimeout(r, 20));
      }
    } finally {
      await srv.stop();
    }
    const v = await vsnap(['verify', fx.manifest]);
    assert.equal(v.code, 0, v.stdout + v.stderr);
    assert.equal((await vsnap(['read', fx.manifest, '--snapshot', 's', '--offset', '0', '--length', String(fx.size)])).code, 0);
  } finally {
    t.cleanup();
  }
});

test('a dd write into a backing file while vsnap write runs makes the snapshots on that file stale', async () => {
  const t = tmpdir();
  const fx = makeFixture(t.dir);
  const u = fx.blockSize;
  const c = path.join(t.dir, 'c.img');
  try {
    assert.equal((await vsnap(['create', fx.manifest, '--name', 's'])).code, 0);
    // vsnap write starts its workers (which lock the files), then waits for
    // its input: the foreign write lands while it runs, before it ends.
    const w = spawn(process.execPath, [BIN, 'write', fx.manifest, '--offset', '0'], { stdio: ['pipe', 'ignore', 'pipe'] });
    let stderr = '';
    w.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const exited = new Promise<number | null>((r) => w.on('exit', (code) => r(code)));
    const deadline = Date.now() + 20_000;
    while (!lockedByte(c, 101)) {
      assert.ok(Date.now() < deadline, `vsnap write never opened c.img: ${stderr}`);
      await new Promise((r) => setTimeout(r, 20));
    }
    await runOk('dd', ['if=/dev/zero', `of=${c}`, 'bs=1', `seek=${3 * u + 10}`, 'count=7', 'conv=notrunc', 'status=none']);
    w.stdin.end(Buffer.alloc(2 * u, 7)); // p0 only: a.img
    assert.equal(await exited, 0, stderr);
    const st = JSON.parse((await vsnap(['status', fx.manifest, '--json'])).stdout);
    const stale = st.partitions.filter((p: { stale: number[] }) => p.stale.length).map((p: { id: string }) => p.id);
    assert.deepEqual(stale, ['p2', 'p3'], 'the partitions on c.img, and only they');
    const v = await vsnap(['verify', fx.manifest]);
    assert.equal(v.code, 3, v.stdout + v.stderr);
    assert.match(v.stdout + v.stderr, /c\.img was modified outside vsnap/);
    assert.equal((await vsnap(['read', fx.manifest, '--snapshot', 's', '--offset', '0', '--length', String(u)])).code, 0);
  } finally {
    t.cleanup();
  }
});
