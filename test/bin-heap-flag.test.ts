// bin/vsnap run as a user runs it (by its #! line) gives the coordinator a
// 64 MiB initial old space (fewer full collections on the NBD data path,
// docs/performance.md) and its workers V8's defaults (their memory budget,
// design.md §10).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { spawn } from 'node:child_process';
import { vsnap, tmpdir, BIN } from './helpers/cli.js';

const cmdline = (pid: number) => fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').filter(Boolean);
const children = (pid: number) =>
  fs
    .readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8')
    .trim()
    .split(/\s+/)
    .filter(Boolean)
    .map(Number);

test('bin/vsnap by its #! line: the serving coordinator has --initial-old-space-size=64, its workers do not', async (t) => {
  const { dir, cleanup } = tmpdir('vsnap-heapflag-');
  t.after(cleanup);
  const init = await vsnap(['init', dir, '--files', '1', '--file-size', '4MiB', '--partitions', '2', '--workers', '2']);
  assert.equal(init.code, 0, init.stderr);
  assert.ok((fs.statSync(BIN).mode & 0o111) !== 0, 'bin/vsnap is executable');
  const srv = spawn(BIN, ['serve', path.join(dir, 'volume.json')], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, NO_COLOR: '1' } });
  t.after(() => srv.kill('SIGKILL'));
  let out = '';
  let err = '';
  srv.stdout.on('data', (d: Buffer) => (out += d));
  srv.stderr.on('data', (d: Buffer) => (err += d));
  const deadline = Date.now() + 30_000;
  while (!/^nbd/m.test(out)) {
    assert.equal(srv.exitCode, null, `serve exited: ${err}`);
    assert.ok(Date.now() < deadline, `serve printed no URI: ${err}`);
    await new Promise((r) => setTimeout(r, 50));
  }
  // env(1) execs node in place: the spawned pid is the coordinator.
  const coord = cmdline(srv.pid!);
  assert.ok(coord.includes('--initial-old-space-size=64'), `coordinator: ${coord.join(' ')}`);
  const workers = children(srv.pid!);
  assert.equal(workers.length, 2, `two workers: ${workers}`);
  for (const w of workers) {
    const c = cmdline(w);
    assert.ok(!c.some((a) => a.startsWith('--initial-old-space-size')), `worker ${w}: ${c.join(' ')}`);
    assert.ok(c.some((a) => /worker/.test(a)), `worker ${w} runs the worker: ${c.join(' ')}`);
  }
  srv.kill('SIGTERM');
  await new Promise((r) => srv.once('exit', r));
});
