// Restore of the newest snapshot reads each partition's newest change log in
// record order, many records per read, and writes the blocks back as runs,
// every partition of a worker at once (src/worker/restore-newest.ts). Checked
// through the real binary against a model of the bytes, read from the backing
// files themselves: log order unlike block order, runs that cross partition
// and file boundaries, blocks written twice, and a damaged record.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { vsnap, tmpdir } from './helpers/cli.js';

const MiB = 1 << 20;
const HEADER = 4096;

async function ok(args: string[], input?: Buffer): Promise<string> {
  const r = await vsnap(args, input ? { input } : {});
  assert.equal(r.code, 0, `vsnap ${args.join(' ')}: ${r.stderr}`);
  return r.stdout;
}

/** 2 files of 8 MiB, 4 partitions of 4 MiB (64 KiB blocks), 2 workers with 2 partitions each, filled with random bytes. */
async function volume(dir: string): Promise<{ manifest: string; files: string[]; live: () => Buffer; logs: (id: number) => string[] }> {
  const vol = path.join(dir, 'vol');
  await ok(['init', vol, '--files', '2', '--file-size', '8MiB', '--partitions', '4', '--workers', '2']);
  const manifest = path.join(vol, 'volume.json');
  await ok(['write', manifest, '--offset', '0'], randomBytes(16 * MiB));
  const files = [0, 1].map((i) => path.join(vol, `disk-${i}.img`));
  const live = () => Buffer.concat(files.map((f) => fs.readFileSync(f)));
  const logs = (id: number) => ['part0', 'part1', 'part2', 'part3'].map((p) => path.join(vol, '.vsnap', 'demo', 'snapshots', String(id).padStart(8, '0'), `${p}.clog`));
  return { manifest, files, live, logs };
}

test('restore of the newest writes back every logged block exactly, whatever the order of the log, and cuts every log', async () => {
  const t = tmpdir('vsnap-restore-newest-');
  try {
    const v = await volume(t.dir);
    const id = JSON.parse(await ok(['create', v.manifest, '--name', 's1', '--json'])).id as number;
    const model = v.live();
    // Descending offsets, so each log holds its blocks in an order unlike theirs;
    // unaligned ends; writes across partition (4, 8, 12 MiB) and file (8 MiB) boundaries; a block written twice.
    const writes = [
      { off: 15 * MiB + 12345, len: 700_000 },
      { off: 12 * MiB - 70_000, len: 200_000 },
      { off: 8 * MiB - 3 * 65536 - 17, len: 6 * 65536 + 40 },
      { off: 5 * MiB + 1, len: 3 },
      { off: 4 * MiB - 65536, len: 2 * 65536 },
      { off: 2 * MiB + 4096, len: 1 * MiB },
      { off: 2 * MiB + 8192, len: 5000 },
      { off: 0, len: 65536 },
    ];
    for (const w of writes) await ok(['write', v.manifest, '--offset', String(w.off)], randomBytes(w.len));
    assert.ok(!v.live().equals(model), 'the writes changed the volume');
    const r = JSON.parse(await ok(['restore', v.manifest, 's1', '--json']));
    assert.ok(r.restoredBytes > 2 * MiB, `restored ${r.restoredBytes} bytes`);
    assert.deepEqual(r.perPartition.map((p: { logCut: boolean }) => p.logCut), [true, true, true, true]);
    const after = v.live();
    assert.ok(after.equals(model), `the backing files hold s1's bytes again (first difference at ${after.findIndex((b, i) => b !== model[i])})`);
    assert.deepEqual(v.logs(id).map((f) => fs.statSync(f).size), [HEADER, HEADER, HEADER, HEADER], 'every newest log is cut to its header');
    // Nothing changed since: a second restore writes nothing; the snapshot still reads as the model.
    assert.equal(JSON.parse(await ok(['restore', v.manifest, 's1', '--json'])).restoredBytes, 0);
    const out = path.join(t.dir, 's1.raw');
    await ok(['read', v.manifest, '--snapshot', 's1', '--offset', '0', '--length', String(16 * MiB), '--output', out]);
    assert.ok(fs.readFileSync(out).equals(model), 's1 reads as the model');
  } finally {
    t.cleanup();
  }
});

test('a damaged record in the newest log fails the restore with exit 3 naming the log, and that log is not cut', async () => {
  const t = tmpdir('vsnap-restore-damaged-');
  try {
    const v = await volume(t.dir);
    const id = JSON.parse(await ok(['create', v.manifest, '--name', 's1', '--json'])).id as number;
    // Three blocks of part0, each its own record; then one byte of the second record's data flipped.
    await ok(['write', v.manifest, '--offset', String(65536)], randomBytes(3 * 65536));
    const log = v.logs(id)[0];
    const size = fs.statSync(log).size;
    assert.equal(size, HEADER + 3 * (32 + 65536));
    const at = HEADER + (32 + 65536) + 32 + 1000;
    const fd = fs.openSync(log, 'r+');
    const b = Buffer.alloc(1);
    fs.readSync(fd, b, 0, 1, at);
    b[0] ^= 0xff;
    fs.writeSync(fd, b, 0, 1, at);
    fs.closeSync(fd);
    const r = await vsnap(['restore', v.manifest, 's1', '--json']);
    assert.equal(r.code, 3, `exit ${r.code}: ${r.stderr}`);
    assert.match(r.stderr, /part0\.clog at offset \d+: record of block \d+: crc mismatch/);
    assert.equal(fs.statSync(log).size, size, 'the damaged log keeps its records');
  } finally {
    t.cleanup();
  }
});
