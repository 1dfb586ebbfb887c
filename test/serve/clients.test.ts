// vsnap serve driven by the real clients (qemu-io, qemu-img, nbdinfo,
// nbdcopy, nbdsh), every result checked against a model and the backing files.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { vsnap, tmpdir, requireTools } from '../helpers/cli.js';
import { makeFixture, liveFromFiles } from '../helpers/volume-fixture.js';
import { run, runOk, pattern, SYSTEM_PYTHON_ENV, assertSameBytes } from '../nbd/harness.js';
import { startServe } from './harness.js';

const TOOLS: [string, string][] = [
  ['qemu-io', 'qemu-utils'],
  ['qemu-img', 'qemu-utils'],
  ['nbdinfo', 'libnbd-bin'],
  ['nbdcopy', 'libnbd-bin'],
  ['nbdsh', 'python3-libnbd'],
];

const missing = (): string | undefined => requireTools(TOOLS);

test('real clients read and write the live export and read snapshots through vsnap serve', async (tt) => {
  const skip = missing();
  if (skip) return tt.skip(skip);
  const t = tmpdir();
  const fx = makeFixture(t.dir, { blockSize: 65536, scale: 4 });
  const srv = await startServe(fx.manifest);
  try {
    assert.match(srv.uri, /^nbd\+unix:\/\/\/\?socket=.*nbd\.sock$/);
    assert.equal(fs.statSync(srv.socket).mode & 0o777, 0o600, 'NBD socket is 0600');
    // qemu-io: a pattern across partition and extent boundaries, read back.
    const size = fx.size;
    await runOk('qemu-io', ['-f', 'raw', '-c', `write -P 0xab 0 ${size / 2}`, '-c', `read -P 0xab 0 ${size / 2}`, '-c', `write -z ${size / 2} 65536`, '-c', `read -P 0 ${size / 2} 65536`, '-c', 'flush', srv.uri]);
    const model = liveFromFiles(fx);
    assert.ok(model.subarray(0, size / 2).every((b) => b === 0xab), 'backing files hold the pattern where the manifest maps it');
    assert.ok(model.subarray(size / 2, size / 2 + 65536).every((b) => b === 0));
    // Snapshot through the control socket while serving.
    const c = await vsnap(['create', fx.manifest, '--name', 'snap-a', '--json']);
    assert.equal(c.code, 0, c.stderr);
    const snapModel = liveFromFiles(fx);
    const snapFile = path.join(t.dir, 'snap-model.raw');
    fs.writeFileSync(snapFile, snapModel);
    // Change the live volume with aio writes and a flush.
    await runOk('qemu-io', ['-f', 'raw', '-c', 'aio_write -P 1 0 64k', '-c', 'aio_write -P 2 64k 64k', '-c', 'aio_flush', '-c', 'read -P 2 64k 64k', srv.uri]);
    // The snapshot still reads as taken: qemu-io pattern, qemu-img convert + compare, nbdcopy to stdout.
    await runOk('qemu-io', ['-r', '-f', 'raw', '-c', 'read -P 0xab 0 64k', srv.exportUri('snapshot/snap-a')]);
    const out = path.join(t.dir, 'out.raw');
    await runOk('qemu-img', ['convert', '-f', 'raw', '-O', 'raw', srv.exportUri('snapshot/snap-a'), out]);
    await runOk('qemu-img', ['compare', '-f', 'raw', '-F', 'raw', snapFile, out]);
    const byId = await runOk('nbdcopy', [srv.exportUri(`snapshot/${JSON.parse(c.stdout).id}`), '-'], { env: SYSTEM_PYTHON_ENV });
    assertSameBytes(byId.stdoutBuf, snapModel, 'nbdcopy of snapshot by id');
    // A write to a snapshot export fails.
    const w = await run('qemu-io', ['-f', 'raw', '-c', 'write 0 512', srv.exportUri('snapshot/snap-a')]);
    assert.notEqual(w.code, 0);
    // nbdcopy a file into the live export (multi-conn, flush), then the backing files hold it.
    const src = path.join(t.dir, 'src.raw');
    const data = pattern(size, 77);
    fs.writeFileSync(src, data);
    await runOk('nbdcopy', ['-C', '4', '--flush', src, srv.uri], { env: SYSTEM_PYTHON_ENV });
    assertSameBytes(liveFromFiles(fx), data, 'backing files after nbdcopy');
    // qemu-img compare of the live export against the file.
    await runOk('qemu-img', ['compare', '-f', 'raw', '-F', 'raw', src, srv.uri]);
    // nbdinfo: the exports are listed, --map answers.
    const list = await runOk('nbdinfo', ['--list', srv.uri]);
    for (const name of ['live', 'snapshot/snap-a', `snapshot/${JSON.parse(c.stdout).id}`]) assert.match(list.stdout, new RegExp(`export="${name}"`));
    const map = await runOk('nbdinfo', ['--map', srv.exportUri('snapshot/snap-a')]);
    assert.match(map.stdout, /data/);
    const info = await runOk('qemu-img', ['info', '-f', 'raw', '--output=json', srv.uri]);
    assert.equal(JSON.parse(info.stdout)['virtual-size'], size);
    // The catalogue goes through the server; data commands are refused while served.
    const l = await vsnap(['list', fx.manifest, '--json']);
    assert.equal(l.code, 0, l.stderr);
    assert.deepEqual(JSON.parse(l.stdout).map((s: { name: string }) => s.name), ['snap-a']);
    const st = await vsnap(['status', fx.manifest, '--json']);
    assert.equal(st.code, 0, st.stderr);
    assert.equal(JSON.parse(st.stdout).heldBy.pid, srv.proc.pid);
    const rd = await vsnap(['read', fx.manifest, '--offset', '0', '--length', '1']);
    assert.equal(rd.code, 1);
    assert.match(rd.stderr, new RegExp(`served by pid ${srv.proc.pid}`));
  } finally {
    await srv.stop();
  }
  // After shutdown the volume is usable from the CLI again, and the snapshot persisted.
  const after = await vsnap(['read', fx.manifest, '--offset', '0', '--length', '65536', '--snapshot', 'snap-a']);
  assert.equal(after.code, 0, after.stderr);
  assert.ok(after.stdoutBuf.every((b) => b === 0xab));
  t.cleanup();
});

test('nbdsh: EPERM on snapshot writes, EINVAL past the end, simple replies and EXPORT_NAME paths', async (tt) => {
  const skip = missing();
  if (skip) return tt.skip(skip);
  const t = tmpdir();
  const fx = makeFixture(t.dir, { blockSize: 65536, scale: 1 });
  const expected = liveFromFiles(fx);
  assert.equal((await vsnap(['create', fx.manifest, '--name', 's1'])).code, 0);
  const srv = await startServe(fx.manifest);
  try {
    const py = [
      'import errno',
      'h.set_strict_mode(0)',
      'assert h.is_read_only()',
      'try:\n    h.pwrite(b"x"*512, 0)\n    raise SystemExit("write to snapshot succeeded")\nexcept nbd.Error as e:\n    assert e.errno == "EPERM", e.errno',
      'try:\n    h.pread(512, h.get_size())\n    raise SystemExit("read past end succeeded")\nexcept nbd.Error as e:\n    assert e.errno == "EINVAL", e.errno',
      `assert h.pread(4096, 0) == bytes.fromhex("${expected.subarray(0, 4096).toString('hex')}")`,
    ].join('\n');
    await runOk('nbdsh', ['-u', srv.exportUri('snapshot/s1'), '-c', py], { env: SYSTEM_PYTHON_ENV });
    // Simple replies (no structured replies negotiated) and the old EXPORT_NAME handshake.
    const simple = [
      'h = nbd.NBD()',
      'h.set_request_structured_replies(False)',
      `h.connect_uri("${srv.uri}")`,
      'assert not h.get_structured_replies_negotiated()',
      'h.pwrite(b"\\x5a"*1000, 300)',
      'h.flush()',
      'assert h.pread(1000, 300) == b"\\x5a"*1000',
      'h.shutdown()',
      'g = nbd.NBD()',
      'g.set_handshake_flags(0)',
      `g.connect_uri("${srv.uri}")`,
      'assert g.pread(1000, 300) == b"\\x5a"*1000',
      'g.shutdown()',
    ].join('\n');
    await runOk('nbdsh', ['-c', simple], { env: SYSTEM_PYTHON_ENV });
    const live = liveFromFiles(fx);
    assert.ok(live.subarray(300, 1300).every((b) => b === 0x5a));
    assert.ok(live.subarray(0, 300).equals(expected.subarray(0, 300)), 'bytes before the write untouched');
    assert.ok(live.subarray(1300).equals(expected.subarray(1300)), 'bytes after the write untouched');
  } finally {
    await srv.stop();
    t.cleanup();
  }
});

test('serve --run runs the command with $uri and $socket and exits with its status', async (tt) => {
  const skip = missing();
  if (skip) return tt.skip(skip);
  const t = tmpdir();
  const fx = makeFixture(t.dir, { blockSize: 65536, scale: 1 });
  try {
    const ok = await vsnap(['serve', fx.manifest, '--run', 'test -S "$socket" && nbdinfo "$uri" >/dev/null && qemu-io -f raw -c "write -P 7 0 4k" "$uri" >/dev/null']);
    assert.equal(ok.code, 0, ok.stderr);
    assert.ok(liveFromFiles(fx).subarray(0, 4096).every((b) => b === 7));
    const seven = await vsnap(['serve', fx.manifest, '--run', 'exit 7']);
    assert.equal(seven.code, 7);
    // The lock is released after each run.
    assert.equal((await vsnap(['list', fx.manifest])).code, 0);
  } finally {
    t.cleanup();
  }
});

test('serve --listen: loopback TCP works; other addresses need --allow-remote', async (tt) => {
  const skip = missing();
  if (skip) return tt.skip(skip);
  const t = tmpdir();
  const fx = makeFixture(t.dir, { blockSize: 65536, scale: 1 });
  try {
    const port = 20000 + (process.pid % 20000);
    const r = await vsnap(['serve', fx.manifest, '--listen', `127.0.0.1:${port}`, '--run', 'echo "$uri"; nbdinfo --size "$uri"']);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, `nbd://127.0.0.1:${port}/\n${fx.size}\n`);
    const bad = await vsnap(['serve', fx.manifest, '--listen', `0.0.0.0:${port}`]);
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /--listen: 0\.0\.0\.0 is not a loopback address.*--allow-remote/);
    const junk = await vsnap(['serve', fx.manifest, '--listen', 'nonsense']);
    assert.equal(junk.code, 2);
    assert.match(junk.stderr, /--listen: must be HOST:PORT/);
  } finally {
    t.cleanup();
  }
});

test('a worker killed while serving is restarted and recovers its logs; the snapshot still reads as taken', async (tt) => {
  const skip = missing();
  if (skip) return tt.skip(skip);
  const t = tmpdir();
  const fx = makeFixture(t.dir, { blockSize: 65536, scale: 1 });
  const srv = await startServe(fx.manifest);
  try {
    const taken = liveFromFiles(fx);
    assert.equal((await vsnap(['create', fx.manifest, '--name', 's'])).code, 0);
    await runOk('qemu-io', ['-f', 'raw', '-c', `write -P 0x11 0 ${fx.size}`, srv.uri]);
    const before = JSON.parse((await vsnap(['status', fx.manifest, '--json'])).stdout);
    const victim = before.workers.find((w: { worker: number }) => w.worker === 1);
    process.kill(victim.pid, 'SIGKILL');
    // Wait for the restart to show in status.
    let after: { workers: { worker: number; pid: number }[]; partitions: { id: string; clean: boolean }[] } | undefined;
    for (let i = 0; i < 100; i++) {
      await new Promise((r) => setTimeout(r, 100));
      const st = await vsnap(['status', fx.manifest, '--json']);
      if (st.code !== 0) continue;
      after = JSON.parse(st.stdout);
      if (after!.workers.find((w) => w.worker === 1)!.pid !== victim.pid) break;
    }
    assert.notEqual(after!.workers.find((w) => w.worker === 1)!.pid, victim.pid, 'worker 1 restarted');
    assert.match(srv.log(), /worker 1 \(pid \d+\) died; restarting it/);
    // Both exports work again and hold the right data.
    await runOk('qemu-io', ['-f', 'raw', '-c', `read -P 0x11 0 ${fx.size}`, '-c', 'write -P 0x22 0 4096', srv.uri]);
    const snap = await runOk('nbdcopy', [srv.exportUri('snapshot/s'), '-'], { env: SYSTEM_PYTHON_ENV });
    assertSameBytes(snap.stdoutBuf, taken, 'snapshot after a worker restart');
    await srv.stop();
    const v = await vsnap(['verify', fx.manifest]);
    assert.equal(v.code, 0, v.stderr);
  } finally {
    if (srv.proc.exitCode === null) await srv.stop();
    t.cleanup();
  }
});

test('Ctrl-C (SIGINT to the whole process group) shuts serve down in order', async () => {
  const { spawn } = await import('node:child_process');
  const { BIN } = await import('../helpers/cli.js');
  const t = tmpdir();
  const fx = makeFixture(t.dir, { blockSize: 65536, scale: 1 });
  try {
    // detached: its own process group, as a terminal would give it.
    const proc = spawn(process.execPath, [BIN, 'serve', fx.manifest], { stdio: ['ignore', 'pipe', 'pipe'], detached: true });
    let err = '';
    proc.stderr.on('data', (d: Buffer) => (err += d));
    const uri = await new Promise<string>((resolve) => proc.stdout.once('data', (d: Buffer) => resolve(d.toString().trim())));
    const socket = /socket=(.*)$/.exec(uri)![1];
    assert.ok(fs.existsSync(socket));
    await vsnap(['create', fx.manifest, '--name', 'x']);
    const exited = new Promise<number | null>((r) => proc.on('exit', r));
    process.kill(-proc.pid!, 'SIGINT');
    assert.equal(await exited, 0, err);
    assert.match(err, /SIGINT: shutting down/);
    assert.equal(fs.existsSync(socket), false);
    // The workers closed cleanly too: every partition state is clean.
    const st = JSON.parse((await vsnap(['status', fx.manifest, '--json'])).stdout);
    assert.ok(st.partitions.every((p: { clean: boolean }) => p.clean), JSON.stringify(st.partitions));
    assert.equal(st.heldBy, null);
  } finally {
    t.cleanup();
  }
});

test('serve --every takes periodic snapshots and prunes them with the keep flags', async () => {
  const t = tmpdir();
  const fx = makeFixture(t.dir, { blockSize: 65536, scale: 1 });
  const srv = await startServe(fx.manifest, ['--every', '1s', '--keep-last', '2']);
  try {
    await new Promise((r) => setTimeout(r, 4500));
    const l = await vsnap(['list', fx.manifest, '--json']);
    assert.equal(l.code, 0, l.stderr);
    const snaps = JSON.parse(l.stdout) as { id: number }[];
    assert.equal(snaps.length, 2, `keep-last 2: ${JSON.stringify(snaps)}`);
    assert.ok(snaps[1].id >= 3, 'older periodic snapshots were taken and pruned');
    assert.match(srv.log(), /periodic snapshot \d+ taken/);
  } finally {
    await srv.stop();
    t.cleanup();
  }
});
