// The snapshot commands through the real binary: a random model run, the
// JSON keys scripts depend on, and one test per error path.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { vsnap, tmpdir, snapshotTree } from './helpers/cli.js';
import { makeFixture, liveFromFiles, checkGapsUntouched, rng } from './helpers/volume-fixture.js';

test('random CLI operations match the model', async () => {
  const t = tmpdir();
  const fx = makeFixture(t.dir, { blockSize: 4096, scale: 2 });
  const rand = rng(42);
  const int = (n: number) => Math.floor(rand() * n);
  let live = liveFromFiles(fx);
  const snaps = new Map<number, Buffer>();
  try {
    for (let step = 0; step < 60; step++) {
      const r = rand();
      if (r < 0.45) {
        const len = 1 + int(3 * fx.blockSize);
        const off = int(fx.size - len + 1);
        const data = randomBytes(len);
        const useFile = rand() < 0.5;
        const input = path.join(t.dir, 'in.bin');
        if (useFile) fs.writeFileSync(input, data);
        const w = await vsnap(['write', fx.manifest, '--offset', String(off), ...(useFile ? ['--input', input] : [])], { input: useFile ? undefined : data });
        assert.equal(w.code, 0, w.stderr);
        data.copy(live, off);
        assert.ok(liveFromFiles(fx).equals(live), `step ${step}: backing files differ after write`);
        assert.equal(checkGapsUntouched(fx), undefined);
      } else if (r < 0.6) {
        const c = await vsnap(['create', fx.manifest, '--name', `snap-${step}`, '--json']);
        assert.equal(c.code, 0, c.stderr);
        const j = JSON.parse(c.stdout);
        snaps.set(j.id, Buffer.from(live));
      } else if (r < 0.68 && snaps.size) {
        const ids = [...snaps.keys()];
        const id = ids[int(ids.length)];
        const d = await vsnap(['delete', fx.manifest, String(id)]);
        assert.equal(d.code, 0, d.stderr);
        snaps.delete(id);
      } else {
        const ids = [0, ...snaps.keys()];
        const view = ids[int(ids.length)];
        const len = 1 + int(2 * fx.blockSize);
        const off = int(fx.size - len + 1);
        const args = ['read', fx.manifest, '--offset', String(off), '--length', String(len)];
        if (view) args.push('--snapshot', String(view));
        const rd = await vsnap(args);
        assert.equal(rd.code, 0, rd.stderr);
        const model = view ? snaps.get(view)! : live;
        assert.ok(rd.stdoutBuf.equals(model.subarray(off, off + len)), `step ${step}: read ${view} ${off}+${len}`);
      }
    }
    const l = await vsnap(['list', fx.manifest, '--json']);
    assert.equal(l.code, 0);
    assert.deepEqual(JSON.parse(l.stdout).map((s: { id: number }) => s.id), [...snaps.keys()].sort((a, b) => a - b));
  } finally {
    t.cleanup();
  }
});

test('create, list and show print the stable JSON keys', async () => {
  const t = tmpdir();
  const fx = makeFixture(t.dir);
  try {
    const c = await vsnap(['create', fx.manifest, '--name', 'before-upgrade', '--json']);
    assert.equal(c.code, 0, c.stderr);
    const j = JSON.parse(c.stdout);
    for (const k of ['id', 'name', 'createdAt', 'size', 'blockSize', 'partitions']) assert.ok(k in j, `create --json lacks ${k}`);
    assert.equal(j.name, 'before-upgrade');
    assert.equal(j.size, fx.size);
    assert.equal(j.partitions.length, 4);
    for (const p of j.partitions) {
      for (const k of ['id', 'worker', 'pid', 'snapshotFile', 'changeLogFile']) assert.ok(k in p, `partition lacks ${k}`);
      assert.ok(fs.existsSync(p.snapshotFile) && fs.existsSync(p.changeLogFile));
    }
    const w = await vsnap(['write', fx.manifest, '--offset', '0'], { input: Buffer.alloc(5000, 7) });
    assert.equal(w.code, 0, w.stderr);
    const l = JSON.parse((await vsnap(['list', fx.manifest, '--json'])).stdout);
    assert.deepEqual(Object.keys(l[0]).slice(0, 4), ['id', 'name', 'createdAt', 'changedBytes']);
    assert.equal(l[0].changedBytes, 2 * 4096, 'two 4 KiB blocks copied');
    const s = JSON.parse((await vsnap(['show', fx.manifest, 'latest', '--json'])).stdout);
    assert.equal(s.id, j.id);
    const byName = JSON.parse((await vsnap(['show', fx.manifest, 'before-upgrade', '--json'])).stdout);
    assert.equal(byName.id, j.id);
    const d = await vsnap(['create', fx.manifest]);
    assert.equal(d.code, 0);
    assert.match(d.stdout, /^\d+ \d{8}T\d{6}Z\n$/, 'default name is the UTC time');
    const st = await vsnap(['status', fx.manifest, '--json']);
    assert.equal(st.code, 0, st.stderr);
    const sj = JSON.parse(st.stdout);
    assert.equal(sj.snapshots, 2);
    assert.equal(sj.partitions.length, 4);
  } finally {
    t.cleanup();
  }
});

test('error paths exit with the documented codes and change nothing', async () => {
  const t = tmpdir();
  const fx = makeFixture(t.dir);
  try {
    assert.equal((await vsnap(['create', fx.manifest, '--name', 'a'])).code, 0);
    const cases: { args: string[]; code: number; msg: RegExp; input?: Buffer }[] = [
      { args: ['create', fx.manifest, '--name', 'a'], code: 2, msg: /already exists/ },
      { args: ['create', fx.manifest, '--name', '123'], code: 2, msg: /--name.*not all digits/ },
      { args: ['create', fx.manifest, '--name', 'latest'], code: 2, msg: /--name/ },
      { args: ['create', fx.manifest, '--name', '../x'], code: 2, msg: /--name/ },
      { args: ['create', fx.manifest, '--name', 'x'.repeat(129)], code: 2, msg: /--name/ },
      { args: ['create', fx.manifest, '--expires', 'soon'], code: 2, msg: /--expires.*"soon"/ },
      { args: ['show', fx.manifest, 'nope'], code: 2, msg: /unknown snapshot "nope"/ },
      { args: ['show', fx.manifest, '99'], code: 2, msg: /unknown snapshot "99"/ },
      { args: ['delete', fx.manifest, 'a', 'nope'], code: 2, msg: /unknown snapshot "nope"/ },
      { args: ['read', fx.manifest, '--offset', '0', '--length', String(fx.size + 1)], code: 2, msg: /outside the volume/ },
      { args: ['read', fx.manifest, '--offset', '1.5K', '--length', '1'], code: 2, msg: /--offset/ },
      { args: ['read', fx.manifest, '--offset', '0', '--length', '1', '--snapshot', 'nope'], code: 2, msg: /unknown snapshot/ },
      { args: ['write', fx.manifest, '--offset', String(fx.size - 10)], code: 2, msg: /past the end/, input: Buffer.alloc(11) },
      { args: ['write', fx.manifest, '--offset', '0', '--input', path.join(t.dir, 'missing')], code: 2, msg: /--input/ },
      { args: ['list', path.join(t.dir, 'missing.json')], code: 2, msg: /cannot read manifest/ },
    ];
    for (const c of cases) {
      const before = snapshotTree(t.dir);
      const r = await vsnap(c.args, { input: c.input });
      assert.equal(r.code, c.code, `${c.args.join(' ')}: exit ${r.code}, stderr ${r.stderr}`);
      assert.match(r.stderr, c.msg, c.args.join(' '));
      assert.doesNotMatch(r.stderr, /\n\s+at /, 'no stack trace');
      assert.equal(snapshotTree(t.dir), before, `${c.args.join(' ')} changed files`);
    }
    // delete with one bad name deleted nothing
    assert.equal(JSON.parse((await vsnap(['list', fx.manifest, '--json'])).stdout).length, 1);
  } finally {
    t.cleanup();
  }
});

test('a second vsnap waits for the lock, then exits 1 naming the holder', async () => {
  const t = tmpdir();
  const fx = makeFixture(t.dir);
  try {
    assert.equal((await vsnap(['create', fx.manifest])).code, 0);
    const store = path.join(t.dir, '.vsnap', 'model');
    // A live process (this test) holds the lock.
    fs.writeFileSync(path.join(store, 'lock'), JSON.stringify({ pid: process.pid, command: 'serve', startedAt: new Date().toISOString() }));
    const r = await vsnap(['create', fx.manifest], { env: { VSNAP_LOCK_WAIT_MS: '300' } });
    assert.equal(r.code, 1);
    assert.match(r.stderr, new RegExp(`locked by pid ${process.pid} \\(serve`));
    // A dead holder's lock is taken over.
    fs.writeFileSync(path.join(store, 'lock'), JSON.stringify({ pid: 2 ** 22 + 12345, command: 'create', startedAt: new Date().toISOString() }));
    const r2 = await vsnap(['create', fx.manifest]);
    assert.equal(r2.code, 0, r2.stderr);
    assert.ok(!fs.existsSync(path.join(store, 'lock')), 'lock released');
  } finally {
    t.cleanup();
  }
});

test('a changed mapping is refused while snapshots exist, naming the change', async () => {
  const t = tmpdir();
  const fx = makeFixture(t.dir);
  try {
    assert.equal((await vsnap(['create', fx.manifest])).code, 0);
    const m = JSON.parse(fs.readFileSync(fx.manifest, 'utf8'));
    m.partitions[0].extents[0].length = m.partitions[0].extents[0].length - 4096;
    fs.writeFileSync(fx.manifest, JSON.stringify(m));
    const before = snapshotTree(t.dir);
    const r = await vsnap(['list', fx.manifest]);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /mapping changed.*\n.*partition "p0" extents changed/);
    assert.equal(snapshotTree(t.dir), before);
  } finally {
    t.cleanup();
  }
});

test('a worker that dies fails its requests with its index, pid, exit and partitions', async () => {
  const { loadManifest } = await import('../src/manifest/load.js');
  const { Store } = await import('../src/store/store.js');
  const { Cluster } = await import('../src/coordinator/cluster.js');
  const t = tmpdir();
  const fx = makeFixture(t.dir);
  const store = await Store.open(loadManifest(fx.manifest), { command: 'test', create: true });
  const cluster = await Cluster.start(store);
  try {
    const w1 = cluster.workers.get(1)!;
    process.kill(w1.pid, 'SIGKILL');
    await w1.exited;
    // p1 belongs to worker 1: offset inside p1.
    const p1Start = fx.partitions[0].extents.reduce((a, e) => a + e.length, 0);
    await assert.rejects(cluster.read(0, p1Start, 10), new RegExp(`worker 1 \\(pid ${w1.pid}\\) exited on signal SIGKILL; partitions p1`));
    // Other workers still serve their partitions.
    assert.equal((await cluster.read(0, 0, 10)).length, 10);
    await assert.rejects(cluster.createSnapshot('x', null), /worker 1/);
    assert.equal(fs.readdirSync(path.join(store.dir, 'snapshots')).length, 0, 'aborted create leaves nothing');
  } finally {
    await cluster.close().catch(() => cluster.kill());
    store.release();
    t.cleanup();
  }
});

test('write --input reads pipes to their end; bad input and output paths exit 2 and change nothing', async () => {
  const t = tmpdir();
  const fx = makeFixture(t.dir);
  try {
    const data = randomBytes(70000);
    // A FIFO has no size: vsnap must read it whole, not trust stat.
    const fifo = path.join(t.dir, 'in.fifo');
    const { execFileSync, spawn } = await import('node:child_process');
    execFileSync('mkfifo', [fifo]);
    const feeder = spawn('sh', ['-c', `cat > "${fifo}"`], { stdio: ['pipe', 'ignore', 'ignore'] });
    feeder.stdin.end(data);
    const w = await vsnap(['write', fx.manifest, '--offset', '1000', '--input', fifo]);
    assert.equal(w.code, 0, w.stderr);
    assert.ok(liveFromFiles(fx).subarray(1000, 71000).equals(data));
    fs.rmSync(fifo);
    const cases: { args: string[]; msg: RegExp }[] = [
      { args: ['write', fx.manifest, '--offset', '0', '--input', t.dir], msg: /--input: .* is a directory/ },
      { args: ['read', fx.manifest, '--offset', '0', '--length', '10', '--output', t.dir], msg: /--output: .* is a directory/ },
      { args: ['read', fx.manifest, '--offset', '0', '--length', '10', '--output', path.join(t.dir, 'no', 'x')], msg: /--output: directory .* does not exist/ },
      { args: ['export', fx.manifest, 'live', '--output', path.join(t.dir, 'no', 'x.raw')], msg: /--output: directory .* does not exist/ },
    ];
    for (const c of cases) {
      const before = snapshotTree(t.dir);
      const r = await vsnap(c.args);
      assert.equal(r.code, 2, `${c.args.join(' ')}: ${r.stderr}`);
      assert.match(r.stderr, c.msg);
      assert.doesNotMatch(r.stderr, /internal error|\n\s+at /);
      assert.equal(snapshotTree(t.dir), before);
    }
  } finally {
    t.cleanup();
  }
});
