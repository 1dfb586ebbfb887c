// The chain of snapshots is checked (issue 9, defect 4c and "Messages"): a
// snapshot directory removed behind vsnap makes every older snapshot an
// integrity error (exit 3), never a newer snapshot's data; ids are never
// reused even when volume.json is lost.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { vsnap, tmpdir } from './helpers/cli.js';
import { reconcileChain } from '../src/store/store.js';

const SIZE = 2 * 1024 * 1024;
const fill = (b: number, n = SIZE) => Buffer.alloc(n, b);

async function threeSnapshots(t: { after: (fn: () => void) => void }) {
  const { dir, cleanup } = tmpdir('vsnap-chain-');
  t.after(cleanup);
  const vol = path.join(dir, 'vol');
  const init = await vsnap(['init', vol, '--files', '1', '--file-size', '2MiB', '--partitions', '2', '--workers', '2']);
  assert.equal(init.code, 0, init.stderr);
  const manifest = path.join(vol, 'volume.json');
  for (const k of [1, 2, 3]) {
    assert.equal((await vsnap(['write', manifest, '--offset', '0'], { input: fill(k) })).code, 0);
    const c = await vsnap(['create', manifest, '--name', `s${k}`, '--json']);
    assert.equal(c.code, 0, c.stderr);
  }
  assert.equal((await vsnap(['write', manifest, '--offset', '0'], { input: fill(4) })).code, 0);
  const store = path.join(vol, '.vsnap', 'demo');
  return { manifest, store, snapDir: (id: number) => path.join(store, 'snapshots', String(id).padStart(8, '0')) };
}

const read = (manifest: string, snap?: string) =>
  vsnap(['read', manifest, '--offset', '0', '--length', String(SIZE), ...(snap ? ['--snapshot', snap] : [])]);

test('reconcileChain: added after a crash, dropped after an interrupted delete, missing otherwise', () => {
  const dirOf = (id: number) => `/s/${id}`;
  assert.deepEqual(reconcileChain(undefined, [1, 3], [], dirOf), { chain: [1, 3], missing: [] });
  assert.deepEqual(reconcileChain([1, 2], [1, 2, 3], [], dirOf), { chain: [1, 2, 3], missing: [] });
  assert.deepEqual(reconcileChain([1, 2, 3], [1, 3], [2], dirOf), { chain: [1, 3], missing: [] });
  assert.deepEqual(reconcileChain([1, 2, 3], [1, 3], [], dirOf), { chain: [1, 2, 3], missing: [2] });
  // Nothing older than the missing id: nothing depends on it any more.
  assert.deepEqual(reconcileChain([2, 3], [3], [], dirOf), { chain: [3], missing: [] });
  assert.throws(() => reconcileChain([1, 3], [1, 2, 3], [], dirOf), /\/s\/2: snapshot 2 is not in the store's chain/);
});

test('a snapshot directory removed behind vsnap: older snapshots exit 3, newer ones and live still read', async (t) => {
  const { manifest, snapDir } = await threeSnapshots(t);
  fs.rmSync(snapDir(2), { recursive: true });
  const s1 = await read(manifest, 's1');
  assert.equal(s1.code, 3, `s1 must not read: ${s1.stderr}`);
  assert.match(s1.stderr, /snapshot 1 cannot be read: snapshot 2 .* was removed from the store behind vsnap/);
  assert.equal(s1.stdoutBuf.length, 0, 'no data on stdout');
  for (const args of [['export', manifest, 's1', '--output', path.join(path.dirname(manifest), 'x.img')], ['restore', manifest, 's1'], ['diff', manifest, 's1']]) {
    const r = await vsnap(args);
    assert.equal(r.code, 3, `${args[0]}: ${r.stderr}`);
  }
  const s3 = await read(manifest, 's3');
  assert.equal(s3.code, 0, s3.stderr);
  assert.ok(s3.stdoutBuf.equals(fill(3)));
  const live = await read(manifest);
  assert.ok(live.stdoutBuf.equals(fill(4)), 'restore of a broken snapshot changed nothing');
  const v = await vsnap(['verify', manifest, '--json']);
  assert.equal(v.code, 3, v.stderr);
  const problems = (JSON.parse(v.stdout) as { problems: { snapshot: number; message: string }[] }).problems;
  assert.ok(problems.some((p) => p.snapshot === 2 && /directory is gone/.test(p.message)), JSON.stringify(problems));
  assert.ok(problems.some((p) => p.snapshot === 1 && /cannot be read/.test(p.message)), JSON.stringify(problems));
  // Writes still copy into the newest log: s3 keeps reading right.
  assert.equal((await vsnap(['write', manifest, '--offset', '0'], { input: fill(5, 65536) })).code, 0);
  assert.ok((await read(manifest, 's3')).stdoutBuf.equals(fill(3)));
  // Deleting the broken snapshot clears the problem; the missing id leaves the chain.
  const d = await vsnap(['delete', manifest, 's1']);
  assert.equal(d.code, 0, d.stderr);
  const v2 = await vsnap(['verify', manifest, '--json']);
  assert.equal(v2.code, 0, v2.stdout + v2.stderr);
});

test('ids are never reused, even when volume.json is lost', async (t) => {
  const { manifest, store } = await threeSnapshots(t);
  assert.equal((await vsnap(['delete', manifest, 's3'])).code, 0);
  fs.rmSync(path.join(store, 'volume.json'));
  const c = await vsnap(['create', manifest, '--name', 's4', '--json']);
  assert.equal(c.code, 0, c.stderr);
  assert.equal((JSON.parse(c.stdout) as { id: number }).id, 4);
  fs.rmSync(path.join(store, 'ids.json'));
  assert.equal((await vsnap(['delete', manifest, 's4'])).code, 0);
  const c2 = await vsnap(['create', manifest, '--name', 's5', '--json']);
  assert.equal((JSON.parse(c2.stdout) as { id: number }).id, 5, 'volume.json alone still remembers');
});

test('a missing change log is an integrity error naming the file, and moving its snapshot away is the way on', async (t) => {
  const { manifest, snapDir } = await threeSnapshots(t);
  const clog = fs.readdirSync(snapDir(2)).find((f) => f.endsWith('.clog'))!;
  fs.rmSync(path.join(snapDir(2), clog));
  for (const args of [['read', manifest, '--offset', '0', '--length', '4096', '--snapshot', 's1'], ['read', manifest, '--offset', '0', '--length', '4096']]) {
    const r = await vsnap(args);
    assert.equal(r.code, 3, r.stderr);
    assert.match(r.stderr, new RegExp(`${clog.replace('.', '\\.')}: the change log of snapshot 2 .* is missing`));
    assert.doesNotMatch(r.stderr, /ENOENT|internal error/);
  }
  const v = await vsnap(['verify', manifest]);
  assert.equal(v.code, 3, v.stderr);
  // The admin moves snapshot 2 out of the store: s1 is broken, s3 and live work.
  fs.renameSync(snapDir(2), path.join(path.dirname(manifest), 'moved-away'));
  assert.equal((await read(manifest, 's1')).code, 3);
  assert.ok((await read(manifest, 's3')).stdoutBuf.equals(fill(3)));
  assert.ok((await read(manifest)).stdoutBuf.equals(fill(4)));
});
