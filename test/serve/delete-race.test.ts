// Reads of a snapshot must see one consistent list of change logs while
// older snapshots are deleted through the control socket (issue 9, defect
// 4a). Every pread/preadv of the server and its workers is slowed down to
// 20 ms with strace, as on a busy disk, so each NBD read spans many awaits
// and the deletes land in the middle of reads.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { spawn } from 'node:child_process';
import { vsnap, tmpdir, requireTool, BIN } from '../helpers/cli.js';
import { run } from '../nbd/harness.js';

const KiB = 1024;
const BS = 64 * KiB;
const SIZE = 2 * 1024 * KiB; // two partitions of 1 MiB: 32 blocks in all

function fill(byte: number, size: number): Buffer {
  return Buffer.alloc(size, byte);
}

test('snapshot reads during deletes of older snapshots return the snapshot, with slow preads', async (t) => {
  for (const [tool, pkg] of [['strace', 'strace'], ['nbdcopy', 'libnbd-bin']]) {
    const m = requireTool(tool, pkg);
    if (m) return t.skip(m);
  }
  const tmp = tmpdir('vsnap-race-');
  t.after(tmp.cleanup);
  const dir = path.join(tmp.dir, 'vol');
  const init = await vsnap(['init', dir, '--files', '1', '--file-size', '2MiB', '--partitions', '2', '--workers', '2', '--block-size', '64KiB']);
  assert.equal(init.code, 0, init.stderr);
  const manifest = path.join(dir, 'volume.json');
  // s1: byte 1 everywhere; s2 after writing 2 over the first half; s3 (the
  // newest) after writing 3 over the first quarter. Nothing is written after
  // s3, so reading s3 reads the live source, and only the re-check after each
  // source read (a concurrent write may have copied the block meanwhile)
  // keeps it right while the test overwrites the live volume.
  const Q = SIZE / 4;
  const view = Buffer.concat([fill(3, Q), fill(2, Q), fill(1, 2 * Q)]);
  for (const [k, len] of [[1, SIZE], [2, 2 * Q], [3, Q]]) {
    const w = await vsnap(['write', manifest, '--offset', '0'], { input: fill(k, len) });
    assert.equal(w.code, 0, w.stderr);
    const c = await vsnap(['create', manifest, '--name', `s${k}`]);
    assert.equal(c.code, 0, c.stderr);
  }
  const nines = path.join(tmp.dir, 'nines.img');
  fs.writeFileSync(nines, fill(9, SIZE));

  const proc = spawn(
    'strace',
    ['-f', '-qq', '-o', '/dev/null', '-e', 'trace=pread64,preadv,preadv2', '-e', 'inject=pread64,preadv,preadv2:delay_enter=20000', process.execPath, BIN, 'serve', manifest],
    { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, NO_COLOR: '1' } },
  );
  let log = '';
  proc.stderr!.on('data', (d: Buffer) => (log += d.toString()));
  const exited = new Promise<number | null>((r) => proc.on('exit', (code) => r(code)));
  t.after(() => proc.kill('SIGKILL'));
  const uri = await new Promise<string>((resolve, reject) => {
    let out = '';
    proc.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      if (out.includes('\n')) resolve(out.slice(0, out.indexOf('\n')));
    });
    setTimeout(() => reject(new Error(`serve did not start: ${log}`)), 30_000).unref();
  });
  const socket = /socket=([^&]+)$/.exec(uri)![1];
  const snapUri = (name: string) => `nbd+unix:///snapshot/${name}?socket=${socket}`;

  // Read s3 whole, four times in parallel, while the live volume is
  // overwritten and s1, then s2 are deleted.
  const outs = [0, 1, 2, 3].map((i) => path.join(tmp.dir, `copy-${i}.img`));
  const copies = outs.map((o) => run('nbdcopy', ['--request-size=65536', '--requests=8', snapUri('s3'), o], { timeoutMs: 120_000 }));
  await new Promise((r) => setTimeout(r, 200));
  const writer = run('nbdcopy', ['--request-size=65536', '--requests=4', nines, uri], { timeoutMs: 120_000 });
  await new Promise((r) => setTimeout(r, 100));
  const d1 = await vsnap(['delete', manifest, 's1']);
  assert.equal(d1.code, 0, d1.stderr);
  const d2 = await vsnap(['delete', manifest, 's2']);
  assert.equal(d2.code, 0, d2.stderr);
  const results = await Promise.all(copies);
  const w = await writer;
  assert.equal(w.code, 0, `nbdcopy into live: ${w.stderr}`);
  for (let i = 0; i < outs.length; i++) {
    assert.equal(results[i].code, 0, `nbdcopy of s3: ${results[i].stderr}`);
    const got = fs.readFileSync(outs[i]);
    assert.equal(got.length, SIZE);
    let bad = -1;
    for (let k = 0; k < SIZE; k++) if (got[k] !== view[k]) { bad = k; break; }
    assert.equal(bad, -1, `copy ${i} of s3 read byte ${got[bad]} at offset ${bad}, expected ${view[bad]}`);
  }
  const list = await vsnap(['list', manifest, '--json']);
  assert.deepEqual(
    (JSON.parse(list.stdout) as { name: string }[]).map((s) => s.name),
    ['s3'],
  );
  // Stop the server (the node process under strace) in order.
  const kids = fs.readFileSync(`/proc/${proc.pid}/task/${proc.pid}/children`, 'utf8').trim().split(/\s+/).map(Number);
  for (const k of kids) process.kill(k, 'SIGTERM');
  assert.equal(await exited, 0, log);
  const r = await vsnap(['read', manifest, '--offset', '0', '--length', String(SIZE), '--snapshot', 's3']);
  assert.equal(r.code, 0, r.stderr);
  assert.ok(r.stdoutBuf.equals(view), 's3 after the server stopped');
  const live = await vsnap(['read', manifest, '--offset', '0', '--length', String(SIZE)]);
  assert.ok(live.stdoutBuf.equals(fill(9, SIZE)), 'live after the server stopped');
});
