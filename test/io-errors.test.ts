// I/O failures of the coordinator itself come out as one line naming the
// call, the file and the errno, with exit 1: never "internal error" and a
// stack trace (issue 9, "Messages").
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { execFileSync } from 'node:child_process';
import { vsnap, tmpdir, BIN } from './helpers/cli.js';
import { describeErrnoError, serializeError, fileError, OperationError } from '../src/errors.js';

test('describeErrnoError names the call, the file and the errno', () => {
  const e = Object.assign(new Error("EACCES: permission denied, open '/s/lock'"), { code: 'EACCES', errno: -13, syscall: 'open', path: '/s/lock' });
  const m = describeErrnoError(e);
  assert.match(m, /^open \/s\/lock: permission denied \(EACCES\)/);
  const r = Object.assign(new Error('EIO: i/o error, rename'), { code: 'EIO', errno: -5, syscall: 'rename', path: '/a', dest: '/b' });
  assert.equal(describeErrnoError(r), 'rename /a -> /b: i/o error (EIO)');
  const s = serializeError(Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC', errno: -28, syscall: 'write' }));
  assert.deepEqual(s, { kind: 'operation', message: 'write: no space left on device (ENOSPC)', errno: 'ENOSPC' });
});

test('fileError names the file of a descriptor call, once, and keeps the errno', () => {
  const sync = Object.assign(new Error('ENOSPC: no space left on device, fdatasync'), { code: 'ENOSPC', errno: -28, syscall: 'fdatasync' });
  const e = fileError('/s/snapshots/00000003/p0.clog', sync);
  assert.ok(e instanceof OperationError);
  assert.equal(e.message, 'fdatasync /s/snapshots/00000003/p0.clog: no space left on device (ENOSPC)');
  assert.equal(e.errno, 'ENOSPC');
  const eio = fileError('/img', Object.assign(new Error('EIO: i/o error, read'), { code: 'EIO', errno: -5, syscall: 'read' })) as OperationError;
  assert.equal(eio.errno, 'EIO');
  // Already typed or already naming its path (callers may test its code): unchanged.
  assert.equal(fileError('/other', e), e);
  const enoent = Object.assign(new Error("ENOENT: no such file or directory, open '/a'"), { code: 'ENOENT', errno: -2, syscall: 'open', path: '/a' });
  assert.equal(fileError('/other', enoent), enoent);
  const bug = new RangeError('not an errno');
  assert.equal(fileError('/other', bug), bug);
});

const root = process.getuid?.() === 0;

test('a user who may not use the store gets a one-line permission error, exit 1', { skip: root ? false : 'needs root to run a command as another user' }, async (t) => {
  const { dir, cleanup } = tmpdir('vsnap-perm-');
  t.after(cleanup);
  const init = await vsnap(['init', dir, '--files', '1', '--file-size', '4MiB', '--partitions', '1', '--workers', '1']);
  assert.equal(init.code, 0, init.stderr);
  const manifest = path.join(dir, 'volume.json');
  assert.equal((await vsnap(['create', manifest, '--name', 'a'])).code, 0);
  // The manifest and the images are readable by everyone; the store is the owner's.
  fs.chmodSync(dir, 0o755);
  fs.chmodSync(manifest, 0o644);
  const store = path.join(dir, '.vsnap');
  fs.chmodSync(store, 0o755);
  for (const e of fs.readdirSync(store)) fs.chmodSync(path.join(store, e), 0o700);
  const before = execFileSync('find', [store, '-printf', '%p %s %m\n']).toString();
  for (const cmd of [['list', manifest], ['show', manifest, 'a'], ['create', manifest]]) {
    let out = '';
    let code = 0;
    try {
      execFileSync('setpriv', ['--reuid', '65534', '--regid', '65534', '--clear-groups', process.execPath, BIN, ...cmd], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, NO_COLOR: '1' } });
    } catch (err) {
      const e = err as { status: number; stderr: Buffer };
      code = e.status;
      out = e.stderr.toString();
    }
    assert.equal(code, 1, `${cmd[0]}: ${out}`);
    assert.doesNotMatch(out, /internal error|\n\s+at /, `${cmd[0]}: ${out}`);
    assert.match(out, /permission denied \(EACCES\)/, `${cmd[0]}: ${out}`);
    assert.equal(out.trim().split('\n').length, 1, `${cmd[0]}: ${out}`);
  }
  assert.equal(execFileSync('find', [store, '-printf', '%p %s %m\n']).toString(), before, 'nothing changed on disk');
});
