// qemu:dirty-bitmap:<snap> contexts through vsnap serve, read by the real
// clients (nbdinfo, qemu-img, libnbd's Python binding), against a model of
// the blocks each round of seeded random writes touched.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { vsnap, tmpdir, requireTool } from '../helpers/cli.js';
import { makeFixture } from '../helpers/volume-fixture.js';
import { run, runOk, SYSTEM_PYTHON_ENV } from '../nbd/harness.js';
import { startServe } from './harness.js';
import {
  blocksToRanges,
  blockStatusThrough,
  checkExtents,
  dirtyFromNbdinfo,
  listContextsThrough,
  randomWrites,
  touchedBlocks,
  union,
  writeThrough,
} from './bitmap-model.js';

const TOOLS: [string, string][] = [
  ['qemu-img', 'qemu-utils'],
  ['nbdinfo', 'libnbd-bin'],
  ['nbdsh', 'python3-libnbd'],
];

test('dirty bitmaps: listed per export, answered per the model by nbdinfo, qemu-img and libnbd (several contexts, REQ_ONE), alias T@S', async (tt) => {
  for (const [tool, pkg] of TOOLS) {
    const m = requireTool(tool, pkg);
    if (m) return tt.skip(m);
  }
  const t = tmpdir();
  const bs = 65536;
  const fx = makeFixture(t.dir, { blockSize: bs, scale: 4 });
  const size = fx.size;
  const srv = await startServe(fx.manifest);
  try {
    // Rounds: snapshot s<i>, then random writes W_i (the last round's writes stay live).
    const names = ['s1', 's2', 's3', 's4'];
    const W: Set<number>[] = [];
    for (let i = 0; i < names.length; i++) {
      const c = await vsnap(['create', fx.manifest, '--name', names[i], '--json']);
      assert.equal(c.code, 0, c.stderr);
      assert.equal(JSON.parse(c.stdout).id, i + 1);
      const writes = randomWrites(100 + i, size, 6, 3 * bs);
      await writeThrough(srv.uri, writes, 200 + i);
      W.push(touchedBlocks(writes, bs));
    }
    // Changed since s_i on live: W_i ∪ ... ∪ W_n; between s_i and s_k: W_i ∪ ... ∪ W_{k-1}.
    const liveSince = (i: number) => blocksToRanges(union(W.slice(i - 1)), bs, size);
    const between = (i: number, k: number) => blocksToRanges(union(W.slice(i - 1, k - 1)), bs, size);
    assert.ok(liveSince(1).length > 0 && between(2, 3).length > 0, 'the model has changes to find');

    // LIST: the live export offers every snapshot, snapshot T only older ones; prefix queries too.
    const all = names.map((n) => `qemu:dirty-bitmap:${n}`);
    assert.deepEqual(await listContextsThrough(srv.uri, []), ['base:allocation', ...all]);
    assert.deepEqual(await listContextsThrough(srv.uri, ['qemu:']), all);
    assert.deepEqual(await listContextsThrough(srv.uri, ['qemu:dirty-bitmap:']), all);
    assert.deepEqual(await listContextsThrough(srv.uri, ['qemu:dirty-bitmap:2', 'nope:x']), ['qemu:dirty-bitmap:2'], 'an id is accepted, an unknown namespace ignored');
    assert.deepEqual(await listContextsThrough(srv.exportUri('snapshot/s3'), []), ['base:allocation', ...all.slice(0, 2)]);
    assert.deepEqual(await listContextsThrough(srv.exportUri('snapshot/s1'), ['qemu:dirty-bitmap:']), []);
    assert.deepEqual(await listContextsThrough(srv.exportUri('snapshot/4@2'), []), ['base:allocation', 'qemu:dirty-bitmap:s2'], 'the alias offers exactly one bitmap');
    const list = await runOk('nbdinfo', ['--list', srv.uri]);
    assert.doesNotMatch(list.stdout, /@/, 'alias exports are not listed');
    assert.match(list.stdout, /qemu:dirty-bitmap:s4/);

    // nbdinfo --map: live since each snapshot, snapshot T against S (by name, by id, and through the alias).
    for (let i = 1; i <= names.length; i++) {
      const m = await runOk('nbdinfo', [`--map=qemu:dirty-bitmap:${names[i - 1]}`, srv.uri]);
      assert.deepEqual(dirtyFromNbdinfo(m.stdout), liveSince(i), `live since s${i}`);
    }
    for (const [exp, ctx, want] of [
      ['snapshot/s3', 'qemu:dirty-bitmap:s1', between(1, 3)],
      ['snapshot/4', 'qemu:dirty-bitmap:2', between(2, 4)],
      ['snapshot/s4@s3', 'qemu:dirty-bitmap:s3', between(3, 4)],
      ['snapshot/s2@1', 'qemu:dirty-bitmap:1', between(1, 2)],
    ] as const) {
      const m = await runOk('nbdinfo', [`--map=${ctx}`, srv.exportUri(exp)]);
      assert.deepEqual(dirtyFromNbdinfo(m.stdout), want, `${exp} ${ctx}`);
    }
    // A bitmap not older than the snapshot is not offered; an alias with S >= T is no export.
    const notOffered = await run('nbdinfo', ['--map=qemu:dirty-bitmap:s3', srv.exportUri('snapshot/s2')]);
    assert.notEqual(notOffered.code, 0);
    const badAlias = await run('nbdinfo', [srv.exportUri('snapshot/s2@s3')]);
    assert.notEqual(badAlias.code, 0);

    // qemu-img map with x-dirty-bitmap: dirty ranges come out as "data": false (QEMU's documented hack).
    for (const [exp, ctx, want] of [
      ['', 'qemu:dirty-bitmap:s2', liveSince(2)],
      ['snapshot/s4@s1', 'qemu:dirty-bitmap:s1', between(1, 4)],
    ] as const) {
      const q = await runOk('qemu-img', ['map', '--output=json', '--image-opts', `driver=nbd,server.type=unix,server.path=${srv.socket},export=${exp},x-dirty-bitmap=${ctx}`]);
      const dirty = (JSON.parse(q.stdout) as { start: number; length: number; data: boolean }[]).filter((e) => !e.data).map((e) => ({ offset: e.start, length: e.length }));
      const merged: { offset: number; length: number }[] = [];
      for (const r of dirty) {
        const last = merged[merged.length - 1];
        if (last && last.offset + last.length === r.offset) last.length += r.length;
        else merged.push({ ...r });
      }
      assert.deepEqual(merged, want, `qemu-img map ${exp} ${ctx}`);
    }

    // libnbd: three contexts at once, with and without REQ_ONE, aligned and not.
    const ctxs = ['base:allocation', 'qemu:dirty-bitmap:s1', 'qemu:dirty-bitmap:3', 'qemu:dirty-bitmap:nope'];
    const reqs: [number, number, boolean][] = [
      [0, size, false],
      [0, size, true],
      [bs + 1000, 5 * bs + 17, false],
      [bs + 1000, 5 * bs + 17, true],
      [size - 3 * bs - 5, 3 * bs + 5, false],
    ];
    for (const r of liveSince(3)) reqs.push([r.offset, bs, true], [Math.max(0, r.offset - 100), 200, true]);
    const got = await blockStatusThrough(srv.uri, ctxs, reqs);
    assert.deepEqual(got.selected, ctxs.slice(0, 3), 'unknown contexts are silently not selected');
    reqs.forEach(([off, len, one], n) => {
      const reply = got.replies[n];
      assert.deepEqual(Object.keys(reply).sort(), ctxs.slice(0, 3).sort(), 'one chunk per selected context');
      for (const c of ctxs.slice(0, 3)) assert.equal(reply[c].length, 1, `${c}: exactly one chunk`);
      checkExtents(reply['qemu:dirty-bitmap:s1'][0], off, len, one, bs, liveSince(1), `s1 @${off}+${len}${one ? ' REQ_ONE' : ''}`);
      checkExtents(reply['qemu:dirty-bitmap:3'][0], off, len, one, bs, liveSince(3), `3 @${off}+${len}${one ? ' REQ_ONE' : ''}`);
      const base = reply['base:allocation'][0];
      if (one) assert.equal(base.length, 2, 'base:allocation: REQ_ONE gives one extent');
    });

    // A snapshot deleted after a client selected its bitmap: the next BLOCK_STATUS fails, the connection lives.
    const py = [
      'import nbd, sys',
      'h = nbd.NBD()',
      'h.add_meta_context("qemu:dirty-bitmap:s2")',
      'h.connect_uri(sys.argv[1])',
      'h.block_status(65536, 0, lambda *a: 0)',
      'sys.stdout.write("ready\\n"); sys.stdout.flush()',
      'sys.stdin.readline()',
      'try:\n    h.block_status(65536, 0, lambda *a: 0)\n    print("no error")\nexcept nbd.Error as e:\n    print("error", e.errno)',
      'assert len(h.pread(512, 0)) == 512',
      'h.shutdown()',
    ].join('\n');
    const { spawn } = await import('node:child_process');
    const child = spawn('python3', ['-c', py, srv.uri], { env: { ...process.env, ...SYSTEM_PYTHON_ENV }, stdio: ['pipe', 'pipe', 'inherit'] });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    const exited = new Promise<number | null>((resolve) => child.on('exit', resolve));
    while (!out.includes('ready')) await new Promise((r) => setTimeout(r, 20));
    assert.equal((await vsnap(['delete', fx.manifest, 's2'])).code, 0);
    child.stdin.end('go\n');
    assert.equal(await exited, 0, out);
    assert.match(out, /error EIO/);
  } finally {
    await srv.stop();
    t.cleanup();
  }
});

test('a bitmap since a snapshot that a write bypassing vsnap spoiled is refused, not answered short of that write', async (tt) => {
  const m = requireTool('nbdinfo', 'libnbd-bin');
  if (m) return tt.skip(m);
  const t = tmpdir();
  const fx = makeFixture(t.dir, { blockSize: 65536, scale: 1 });
  assert.equal((await vsnap(['create', fx.manifest, '--name', 's1'])).code, 0);
  assert.equal((await vsnap(['create', fx.manifest, '--name', 's2'])).code, 0);
  // A writer outside vsnap changes c.img (p2 and p3) while nothing serves the volume: no log holds it.
  const c = path.join(t.dir, 'c.img');
  const fd = fs.openSync(c, 'r+');
  fs.writeSync(fd, Buffer.alloc(512, 0x99), 0, 512, 0);
  fs.closeSync(fd);
  const srv = await startServe(fx.manifest);
  try {
    const r = await run('nbdinfo', ['--map=qemu:dirty-bitmap:s1', srv.uri]);
    assert.notEqual(r.code, 0, `a stale bitmap was answered:\n${r.stdout}`);
    await srv.stop();
  } catch (err) {
    srv.proc.kill('SIGKILL');
    throw err;
  } finally {
    t.cleanup();
  }
  assert.match(srv.log(), /stale/);
});
