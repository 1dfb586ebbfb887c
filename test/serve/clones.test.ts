// Writable clones through the real `vsnap serve` and real clients (nbdsh,
// qemu-io, nbdinfo), checked against a model: the clone reads as its
// snapshot plus its own writes; the backing files, the snapshot export and
// the live export never see a clone write; live writes never show in the
// clone; reset empties it; delete removes it; a FLUSHed clone write survives
// kill -9 of the server and of a worker.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { vsnap, tmpdir, requireTool } from '../helpers/cli.js';
import { makeFixture, liveFromFiles, rng, type Fixture } from '../helpers/volume-fixture.js';
import { run, runOk, SYSTEM_PYTHON_ENV, assertSameBytes } from '../nbd/harness.js';
import { startServe, type Server } from './harness.js';

const skip = requireTool('nbdsh', 'python3-libnbd') ?? requireTool('qemu-io', 'qemu-utils') ?? requireTool('nbdinfo', 'libnbd-bin');

async function ok(args: string[], input?: Buffer): Promise<string> {
  const r = await vsnap(args, { input });
  assert.equal(r.code, 0, `vsnap ${args.join(' ')}: ${r.stderr}`);
  return r.stdout;
}

function files(f: Fixture): Map<string, Buffer> {
  return new Map([...f.initial.keys()].map((n) => [n, fs.readFileSync(path.join(f.dir, n))]));
}

function sameFiles(a: Map<string, Buffer>, b: Map<string, Buffer>, what: string): void {
  for (const [n, buf] of a) assert.ok(buf.equals(b.get(n)!), `${what}: ${n} changed`);
}

/**
 * One nbdsh session on `uri`: apply the writes (offset, bytes), FLUSH when
 * asked, then save the whole export to `out`.
 */
async function nbdWrites(uri: string, writes: { offset: number; data: Buffer }[], out: string, o: { flush?: boolean } = {}): Promise<Buffer> {
  const ops = writes.map((w) => `h.pwrite(bytes.fromhex('${w.data.toString('hex')}'), ${w.offset})`).join('\n');
  const script = [
    ops,
    o.flush === false ? '' : 'h.flush()',
    `open(${JSON.stringify(out)}, 'wb').write(h.pread(h.get_size(), 0))`,
  ].join('\n');
  // Too long for an argument: nbdsh runs it from a file.
  const file = `${out}.py`;
  fs.writeFileSync(file, script);
  const r = await run('nbdsh', ['-u', uri, '-c', `exec(open(${JSON.stringify(file)}).read())`], { env: SYSTEM_PYTHON_ENV, timeoutMs: 60_000 });
  assert.equal(r.code, 0, `nbdsh on ${uri}: ${r.stderr}`);
  return fs.readFileSync(out);
}

async function readExport(uri: string, out: string): Promise<Buffer> {
  return nbdWrites(uri, [], out, { flush: false });
}

/**
 * kill -9 workers (all, or those of the given indexes) of the server holding
 * `manifest`; returns once the server answers with new ones. (A server
 * restarts at most 5 workers a minute.)
 */
async function killWorkers(manifest: string, only?: number[]): Promise<void> {
  const all = (JSON.parse(await ok(['status', manifest, '--json'])) as { workers: { worker: number; pid: number }[] }).workers;
  const pids = all.filter((w) => !only || only.includes(w.worker)).map((w) => w.pid);
  for (const pid of pids) process.kill(pid, 'SIGKILL');
  for (let k = 0; k < 300; k++) {
    await new Promise((r) => setTimeout(r, 100));
    const r = await vsnap(['status', manifest, '--json']);
    if (r.code !== 0) continue;
    const now = (JSON.parse(r.stdout) as { workers: { pid: number }[] }).workers.map((w) => w.pid);
    if (now.length === all.length && now.every((p) => p > 0 && !pids.includes(p))) return;
  }
  assert.fail('the server did not restart its workers within 30 s');
}

/** Random writes: partial and unaligned ones, some across partitions, a few whole blocks. */
function randomWrites(size: number, bs: number, seed: number, n: number): { offset: number; data: Buffer }[] {
  const r = rng(seed);
  const out = [];
  for (let k = 0; k < n; k++) {
    const whole = r() < 0.3;
    const len = whole ? bs * (1 + Math.floor(r() * 3)) : 1 + Math.floor(r() * bs * 2);
    const offset = whole ? Math.floor(r() * (size / bs - 3)) * bs : Math.floor(r() * (size - len));
    const data = Buffer.alloc(len);
    for (let i = 0; i < len; i++) data[i] = Math.floor(r() * 256);
    out.push({ offset, data });
  }
  return out;
}

function apply(model: Buffer, writes: { offset: number; data: Buffer }[]): void {
  for (const w of writes) w.data.copy(model, w.offset);
}

test('clones over NBD against a model: own writes only, images/snapshot/live untouched, live writes unseen, reset, delete', { skip, timeout: 240_000 }, async () => {
  const t = tmpdir();
  const fx = makeFixture(t.dir, { scale: 4 });
  let srv: Server | undefined;
  try {
    await ok(['create', fx.manifest, '--name', 'base']);
    const baseView = liveFromFiles(fx);
    // The live volume moves on after the snapshot: the clone must still read the snapshot.
    await ok(['write', fx.manifest, '--offset', '0'], Buffer.alloc(2 * fx.blockSize + 100, 0x5a));
    srv = await startServe(fx.manifest);
    await ok(['clone', 'create', fx.manifest, 'base', 'c1']);
    await ok(['clone', 'create', fx.manifest, 'base', 'c2']);
    const list = await run('nbdinfo', ['--list', '--json', srv.uri]);
    assert.match(list.stdout, /"clone\/c1"/, 'NBD_OPT_LIST lists clone/c1');

    const liveBefore = liveFromFiles(fx);
    const before = files(fx);
    const model = Buffer.from(baseView);
    const writes = randomWrites(fx.size, fx.blockSize, 7, 40);
    apply(model, writes);
    const got = await nbdWrites(srv.exportUri('clone/c1'), writes, path.join(t.dir, 'c1.out'));
    assertSameBytes(got, model, 'clone c1 after its writes');
    sameFiles(before, files(fx), 'backing files after clone writes');
    assertSameBytes(await readExport(srv.exportUri('snapshot/base'), path.join(t.dir, 's.out')), baseView, 'snapshot export after clone writes');
    assertSameBytes(await readExport(srv.exportUri('live'), path.join(t.dir, 'l.out')), liveBefore, 'live export after clone writes');
    assertSameBytes(await readExport(srv.exportUri('clone/c2'), path.join(t.dir, 'c2.out')), baseView, 'the other clone');

    // Partial-block writes sent at once on one connection (aio), each a slice of the same few
    // blocks not yet in the overlay: every slice must survive the base copies of the others.
    const bs = fx.blockSize;
    const slices: { offset: number; data: Buffer }[] = [];
    for (let b = 40; b < 44; b++) for (let k = 0; k < 8; k++) slices.push({ offset: b * bs + k * (bs / 8) + 3, data: Buffer.alloc(bs / 8 - 6, 0x60 + k) });
    const aio = [
      ...slices.map((w) => `h.aio_pwrite(bytes.fromhex('${w.data.toString('hex')}'), ${w.offset})`),
      'while h.aio_in_flight() > 0: h.poll(-1)',
    ].join('\n');
    fs.writeFileSync(path.join(t.dir, 'aio.py'), `${aio}\nh.flush()\nopen(${JSON.stringify(path.join(t.dir, 'aio.out'))}, 'wb').write(h.pread(h.get_size(), 0))\n`);
    await runOk('nbdsh', ['-u', srv.exportUri('clone/c1'), '-c', `exec(open(${JSON.stringify(path.join(t.dir, 'aio.py'))}).read())`], { env: SYSTEM_PYTHON_ENV, timeoutMs: 60_000 });
    apply(model, slices);
    assertSameBytes(fs.readFileSync(path.join(t.dir, 'aio.out')), model, 'clone after concurrent partial writes of the same blocks');

    // A newer snapshot taken and deleted (its logs merge into the clone's base snapshot's): the clone reads the same.
    await ok(['create', fx.manifest, '--name', 'later']);
    await runOk('qemu-io', ['-f', 'raw', '-c', `write -P 0x44 0 ${fx.size}`, '-c', 'flush', srv.exportUri('live')]);
    await ok(['delete', fx.manifest, 'later']);
    assertSameBytes(await readExport(srv.exportUri('clone/c1'), path.join(t.dir, 'c1m.out')), model, 'clone after a newer snapshot was merged away');

    // qemu-io on the clone: a pattern across partitions, read back; write-zeroes; then live writes that the clone must not see.
    const half = fx.size / 2;
    await runOk('qemu-io', ['-f', 'raw', '-c', `write -P 0xab 1000 ${half}`, '-c', `read -P 0xab 1000 ${half}`, '-c', 'flush', srv.exportUri('clone/c1')]);
    model.fill(0xab, 1000, 1000 + half);
    await runOk('qemu-io', ['-f', 'raw', '-c', `write -z ${bs + 17} ${2 * bs}`, '-c', `read -P 0 ${bs + 17} ${2 * bs}`, '-c', 'flush', srv.exportUri('clone/c1')]);
    model.fill(0, bs + 17, 3 * bs + 17);
    await runOk('qemu-io', ['-f', 'raw', '-c', `write -P 0x33 0 ${fx.size}`, '-c', 'flush', srv.exportUri('live')]);
    assertSameBytes(await readExport(srv.exportUri('clone/c1'), path.join(t.dir, 'c1b.out')), model, 'clone c1 after live writes');
    assertSameBytes(await readExport(srv.exportUri('snapshot/base'), path.join(t.dir, 's2.out')), baseView, 'snapshot after live writes');

    // list shows the overlay's space; reset empties it and the clone reads as its snapshot again.
    const listed = JSON.parse(await ok(['clone', 'list', fx.manifest, '--json'])) as { name: string; usedBytes: number; snapshot: { id: number; name: string } }[];
    const c1 = listed.find((c) => c.name === 'c1')!;
    assert.deepEqual(c1.snapshot, { id: 1, name: 'base' });
    assert.ok(c1.usedBytes >= half, `usedBytes ${c1.usedBytes} counts the overlay's data`);
    await ok(['clone', 'reset', fx.manifest, 'c1']);
    assertSameBytes(await readExport(srv.exportUri('clone/c1'), path.join(t.dir, 'c1c.out')), baseView, 'clone c1 after reset');
    const after = (JSON.parse(await ok(['clone', 'list', fx.manifest, '--json'])) as { name: string; usedBytes: number }[]).find((c) => c.name === 'c1')!;
    assert.ok(after.usedBytes < c1.usedBytes && after.usedBytes <= 64 * 1024 * fx.partitions.length, `reset frees the overlay (${after.usedBytes} bytes left)`);

    // delete: the export goes from the list and cannot be opened; its directory is gone.
    await ok(['clone', 'delete', fx.manifest, 'c1']);
    const list2 = await run('nbdinfo', ['--list', '--json', srv.uri]);
    assert.doesNotMatch(list2.stdout, /"clone\/c1"/);
    const gone = await run('nbdinfo', ['--size', srv.exportUri('clone/c1')]);
    assert.notEqual(gone.code, 0, 'a deleted clone cannot be opened');
    const store = (JSON.parse(await ok(['status', fx.manifest, '--json'])) as { store: string }).store;
    assert.deepEqual(fs.readdirSync(path.join(store, 'clones')), ['c2']);
    await srv.stop();
    srv = undefined;
  } finally {
    srv?.proc.kill('SIGKILL');
    t.cleanup();
  }
});

test('FLUSHed clone writes survive kill -9 of the server and of a worker', { skip, timeout: 240_000 }, async () => {
  const t = tmpdir();
  const fx = makeFixture(t.dir, { scale: 4 });
  let srv: Server | undefined;
  try {
    await ok(['create', fx.manifest, '--name', 'base']);
    const baseView = liveFromFiles(fx);
    await ok(['clone', 'create', fx.manifest, 'base', 'c']);
    const before = files(fx);
    srv = await startServe(fx.manifest);
    const model = Buffer.from(baseView);
    const w1 = randomWrites(fx.size, fx.blockSize, 11, 30);
    apply(model, w1);
    assertSameBytes(await nbdWrites(srv.exportUri('clone/c'), w1, path.join(t.dir, 'a.out')), model, 'clone before the crash');
    // kill -9 of the server (its workers go with their link).
    const exited = new Promise((r) => srv!.proc.on('exit', r));
    srv.proc.kill('SIGKILL');
    await exited;
    srv = await startServe(fx.manifest);
    assertSameBytes(await readExport(srv.exportUri('clone/c'), path.join(t.dir, 'b.out')), model, 'clone after kill -9 of the server');

    // kill -9 of a worker: the server restarts it, and the flushed writes are there.
    const w2 = randomWrites(fx.size, fx.blockSize, 12, 30);
    apply(model, w2);
    await nbdWrites(srv.exportUri('clone/c'), w2, path.join(t.dir, 'c.out'));
    await killWorkers(fx.manifest);
    let got: Buffer | undefined;
    for (let k = 0; k < 50; k++) {
      const r = await run('nbdsh', ['-u', srv.exportUri('clone/c'), '-c', `open(${JSON.stringify(path.join(t.dir, 'd.out'))}, 'wb').write(h.pread(h.get_size(), 0))`], { env: SYSTEM_PYTHON_ENV });
      if (r.code === 0) {
        got = fs.readFileSync(path.join(t.dir, 'd.out'));
        break;
      }
      await new Promise((res) => setTimeout(res, 200));
    }
    assert.ok(got, `the clone reads after the workers restarted; log:\n${srv.log()}`);
    assertSameBytes(got, model, 'clone after kill -9 of the workers');
    sameFiles(before, files(fx), 'backing files');

    // Writes acknowledged but not flushed when their worker died may be lost: the next FLUSH says so.
    await nbdWrites(srv.exportUri('clone/c'), randomWrites(fx.size, fx.blockSize, 13, 10), path.join(t.dir, 'e.out'), { flush: false });
    await killWorkers(fx.manifest, [0]);
    const flush = await run('nbdsh', ['-u', srv.exportUri('clone/c'), '-c', 'h.flush()'], { env: SYSTEM_PYTHON_ENV });
    assert.notEqual(flush.code, 0, 'a FLUSH after the loss of unflushed clone writes fails');
    assert.match(srv.log(), /died with writes not yet flushed/);
    await ok(['clone', 'reset', fx.manifest, 'c']);
    const again = await run('nbdsh', ['-u', srv.exportUri('clone/c'), '-c', 'h.flush()'], { env: SYSTEM_PYTHON_ENV });
    assert.equal(again.code, 0, `after a reset the clone flushes again: ${again.stderr}`);
    assertSameBytes(await readExport(srv.exportUri('clone/c'), path.join(t.dir, 'f.out')), baseView, 'clone after reset');
    await srv.stop();
    srv = undefined;
    // Offline, after an orderly stop: the overlays are clean and still hold the writes.
    await ok(['clone', 'list', fx.manifest]);
  } finally {
    srv?.proc.kill('SIGKILL');
    t.cleanup();
  }
});
