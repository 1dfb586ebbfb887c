import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { IntegrityError } from '../../src/errors.js';
import { readPartitionSnapshot, writePartitionSnapshot, type PartitionSnapshotState } from '../../src/formats/psnap.js';
import { encodeRecord } from '../../src/formats/record-json.js';
import { escapeRe, rejectsIntegrity, tempDir } from './util.js';

function sample(): PartitionSnapshotState {
  return {
    volumeFingerprint: 'a'.repeat(64),
    snapshotId: 7,
    partitionId: 'data',
    length: 3 * 65536,
    blockSize: 65536,
    extents: [
      { file: 'disk-b.img', path: '/srv/disk-b.img', offset: 0, length: 65536, backing: { dev: 2049, ino: 131, size: 1 << 30, mtimeMs: 1700000000123.5, ctimeMs: 1700000000123.5 } },
      { file: 'disk-a.img', path: '/srv/disk-a.img', offset: 512, length: 131072, backing: { dev: 2049, ino: 130, size: 1 << 30, mtimeMs: 1, ctimeMs: 2 } },
    ],
    worker: 1,
    pid: 4242,
    createdAt: '2024-05-01T12:00:00.000Z',
    changeLogFile: 'data.clog',
    changeLogHeaderCrc: 0xdeadbeef,
  };
}

test('partition snapshot round trip; bytes and checksum describe the file exactly', async () => {
  const { dir, cleanup } = tempDir();
  try {
    const p = path.join(dir, 'data.psnap');
    const st = sample();
    const r = await writePartitionSnapshot(p, st);
    const bytes = fs.readFileSync(p);
    assert.equal(r.bytes, bytes.length);
    assert.equal(r.checksum, 'sha256:' + createHash('sha256').update(bytes).digest('hex'));
    assert.deepEqual(await readPartitionSnapshot(p), st);
    const json = JSON.parse(bytes.toString());
    assert.equal(json.format, 'vsnap-psnap');
    assert.equal(json.version, 1);
    assert.match(json.checksum, /^sha256:[0-9a-f]{64}$/);
  } finally {
    cleanup();
  }
});

test('a partition snapshot is never overwritten', async () => {
  const { dir, cleanup } = tempDir();
  try {
    const p = path.join(dir, 'data.psnap');
    await writePartitionSnapshot(p, sample());
    await assert.rejects(writePartitionSnapshot(p, { ...sample(), pid: 1 }), { code: 'EEXIST' });
    assert.equal((await readPartitionSnapshot(p)).pid, 4242);
  } finally {
    cleanup();
  }
});

test('tampering with a partition snapshot is an IntegrityError naming the file', async () => {
  const { dir, cleanup } = tempDir();
  try {
    const p = path.join(dir, 'data.psnap');
    await writePartitionSnapshot(p, sample());
    fs.writeFileSync(p, fs.readFileSync(p, 'utf8').replace('"ino": 131', '"ino": 132'));
    await rejectsIntegrity(readPartitionSnapshot(p), escapeRe(p), /checksum mismatch/);
  } finally {
    cleanup();
  }
});

test('a well-checksummed psnap with the wrong shape is refused, naming the field', async () => {
  const { dir, cleanup } = tempDir();
  try {
    const cases: [Record<string, unknown>, RegExp][] = [
      [{ ...sample(), changeLogFile: '../x.clog' }, /changeLogFile/],
      [{ ...sample(), snapshotId: '7' }, /snapshotId/],
      [{ ...sample(), length: 65536 }, /extents: lengths add up to 196608, not the partition length 65536/],
      [{ ...sample(), extents: [{ ...sample().extents[0], backing: { dev: 1, ino: 1, size: -1, mtimeMs: 0, ctimeMs: 0 } }] }, /extents\[0\]\.backing\.size/],
      [{ ...sample(), changeLogHeaderCrc: 2 ** 32 }, /changeLogHeaderCrc/],
      [{ ...sample(), createdAt: 'yesterday' }, /createdAt/],
    ];
    for (const [i, [fields, re]] of cases.entries()) {
      const p = path.join(dir, `bad${i}.psnap`);
      fs.writeFileSync(p, encodeRecord('vsnap-psnap', fields));
      await rejectsIntegrity(readPartitionSnapshot(p), escapeRe(p), re);
    }
  } finally {
    cleanup();
  }
});

test('writing an invalid state is a programming error, not an integrity error, and writes nothing', async () => {
  const { dir, cleanup } = tempDir();
  try {
    const p = path.join(dir, 'x.psnap');
    await assert.rejects(writePartitionSnapshot(p, { ...sample(), blockSize: 1000 }), (e: unknown) => e instanceof Error && !(e instanceof IntegrityError) && /blockSize/.test(e.message));
    assert.equal(fs.existsSync(p), false);
  } finally {
    cleanup();
  }
});
