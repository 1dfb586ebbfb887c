// export --output leaves every all-zero 64 KiB piece of a fresh output as a
// hole (src/worker/export.ts), not only whole zero 4 MiB chunks, and the
// output holds the snapshot's bytes exactly (model from the backing files).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { vsnap, tmpdir } from './helpers/cli.js';

const MiB = 1 << 20;
const PIECE = 64 << 10;

async function ok(args: string[], input?: Buffer): Promise<void> {
  const r = await vsnap(args, input ? { input } : {});
  assert.equal(r.code, 0, `vsnap ${args.join(' ')}: ${r.stderr}`);
}

test('export of a snapshot: zero 64 KiB pieces inside data are holes; the bytes are the snapshot', async () => {
  const t = tmpdir('vsnap-export-holes-');
  try {
    const vol = path.join(t.dir, 'vol');
    await ok(['init', vol, '--files', '2', '--file-size', '8MiB', '--partitions', '4', '--workers', '2']);
    const manifest = path.join(vol, 'volume.json');
    // Data in about one piece of three, spread over every 4 MiB chunk; the rest zeros.
    const data = Buffer.alloc(16 * MiB);
    for (let i = 0; i < data.length / PIECE; i++) if (i % 3 === 1) randomBytes(PIECE).copy(data, i * PIECE);
    await ok(['write', manifest, '--offset', '0'], data);
    await ok(['create', manifest, '--name', 's1']);
    // After the snapshot: data over zero pieces and zeros over data, so s1 reads partly from its logs.
    await ok(['write', manifest, '--offset', String(3 * PIECE)], randomBytes(2 * PIECE));
    await ok(['write', manifest, '--offset', String(9 * MiB + PIECE)], Buffer.alloc(4 * PIECE));
    const out = path.join(t.dir, 's1.raw');
    await ok(['export', manifest, 's1', '--output', out]);
    const got = fs.readFileSync(out);
    assert.equal(got.length, data.length);
    assert.ok(got.equals(data), `the output holds s1's bytes (first difference at ${got.findIndex((b, i) => b !== data[i])})`);
    let nonZero = 0;
    for (let i = 0; i < data.length / PIECE; i++) if (data.subarray(i * PIECE, (i + 1) * PIECE).some((x) => x !== 0)) nonZero++;
    const allocated = fs.statSync(out).blocks * 512;
    // Every 4 MiB chunk holds data, so holes only at whole-chunk granularity would allocate all 16 MiB.
    assert.ok(allocated <= nonZero * PIECE + PIECE, `allocated ${allocated} bytes for ${nonZero} non-zero pieces of 64 KiB`);
  } finally {
    t.cleanup();
  }
});
