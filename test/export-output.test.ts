// `vsnap export --output` to a full output, through the real binary: a file
// on a full file system and /dev/full are "no space left" (ENOSPC) naming the
// output, exit 1, with no temporary file left (it used to be exit 0 with a
// hole in the image on the full file system: short writes were ignored; and
// "fdatasync /dev/full: invalid argument" for /dev/full). Devices are
// supported outputs, written in place: /dev/null works (nothing to sync is
// not an error), and a block device (a loop device over a file of 0xff bytes)
// gets every byte of the snapshot, its zero blocks included (a sparse copy
// would leave the device's old bytes there).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import { vsnap, tmpdir } from './helpers/cli.js';
import { makeFixture } from './helpers/volume-fixture.js';
import { mountSmallFs } from './helpers/small-fs.js';

async function ok(args: string[], input?: Buffer): Promise<string> {
  const r = await vsnap(args, { input });
  assert.equal(r.code, 0, `vsnap ${args.join(' ')}: ${r.stderr}`);
  return r.stdout;
}

/** Zeroes written from offset 0: whole 4 MiB copy chunks of zeroes, which a sparse copy skips. */
const ZEROS = 12 << 20;

/** An 18 MiB fixture volume (random bytes) whose first 12 MiB were overwritten with zeroes, and a snapshot "s" of it. */
async function volumeWithZeros(dir: string) {
  fs.mkdirSync(dir, { recursive: true });
  const fx = makeFixture(dir, { scale: 256 });
  await ok(['write', fx.manifest, '--offset', '0'], Buffer.alloc(ZEROS));
  await ok(['create', fx.manifest, '--name', 's']);
  const expected = Buffer.from((await vsnap(['read', fx.manifest, '--snapshot', 's', '--offset', '0', '--length', String(fx.size)])).stdoutBuf);
  assert.equal(expected.length, fx.size);
  return { fx, expected };
}

test('export to /dev/full: ENOSPC naming it, exit 1 (not the EINVAL of its sync); to /dev/null: exit 0', async () => {
  const t = tmpdir();
  try {
    const { fx } = await volumeWithZeros(t.dir);
    const full = await vsnap(['export', fx.manifest, 's', '--output', '/dev/full']);
    assert.equal(full.code, 1, full.stderr);
    assert.match(full.stderr, /\/dev\/full: no space left on device \(ENOSPC\)/);
    assert.doesNotMatch(full.stderr, /EINVAL|invalid argument/);
    const nul = await vsnap(['export', fx.manifest, 's', '--output', '/dev/null']);
    assert.equal(nul.code, 0, nul.stderr);
    // Nothing left beside the outputs' names either way.
    assert.deepEqual(fs.readdirSync('/dev').filter((n) => n.includes('.vsnap-')), []);
  } finally {
    t.cleanup();
  }
});

test('export to a file on a full file system: ENOSPC naming the output, exit 1, no temporary file, no output', async (tt) => {
  const t = tmpdir();
  const mnt = path.join(t.dir, 'small');
  const small = mountSmallFs(mnt, '32k', '1777');
  if (typeof small === 'string') {
    t.cleanup();
    return tt.skip(small);
  }
  try {
    const { fx } = await volumeWithZeros(path.join(t.dir, 'vol'));
    const out = path.join(mnt, 'out.raw');
    const r = await vsnap(['export', fx.manifest, 's', '--output', out]);
    assert.equal(r.code, 1, `exit code (the image does not fit: ${fx.size} bytes, 6 MiB of them random, on 32 KiB); stderr: ${r.stderr}`);
    assert.match(r.stderr, new RegExp(`${out.replace(/[.]/g, '\\.')}: .*no space left on device \\(ENOSPC\\)`));
    assert.deepEqual(fs.readdirSync(mnt), [], 'no temporary file and no partial output left');
  } finally {
    small.unmount();
    t.cleanup();
  }
});

test('export to a block device (loop device): every byte of the snapshot lands, zero blocks included', async (tt) => {
  const t = tmpdir();
  try {
    const { fx, expected } = await volumeWithZeros(path.join(t.dir, 'vol'));
    const img = path.join(t.dir, 'device.img');
    fs.writeFileSync(img, Buffer.alloc(fx.size, 0xff));
    const lo = spawnSync('losetup', ['-f', '--show', img], { encoding: 'utf8' });
    if (lo.status !== 0) {
      const why = `cannot set up a loop device: ${(lo.stderr || lo.error?.message || '').trim()}`;
      if (process.env.CI) throw new Error(`${why} (CI runs as root and must not skip this test)`);
      return tt.skip(why);
    }
    const dev = lo.stdout.trim();
    try {
      await ok(['export', fx.manifest, 's', '--output', dev]);
    } finally {
      spawnSync('losetup', ['-d', dev]);
    }
    const got = fs.readFileSync(img);
    assert.ok(got.subarray(0, ZEROS).every((x) => x === 0), 'the zero blocks were written to the device');
    assert.ok(got.equals(expected), 'the device holds the snapshot');
  } finally {
    t.cleanup();
  }
});
