// A restore whose snapshot has one damaged logged record fails before it
// writes anything (adversary D2: restoring an older snapshot rewrote part of
// the live volume, then exited 3 with the same message a read gives, leaving
// a volume that was neither its old state nor the snapshot). Every record the
// restore would copy is read and crc-checked on every worker first.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { createHash, randomBytes } from 'node:crypto';
import { vsnap, tmpdir } from './helpers/cli.js';

const MiB = 1024 * 1024;

function digestFiles(dir: string): string {
  const h = createHash('sha256');
  for (const f of fs.readdirSync(dir).filter((n) => n.endsWith('.img')).sort()) h.update(f).update(fs.readFileSync(path.join(dir, f)));
  return h.digest('hex');
}

async function ok(args: string[], input?: Buffer): Promise<string> {
  const r = await vsnap(args, input ? { input } : {});
  assert.equal(r.code, 0, `${args.join(' ')}: ${r.stderr}`);
  return r.stdout;
}

/** A volume with s1, s2, s3, each after a full overwrite, and live writes after s3. */
async function volume(dir: string): Promise<{ manifest: string; snaps: string }> {
  await ok(['init', dir, '--files', '2', '--file-size', '4MiB', '--partitions', '4', '--workers', '2', '-q']);
  const manifest = path.join(dir, 'volume.json');
  for (const name of ['s1', 's2', 's3']) {
    await ok(['create', manifest, '--name', name, '-q']);
    await ok(['write', manifest, '--offset', '0'], randomBytes(8 * MiB));
  }
  const store = path.join(dir, '.vsnap', fs.readdirSync(path.join(dir, '.vsnap'))[0]);
  return { manifest, snaps: path.join(store, 'snapshots') };
}

/** Flip one byte inside the data of the first record of the partition's log of snapshot `id`. */
function damage(snaps: string, id: number, part: string): string {
  const dir = fs.readdirSync(snaps).find((d) => Number(d) === id)!;
  const file = path.join(snaps, dir, `${part}.clog`);
  const fd = fs.openSync(file, 'r+');
  try {
    const at = 4096 + 32 + 100;
    const b = Buffer.alloc(1);
    fs.readSync(fd, b, 0, 1, at);
    b[0] ^= 0xff;
    fs.writeSync(fd, b, 0, 1, at);
  } finally {
    fs.closeSync(fd);
  }
  return file;
}

for (const c of [
  { what: 'an older snapshot (through the copy-on-write path)', snap: 's1', id: 1, part: 'part2' },
  { what: 'the newest snapshot (in place, then the cut)', snap: 's3', id: 3, part: 'part3' },
]) {
  test(`restore of ${c.what} with a damaged record exits 3 and writes nothing`, async () => {
    const t = tmpdir();
    try {
      const v = await volume(t.dir);
      const file = damage(v.snaps, c.id, c.part);
      const live = digestFiles(t.dir);
      const logs = fs.readdirSync(v.snaps).map((d) => fs.readdirSync(path.join(v.snaps, d)).map((f) => `${d}/${f} ${fs.statSync(path.join(v.snaps, d, f)).size}`).join(',')).join(';');
      const r = await vsnap(['restore', v.manifest, c.snap]);
      assert.equal(r.code, 3, r.stderr);
      assert.ok(r.stderr.includes(path.basename(file)), r.stderr);
      assert.equal(digestFiles(t.dir), live, 'the backing files are exactly as before the restore');
      const after = fs.readdirSync(v.snaps).map((d) => fs.readdirSync(path.join(v.snaps, d)).map((f) => `${d}/${f} ${fs.statSync(path.join(v.snaps, d, f)).size}`).join(',')).join(';');
      assert.equal(after, logs, 'no change log grew or was cut');
      // The volume is usable as it was: the other snapshots restore and read.
      assert.equal((await vsnap(['list', v.manifest])).code, 0);
      await ok(['restore', v.manifest, c.snap === 's1' ? 's2' : 's1', '-q']);
    } finally {
      t.cleanup();
    }
  });
}
