// Findings of an adversarial pass, each through the real binary: outputs that
// would overwrite the volume itself, inputs that never end, and signals to a
// server's whole process group.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { spawn } from 'node:child_process';
import { vsnap, tmpdir, BIN } from './helpers/cli.js';

async function demo(t: { after: (fn: () => void) => void }) {
  const { dir, cleanup } = tmpdir('vsnap-guard-');
  t.after(cleanup);
  const vol = path.join(dir, 'vol');
  const r = await vsnap(['init', vol, '--files', '1', '--file-size', '2MiB', '--partitions', '1', '--workers', '1']);
  assert.equal(r.code, 0, r.stderr);
  const manifest = path.join(vol, 'volume.json');
  assert.equal((await vsnap(['create', manifest, '--name', 'a'])).code, 0);
  return { dir, vol, manifest, store: path.join(vol, '.vsnap', 'demo') };
}

test('read --output and export --output refuse the volume itself: backing file, manifest, store', async (t) => {
  const { vol, manifest, store } = await demo(t);
  const disk = path.join(vol, 'disk-0.img');
  const clog = path.join(store, 'snapshots', '00000001', fs.readdirSync(path.join(store, 'snapshots', '00000001')).find((f) => f.endsWith('.clog'))!);
  const sizes = () => [disk, manifest, clog].map((f) => fs.statSync(f).size);
  const before = sizes();
  for (const [args, what] of [
    [['read', manifest, '--offset', '0', '--length', '10', '--output', disk], /is the backing file disk-0\.img/],
    [['read', manifest, '--offset', '0', '--length', '10', '--output', manifest], /is this volume's manifest/],
    [['read', manifest, '--offset', '0', '--length', '10', '--output', clog], /is inside the store/],
    [['export', manifest, 'live', '--output', manifest], /is this volume's manifest/],
  ] as const) {
    const r = await vsnap([...args]);
    assert.equal(r.code, 2, `${args.join(' ')}: ${r.stderr}`);
    assert.match(r.stderr, /--output: /);
    assert.match(r.stderr, what);
  }
  assert.deepEqual(sizes(), before, 'nothing was overwritten');
  assert.equal((await vsnap(['verify', manifest])).code, 0);
});

test('inputs that never end and paths that cannot be made fail at once', async (t) => {
  const { dir } = await demo(t);
  const v = await vsnap(['validate', '/dev/zero']);
  assert.equal(v.code, 2);
  assert.match(v.stderr, /cannot read manifest \/dev\/zero: not a regular file/);
  const i = await vsnap(['init', '/proc/vsnap-nowhere']);
  assert.notEqual(i.code, 0);
  assert.doesNotMatch(i.stderr, /internal error/);
  const f = path.join(dir, 'regular');
  fs.writeFileSync(f, 'keep me');
  const s = await vsnap(['serve', path.join(dir, 'vol', 'volume.json'), '--socket', f]);
  assert.equal(s.code, 2, s.stderr);
  assert.match(s.stderr, /--socket: .*regular exists and is not a socket/);
  assert.equal(fs.readFileSync(f, 'utf8'), 'keep me');
});

test('a snapshot directory without its commit record is exit 3 naming it', async (t) => {
  const { manifest, store } = await demo(t);
  fs.rmSync(path.join(store, 'snapshots', '00000001', 'snapshot.json'));
  const r = await vsnap(['read', manifest, '--offset', '0', '--length', '512']);
  assert.equal(r.code, 3, r.stderr);
  assert.match(r.stderr, /00000001\/snapshot\.json: the commit record of snapshot 1 is missing/);
});

test('SIGTERM to the whole process group of vsnap serve stops it cleanly (exit 0)', async (t) => {
  const { manifest } = await demo(t);
  for (let round = 0; round < 3; round++) {
    const proc = spawn(process.execPath, [BIN, 'serve', manifest], { stdio: ['ignore', 'pipe', 'pipe'], detached: true, env: { ...process.env, NO_COLOR: '1' } });
    let err = '';
    proc.stderr!.on('data', (d: Buffer) => (err += d.toString()));
    const exited = new Promise<number | string | null>((r) => proc.on('exit', (code, sig) => r(code ?? sig)));
    let out = '';
    await new Promise<void>((resolve, reject) => {
      proc.stdout!.on('data', (d: Buffer) => {
        out += d.toString();
        if (out.includes('\n')) resolve();
      });
      setTimeout(() => reject(new Error(`serve did not start: ${err}`)), 20_000).unref();
    });
    process.kill(-proc.pid!, 'SIGTERM');
    assert.equal(await exited, 0, `round ${round}: stdout ${out}; stderr ${err}`);
    assert.doesNotMatch(err, /EPIPE|IPC channel is closed/);
  }
});
