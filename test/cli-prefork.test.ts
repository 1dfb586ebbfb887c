// create forks its workers at its very start (src/cli/prefork-args.ts,
// src/coordinator/prefork.ts), before it has read the manifest or taken the
// lock: the pool then uses those workers, and whenever the command ends
// without them (invalid manifest, lock held, a server holding the volume)
// they are gone before the command exits. strace -f records each process's
// exec and end with timestamps: every worker must end before the coordinator.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { spawn, spawnSync } from 'node:child_process';
import { vsnap, tmpdir, requireTool, BIN } from './helpers/cli.js';
import { preforkCount } from '../src/cli/prefork-args.js';

interface Traced {
  status: number | null;
  stderr: string;
  stdout: string;
  /** Worker processes forked: pid -> when it ended (s), or undefined if the trace never saw it end. */
  workers: Map<number, number | undefined>;
  /** When the coordinator (the traced node) ended. */
  coordinatorEnd: number;
}

function tracedVsnap(dir: string, args: string[], env: Record<string, string> = {}): Traced {
  const log = path.join(dir, `strace-${Date.now()}.log`);
  const r = spawnSync('strace', ['-f', '-q', '-ttt', '-s', '1024', '-o', log, '-e', 'trace=execve', process.execPath, BIN, ...args], {
    encoding: 'utf8',
    env: { ...process.env, NO_COLOR: '1', ...env },
  });
  const lines = fs.readFileSync(log, 'utf8').split('\n');
  const coordinator = Number(lines[0].split(' ')[0]);
  const workers = new Map<number, number | undefined>();
  let coordinatorEnd = NaN;
  for (const l of lines) {
    // strace pads the pid column (pids under 10000 get two spaces).
    const m = /^(\d+) +(\d+\.\d+) (.*)$/.exec(l);
    if (!m) continue;
    const [pid, at, what] = [Number(m[1]), Number(m[2]), m[3]];
    if (what.startsWith('execve(') && pid !== coordinator && /worker(\.c?js|\/main\.js)"/.test(what)) workers.set(pid, undefined);
    if (what.startsWith('+++')) {
      if (pid === coordinator) coordinatorEnd = at;
      else if (workers.has(pid)) workers.set(pid, at);
    }
  }
  return { status: r.status, stdout: r.stdout, stderr: r.stderr, workers, coordinatorEnd };
}

function assertNoWorkerOutlived(r: Traced, expected: number): void {
  assert.equal(r.workers.size, expected, `expected ${expected} worker processes, saw pids ${[...r.workers.keys()].join(', ')}`);
  assert.ok(Number.isFinite(r.coordinatorEnd), 'the trace shows the coordinator ending');
  for (const [pid, end] of r.workers) {
    assert.ok(end !== undefined, `worker ${pid}: the trace never saw it end`);
    assert.ok(end <= r.coordinatorEnd, `worker ${pid} ended ${((end - r.coordinatorEnd) * 1000).toFixed(1)} ms after the command`);
  }
}

async function startServer(t: { after: (fn: () => void) => void }, dir: string, manifest: string) {
  const srv = spawn(process.execPath, [BIN, 'serve', manifest, '--socket', path.join(dir, 'nbd.sock')], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, NO_COLOR: '1' } });
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
  return srv;
}

async function volume(dir: string): Promise<string> {
  const init = await vsnap(['init', dir, '--files', '1', '--file-size', '4MiB', '--partitions', '3', '--workers', '2']);
  assert.equal(init.code, 0, init.stderr);
  return path.join(dir, 'volume.json');
}

test('create takes the workers forked at its start: two workers for two, none left after', async (t) => {
  const skip = requireTool('strace', 'strace');
  if (skip) return t.skip(skip);
  const { dir, cleanup } = tmpdir('vsnap-prefork-');
  t.after(cleanup);
  const manifest = await volume(dir);
  // Global flags and create's own options around the arguments still find the manifest.
  const r = tracedVsnap(dir, ['-q', 'create', '--name', 'a', manifest, '--json']);
  assert.equal(r.status, 0, r.stderr);
  assert.equal(JSON.parse(r.stdout).name, 'a');
  assertNoWorkerOutlived(r, 2);
  const list = await vsnap(['list', manifest, '--json']);
  assert.deepEqual((JSON.parse(list.stdout) as { name: string }[]).map((s) => s.name), ['a']);
});

test('create with an invalid manifest: the preforked workers are killed before it exits 2', async (t) => {
  const skip = requireTool('strace', 'strace');
  if (skip) return t.skip(skip);
  const { dir, cleanup } = tmpdir('vsnap-prefork-');
  t.after(cleanup);
  const manifest = await volume(dir);
  // Valid JSON with two workers (so they are forked), but a block size the schema refuses.
  const m = JSON.parse(fs.readFileSync(manifest, 'utf8')) as { blockSize: string };
  m.blockSize = '3KiB';
  fs.writeFileSync(manifest, JSON.stringify(m));
  const r = tracedVsnap(dir, ['create', manifest]);
  assert.equal(r.status, 2, r.stderr);
  assert.match(r.stderr, /invalid manifest .*\n\s+blockSize: must be a power of two/);
  assertNoWorkerOutlived(r, 2);
});

test('create while another process holds the lock: exit 1 naming the holder, no worker left', async (t) => {
  const skip = requireTool('strace', 'strace');
  if (skip) return t.skip(skip);
  const { dir, cleanup } = tmpdir('vsnap-prefork-');
  t.after(cleanup);
  const manifest = await volume(dir);
  const first = await vsnap(['create', manifest]);
  assert.equal(first.code, 0, first.stderr);
  const store = path.join(dir, '.vsnap', 'demo');
  assert.ok(fs.existsSync(store), `no store at ${store}`);
  fs.writeFileSync(path.join(store, 'lock'), JSON.stringify({ pid: process.pid, command: 'prune', startedAt: new Date().toISOString() }));
  const r = tracedVsnap(dir, ['create', manifest], { VSNAP_LOCK_WAIT_MS: '200' });
  assert.equal(r.status, 1, r.stderr);
  assert.match(r.stderr, new RegExp(`locked by pid ${process.pid} \\(prune`));
  assertNoWorkerOutlived(r, 2);
});

test('create through a running server: the preforked workers are not used and do not outlive the command', async (t) => {
  const skip = requireTool('strace', 'strace');
  if (skip) return t.skip(skip);
  const { dir, cleanup } = tmpdir('vsnap-prefork-');
  t.after(cleanup);
  const manifest = await volume(dir);
  const srv = await startServer(t, dir, manifest);
  const r = tracedVsnap(dir, ['create', manifest, '--name', 'via-server']);
  assert.equal(r.status, 0, r.stderr);
  assertNoWorkerOutlived(r, 2);
  srv.kill('SIGTERM');
  await new Promise((r) => srv.once('exit', r));
  const list = await vsnap(['list', manifest, '--json']);
  assert.deepEqual((JSON.parse(list.stdout) as { name: string }[]).map((s) => s.name), ['via-server']);
});

test('the guess: create with its positionals and value options; every doubt is none', (t) => {
  const { dir, cleanup } = tmpdir('vsnap-prefork-');
  t.after(cleanup);
  const m = path.join(dir, 'v.json');
  fs.writeFileSync(m, JSON.stringify({ partitions: [{ worker: 0 }, { worker: 1 }, { worker: 1 }] }));
  const two: string[][] = [
    ['create', m],
    ['-q', '--wait', '5s', 'create', '--name', 'x', m, '--expires', '1d'],
    ['create', m, '--json'],
  ];
  for (const a of two) assert.equal(preforkCount(a), 2, a.join(' '));
  // restore and the other commands that open the workers measured no gain (docs/performance.md).
  const none: string[][] = [
    ['list', m],
    ['create'],
    ['create', m, 'extra'],
    ['create', m, '--help'],
    ['create', '--', m],
    ['create', '--name', m],
    ['create', path.join(dir, 'missing.json')],
    ['create', dir],
    ['-V', 'create', m],
    ['restore', m, 'latest'],
    ['export', m, 'live', '--output', '/tmp/x.raw'],
    ['status', m],
  ];
  for (const a of none) assert.equal(preforkCount(a), 0, a.join(' '));
});

test('restore, export, read, write, diff and status: two workers for two, none outlives the command', async (t) => {
  const skip = requireTool('strace', 'strace');
  if (skip) return t.skip(skip);
  const { dir, cleanup } = tmpdir('vsnap-prefork-');
  t.after(cleanup);
  const manifest = await volume(dir);
  assert.equal((await vsnap(['create', manifest, '--name', 'a'])).code, 0);
  const input = path.join(dir, 'in.bin');
  fs.writeFileSync(input, Buffer.alloc(131_072, 7));
  const runs: [string[], RegExp][] = [
    [['write', manifest, '--offset', '64K', '--input', input], /wrote 128 KiB/],
    [['diff', manifest, 'a', '--json'], /"ranges"/],
    [['status', manifest, '--json'], /"partitions"/],
    [['read', manifest, '--offset', '64K', '--length', '4K', '--output', path.join(dir, 'out.bin')], /^$/],
    [['export', manifest, 'a', '--output', path.join(dir, 'a.raw')], /exported snapshot 1/],
    [['restore', manifest, 'a', '--json'], /"restoredBytes": 131072/],
  ];
  for (const [args, expect] of runs) {
    const r = tracedVsnap(dir, args);
    assert.equal(r.status, 0, `${args[0]}: ${r.stderr}`);
    assert.match(r.stdout + r.stderr, expect, args[0]);
    assertNoWorkerOutlived(r, 2);
  }
  assert.deepEqual(fs.readFileSync(path.join(dir, 'out.bin')), Buffer.alloc(4096, 7));
  const after = await vsnap(['diff', manifest, 'a', '--json']);
  assert.deepEqual(JSON.parse(after.stdout).ranges, []);
});

test('restore through a running server: no worker is forked, the refusal is the same', async (t) => {
  const skip = requireTool('strace', 'strace');
  if (skip) return t.skip(skip);
  const { dir, cleanup } = tmpdir('vsnap-prefork-');
  t.after(cleanup);
  const manifest = await volume(dir);
  assert.equal((await vsnap(['create', manifest, '--name', 'a'])).code, 0);
  const srv = await startServer(t, dir, manifest);
  const r = tracedVsnap(dir, ['restore', manifest, 'a']);
  // The same refusal as without the prefork: the server holds the volume.
  assert.equal(r.status, 1, r.stderr);
  assert.match(r.stderr, /volume is served by pid \d+ \(vsnap serve/);
  assertNoWorkerOutlived(r, 0);
  srv.kill('SIGTERM');
  await new Promise((r) => srv.once('exit', r));
});
