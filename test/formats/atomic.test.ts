import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { fsyncDir, writeFileAtomic } from '../../src/formats/atomic.js';
import { tempDir } from './util.js';

test('writeFileAtomic creates, then replaces, and leaves no temporary file', async () => {
  const { dir, cleanup } = tempDir();
  try {
    const p = path.join(dir, 'volume.json');
    await writeFileAtomic(p, 'first\n');
    assert.equal(fs.readFileSync(p, 'utf8'), 'first\n');
    await writeFileAtomic(p, Buffer.from([1, 2, 3]));
    assert.deepEqual([...fs.readFileSync(p)], [1, 2, 3]);
    assert.deepEqual(fs.readdirSync(dir), ['volume.json']);
  } finally {
    cleanup();
  }
});

test('writeFileAtomic replaces through rename: a reader holding the old file keeps the old bytes', async () => {
  const { dir, cleanup } = tempDir();
  try {
    const p = path.join(dir, 'state.json');
    await writeFileAtomic(p, 'old');
    const fd = fs.openSync(p, 'r');
    const inoBefore = fs.fstatSync(fd).ino;
    await writeFileAtomic(p, 'new');
    // In-place writing would have changed what the open descriptor sees.
    const buf = Buffer.alloc(3);
    fs.readSync(fd, buf, 0, 3, 0);
    fs.closeSync(fd);
    assert.equal(buf.toString(), 'old');
    assert.notEqual(fs.statSync(p).ino, inoBefore);
    assert.equal(fs.readFileSync(p, 'utf8'), 'new');
  } finally {
    cleanup();
  }
});

test('writeFileAtomic: an I/O error passes through and nothing is left behind', async () => {
  const { dir, cleanup } = tempDir();
  try {
    await assert.rejects(writeFileAtomic(path.join(dir, 'missing', 'x.json'), 'x'), { code: 'ENOENT' });
    // Target is a directory: rename fails (EISDIR); the temporary file must be removed.
    fs.mkdirSync(path.join(dir, 'taken'));
    await assert.rejects(writeFileAtomic(path.join(dir, 'taken'), 'x'), (e: NodeJS.ErrnoException) => typeof e.code === 'string');
    assert.deepEqual(fs.readdirSync(dir), ['taken']);
  } finally {
    cleanup();
  }
});

test('fsyncDir syncs a directory and passes ENOENT through', async () => {
  const { dir, cleanup } = tempDir();
  try {
    await fsyncDir(dir);
    await assert.rejects(fsyncDir(path.join(dir, 'nope')), { code: 'ENOENT' });
  } finally {
    cleanup();
  }
});
