// The store lock names its holder by pid and start time: a lock left by a
// crashed process whose pid now belongs to another live process is taken
// over, not obeyed for ever (issue 9, "Messages").
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { spawn } from 'node:child_process';
import { vsnap, tmpdir, BIN } from './helpers/cli.js';
import { processStart, processState, readLock } from '../src/store/lock.js';

async function volume(t: { after: (fn: () => void) => void }): Promise<{ manifest: string; store: string }> {
  const { dir, cleanup } = tmpdir('vsnap-lock-');
  t.after(cleanup);
  const r = await vsnap(['init', dir, '--files', '1', '--file-size', '4MiB', '--partitions', '1', '--workers', '1']);
  assert.equal(r.code, 0, r.stderr);
  const manifest = path.join(dir, 'volume.json');
  assert.equal((await vsnap(['create', manifest, '--name', 'a'])).code, 0);
  return { manifest, store: path.join(dir, '.vsnap', fs.readdirSync(path.join(dir, '.vsnap'))[0]) };
}

test('processStart tells processes apart and is stable for one process', () => {
  const mine = processStart(process.pid);
  assert.match(mine ?? '', /^[0-9a-f-]{36}:\d+$/);
  assert.equal(processStart(process.pid), mine);
  assert.equal(processStart(2 ** 22 + 7), undefined);
});

test('a lock whose pid is alive but started at another time is taken over', async (t) => {
  const { manifest, store } = await volume(t);
  // A live process that is not the lock's holder: its pid is in the lock, its start time is not.
  const sleeper = spawn('sleep', ['30']);
  t.after(() => sleeper.kill());
  const lock = path.join(store, 'lock');
  const real = processStart(sleeper.pid!)!;
  const [boot, ticks] = real.split(':');
  fs.writeFileSync(lock, JSON.stringify({ pid: sleeper.pid, command: 'create', startedAt: '2020-01-01T00:00:00Z', procStart: `${boot}:${Number(ticks) - 1000}` }));
  const r = await vsnap(['list', manifest], { env: { VSNAP_LOCK_WAIT_MS: '500' } });
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /\ba\b/);
  assert.equal(fs.existsSync(lock), false, 'the taken-over lock is released');
});

test('a lock whose holder really runs (same pid, same start) still makes the volume busy', async (t) => {
  const { manifest, store } = await volume(t);
  const sleeper = spawn('sleep', ['30']);
  t.after(() => sleeper.kill());
  const lock = path.join(store, 'lock');
  fs.writeFileSync(lock, JSON.stringify({ pid: sleeper.pid, command: 'create', startedAt: new Date().toISOString(), procStart: processStart(sleeper.pid!) }));
  const r = await vsnap(['list', manifest], { env: { VSNAP_LOCK_WAIT_MS: '300' } });
  assert.equal(r.code, 1);
  assert.match(r.stderr, new RegExp(`volume is busy: .* locked by pid ${sleeper.pid} \\(create`));
  assert.ok(fs.existsSync(lock));
});

test('a serve killed with -9 and not yet reaped (a zombie) does not hold the volume', async (t) => {
  const { manifest, store } = await volume(t);
  // The server's parent execs `sleep`, which never waits: once killed, the
  // server stays a zombie, as under a supervisor that has not reaped it yet.
  const parent = spawn('sh', ['-c', `"${process.execPath}" "${BIN}" serve "${manifest}" >/dev/null 2>&1 & echo $!; exec sleep 60`], { stdio: ['ignore', 'pipe', 'ignore'] });
  t.after(() => parent.kill('SIGKILL'));
  const pid = Number(await new Promise<string>((resolve) => parent.stdout!.once('data', (d: Buffer) => resolve(d.toString().trim()))));
  const lock = path.join(store, 'lock');
  for (let i = 0; i < 200 && !(readLock(store)?.pid === pid && readLock(store)?.socket !== undefined); i++) await new Promise((r) => setTimeout(r, 50));
  assert.equal(readLock(store)?.pid, pid, 'the server took the lock');
  process.kill(pid, 'SIGKILL');
  for (let i = 0; i < 100 && processState(pid) !== 'Z'; i++) await new Promise((r) => setTimeout(r, 50));
  assert.equal(processState(pid), 'Z', 'the killed server is a zombie');
  assert.ok(fs.existsSync(lock), 'its lock is still on disk');
  for (const args of [['list', manifest], ['status', manifest], ['create', manifest, '--name', 'b']]) {
    const r = await vsnap(args, { env: { VSNAP_LOCK_WAIT_MS: '500' } });
    assert.equal(r.code, 0, `${args[0]}: ${r.stderr}`);
  }
  const r = await vsnap(['list', manifest, '--json']);
  assert.deepEqual((JSON.parse(r.stdout) as { name: string }[]).map((s) => s.name), ['a', 'b']);
});
