// The store is private to its owner whatever the umask (issue 9 item 7,
// design.md §4): change logs hold old guest data, so every directory vsnap
// makes in the store is 0700 and every file 0600, after every kind of
// command, a crash and a serve. An older store (0755/0644) is tightened at
// its owner's next open; files made outside the store follow the umask; a
// user who may not read the store gets a one-line EACCES, exit 1.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { spawn, execFileSync } from 'node:child_process';
import { tmpdir, BIN } from './helpers/cli.js';

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** The real binary under a given umask (a shell sets it, then execs node). */
function vsnapUmask(umask: string, args: string[], input?: Buffer): Promise<Run> {
  return new Promise((resolve, reject) => {
    const p = spawn('sh', ['-c', `umask ${umask}; exec "$0" "$@"`, process.execPath, BIN, ...args], { env: { ...process.env, NO_COLOR: '1' } });
    let stdout = '';
    let stderr = '';
    p.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    p.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    p.on('error', reject);
    p.on('close', (code) => resolve({ code, stdout, stderr }));
    p.stdin.end(input);
  });
}

const ok = (r: Run, what: string) => assert.equal(r.code, 0, `${what}: ${r.stderr}`);

/** Every entry of the store whose mode is not private: directories 0700, files and sockets 0600. */
function loose(store: string): string[] {
  const rows = execFileSync('find', [store, '-printf', '%y %m %p\n']).toString().trim().split('\n');
  assert.ok(rows.length > 3, `the store has entries: ${rows.join('; ')}`);
  return rows.filter((row) => {
    const [type, mode] = row.split(' ');
    return type === 'd' ? mode !== '700' : mode !== '600';
  });
}

function volume(dir: string): Promise<Run> {
  return vsnapUmask('000', ['init', dir, '--files', '2', '--file-size', '4MiB', '--partitions', '2', '--workers', '2']);
}

function storeOf(manifest: string): string {
  const name = (JSON.parse(fs.readFileSync(manifest, 'utf8')) as { name: string }).name;
  return path.join(path.dirname(manifest), '.vsnap', name);
}

/** A new volume in its own temporary directory (removed after the test), with its manifest and store paths. */
async function freshVolume(t: { after(fn: () => void): void }): Promise<{ dir: string; vol: string; manifest: string; store: string }> {
  const { dir, cleanup } = tmpdir('vsnap-perm-');
  t.after(cleanup);
  const vol = path.join(dir, 'vol');
  ok(await volume(vol), 'init');
  const manifest = path.join(vol, 'volume.json');
  return { dir, vol, manifest, store: storeOf(manifest) };
}

test('with umask 000 the store stays 0700/0600 through create, write, delete, a crash, recovery and serve', async (t) => {
  const { manifest, store } = await freshVolume(t);
  ok(await vsnapUmask('000', ['create', manifest, '--name', 'a']), 'create');
  assert.deepEqual(loose(path.dirname(store)), [], 'after create (the .vsnap directory vsnap made too)');
  ok(await vsnapUmask('000', ['write', manifest, '--offset', '1000'], Buffer.alloc(300_000, 0x5a)), 'write');
  ok(await vsnapUmask('000', ['create', manifest, '--name', 'b']), 'create b');
  ok(await vsnapUmask('000', ['write', manifest, '--offset', '0'], Buffer.alloc(100_000, 0x33)), 'write 2');
  assert.ok(fs.statSync(path.join(store, 'snapshots', '00000002', 'part0.clog')).size > 4096, 'the change log holds records');
  assert.deepEqual(loose(store), [], 'after write (change-log records)');
  ok(await vsnapUmask('000', ['delete', manifest, 'a']), 'delete');
  assert.deepEqual(loose(store), [], 'after delete');

  // serve under umask 000: the sockets and a snapshot made through it.
  const srv = spawn('sh', ['-c', 'umask 000; exec "$0" "$@"', process.execPath, BIN, 'serve', manifest], { stdio: ['ignore', 'pipe', 'pipe'], detached: true });
  const gone = new Promise<void>((resolve) => srv.on('close', () => resolve()));
  let log = '';
  srv.stderr.on('data', (d: Buffer) => (log += d.toString()));
  await new Promise<void>((resolve, reject) => {
    srv.stdout.on('data', () => resolve());
    srv.on('close', (code) => reject(new Error(`serve exited ${code}: ${log}`)));
  });
  try {
    ok(await vsnapUmask('000', ['create', manifest, '--name', 'served']), 'create through serve');
    const during = execFileSync('find', [store, '-type', 's', '-printf', '%m %p\n']).toString().trim().split('\n');
    assert.ok(during.some((r) => r.endsWith('nbd.sock')), `the NBD socket is in the store: ${during.join('; ')}`);
    assert.deepEqual(loose(store), [], 'while serving (sockets 0600)');
  } finally {
    // A crash: the server and its workers killed, the lock, the sockets and unclean states left behind.
    process.kill(-srv.pid!, 'SIGKILL');
    await gone;
  }
  assert.ok(fs.existsSync(path.join(store, 'lock')), 'the dead server left its lock');
  const list = await vsnapUmask('000', ['list', manifest]);
  ok(list, 'list after the crash');
  assert.match(list.stdout, /served/);
  ok(await vsnapUmask('000', ['write', manifest, '--offset', '0'], Buffer.alloc(8192, 1)), 'write after the crash (recovery open)');
  assert.deepEqual(loose(store), [], 'after the recovery open');
});

test('an older store made 0755/0644 is tightened at its owner next open; files outside the store follow the umask', async (t) => {
  const { dir, manifest, store } = await freshVolume(t);
  ok(await vsnapUmask('022', ['create', manifest, '--name', 'a']), 'create');
  ok(await vsnapUmask('022', ['write', manifest, '--offset', '0'], Buffer.alloc(65536, 7)), 'write');
  // What vsnap made before the store was private: the umask's modes.
  execFileSync('chmod', ['-R', 'u=rwX,go=rX', store]);
  assert.ok(loose(store).length > 5, 'the store is loose before the open');
  const list = await vsnapUmask('022', ['list', manifest]);
  ok(list, 'list');
  assert.deepEqual(loose(store), [], 'after the owner opened it');

  const out = path.join(dir, 'image.raw');
  ok(await vsnapUmask('027', ['export', manifest, 'a', '--output', out]), 'export');
  assert.equal(fs.statSync(out).mode & 0o777, 0o640, 'the export follows the umask');
  const bytes = path.join(dir, 'bytes');
  ok(await vsnapUmask('002', ['read', manifest, '--offset', '0', '--length', '4096', '--output', bytes]), 'read --output');
  assert.equal(fs.statSync(bytes).mode & 0o777, 0o664, 'read --output follows the umask');
});

const root = process.getuid?.() === 0;

test('a user who may not read a private store gets a one-line EACCES from list, show, read and verify', { skip: root ? false : 'needs root to run a command as another user' }, async (t) => {
  const { dir, vol, manifest, store } = await freshVolume(t);
  ok(await vsnapUmask('000', ['create', manifest, '--name', 'a']), 'create');
  ok(await vsnapUmask('000', ['write', manifest, '--offset', '0'], Buffer.alloc(65536, 9)), 'write');
  // Everything outside the store is open to everyone (umask 000); the store is not.
  fs.chmodSync(dir, 0o755);
  assert.deepEqual(loose(store), []);
  const tree = () => execFileSync('find', [vol, '-printf', '%p %s %m %T@\n']).toString();
  const before = tree();
  for (const cmd of [['list', manifest], ['show', manifest, 'a'], ['read', manifest, '--offset', '0', '--length', '512'], ['read', manifest, '--snapshot', 'a', '--offset', '0', '--length', '512'], ['verify', manifest]]) {
    let out = '';
    let code = 0;
    try {
      execFileSync('setpriv', ['--reuid', '65534', '--regid', '65534', '--clear-groups', process.execPath, BIN, ...cmd], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, NO_COLOR: '1' } });
    } catch (err) {
      const e = err as { status: number; stderr: Buffer };
      code = e.status;
      out = e.stderr.toString();
    }
    const what = `${cmd.join(' ')}: ${out}`;
    assert.equal(code, 1, what);
    assert.doesNotMatch(out, /internal error|\n\s+at /, what);
    assert.match(out, /permission denied \(EACCES\)/, what);
    assert.ok(out.includes(store), `the message names the store: ${what}`);
    assert.equal(out.trim().split('\n').length, 1, what);
  }
  assert.equal(tree(), before, 'nothing changed on disk');
});
