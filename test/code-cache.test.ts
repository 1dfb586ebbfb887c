// The bundle's V8 code cache (src/cli/bundle-loader.ts) may be missing,
// damaged, made by another node or for an older bundle: each time the bundle
// runs as it is (its current code, exit 0), and the cache is made anew for
// the next run. Tiny bundles in a scratch directory stand for
// dist/bundle/vsnap.cjs, run through the loader as bin/vsnap runs it.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { tmpdir, ROOT } from './helpers/cli.js';

const LOADER = path.join(ROOT, 'dist', 'bundle', 'loader.cjs');
const HEAD = 'vsnap-v8cache-1\n'.length + 32;

/** A bundle whose run prints its label and what became of the cache. */
function bundleText(label: string): string {
  // Enough functions that the cache has something in it, all run.
  const fns = Array.from({ length: 50 }, (_, i) => `function f${i}(x) { return x * ${i + 1} + ${label.length}; }`).join('\n');
  return `${fns}\nlet s = 0;\n${Array.from({ length: 50 }, (_, i) => `s += f${i}(1);`).join('\n')}\nprocess.stdout.write(${JSON.stringify(label)} + ' ' + s + ' ' + globalThis.vsnapCodeCache + '\\n');\nmodule.exports = s;\n`;
}

function run(bundle: string, env: Record<string, string> = {}): { label: string; cache: string } {
  const r = spawnSync(process.execPath, ['-e', `require(${JSON.stringify(LOADER)}).runBundle(${JSON.stringify(bundle)});`], {
    encoding: 'utf8',
    env: { ...process.env, ...env },
  });
  assert.equal(r.status, 0, r.stderr);
  assert.equal(r.stderr, '');
  const [label, , cache] = r.stdout.trim().split(' ');
  return { label, cache };
}

const cacheFiles = (dir: string) => (fs.existsSync(path.join(dir, 'cache')) ? fs.readdirSync(path.join(dir, 'cache')).map((f) => path.join(dir, 'cache', f)) : []);

test('the first run makes the cache, the next one uses it', (t) => {
  const { dir, cleanup } = tmpdir('vsnap-codecache-');
  t.after(cleanup);
  const bundle = path.join(dir, 'vsnap.cjs');
  fs.writeFileSync(bundle, bundleText('one'));
  assert.deepEqual(run(bundle), { label: 'one', cache: 'none' });
  const files = cacheFiles(dir);
  assert.equal(files.length, 1, `one cache file: ${files}`);
  assert.ok(!files[0].endsWith('.tmp'), files[0]);
  assert.deepEqual(run(bundle), { label: 'one', cache: 'hit' });
  // off: no cache read, none written.
  assert.deepEqual(run(bundle, { VSNAP_CODE_CACHE: 'off' }), { label: 'one', cache: 'off' });
  assert.equal(cacheFiles(dir).length, 1);
});

test('a rebuilt bundle of the same length never runs the old cached code', (t) => {
  const { dir, cleanup } = tmpdir('vsnap-codecache-');
  t.after(cleanup);
  const bundle = path.join(dir, 'vsnap.cjs');
  fs.writeFileSync(bundle, bundleText('old'));
  run(bundle);
  assert.equal(run(bundle).cache, 'hit');
  // Same length, other code: V8's own check (the source's length) would take the old cache.
  const next = bundleText('new');
  assert.equal(next.length, bundleText('old').length);
  fs.writeFileSync(bundle, next);
  assert.deepEqual(run(bundle), { label: 'new', cache: 'none' });
  assert.deepEqual(run(bundle), { label: 'new', cache: 'hit' });
});

test('a damaged cache file is not given to V8: the bundle compiles as without one, and the cache is made again', (t) => {
  const { dir, cleanup } = tmpdir('vsnap-codecache-');
  t.after(cleanup);
  const bundle = path.join(dir, 'vsnap.cjs');
  fs.writeFileSync(bundle, bundleText('right'));
  run(bundle);
  const [file] = cacheFiles(dir);
  const good = fs.readFileSync(file);
  const damaged = [
    // bytes of V8's data flipped (a release V8 does not checksum them)
    Buffer.concat([good.subarray(0, HEAD + 64), Buffer.from(good.subarray(HEAD + 64, HEAD + 96).map((b) => b ^ 0xff)), good.subarray(HEAD + 96)]),
    good.subarray(0, good.length >> 1), // cut short
    Buffer.from('not a cache'),
    Buffer.alloc(0),
  ];
  for (const bad of damaged) {
    fs.writeFileSync(file, bad);
    assert.deepEqual(run(bundle), { label: 'right', cache: 'damaged' });
    assert.deepEqual(run(bundle), { label: 'right', cache: 'hit' }, 'the cache was made again');
  }
});

test('a cache V8 rejects (made for other code, or by another node) costs a compile only, and is replaced', (t) => {
  const { dir, cleanup } = tmpdir('vsnap-codecache-');
  t.after(cleanup);
  const other = path.join(dir, 'other', 'vsnap.cjs');
  fs.mkdirSync(path.dirname(other));
  fs.writeFileSync(other, `${bundleText('other')}\n// longer\n`);
  run(other);
  const [foreign] = cacheFiles(path.dirname(other));
  const bundle = path.join(dir, 'vsnap.cjs');
  fs.writeFileSync(bundle, bundleText('mine'));
  run(bundle);
  const [file] = cacheFiles(dir);
  // V8's data of the other bundle, under this bundle's name, with a digest that matches it.
  const data = fs.readFileSync(foreign).subarray(HEAD);
  fs.writeFileSync(file, Buffer.concat([Buffer.from('vsnap-v8cache-1\n'), createHash('sha256').update(data).digest(), data]));
  assert.deepEqual(run(bundle), { label: 'mine', cache: 'rejected' });
  assert.deepEqual(run(bundle), { label: 'mine', cache: 'hit' });
  // Another node's flags make another V8: it keys its own cache beside this one.
  assert.deepEqual(runWith(['--max-old-space-size=300'], bundle), { label: 'mine', cache: 'none' });
  assert.equal(cacheFiles(dir).length, 2);
  assert.deepEqual(run(bundle), { label: 'mine', cache: 'hit' });
});

test('a cache directory that cannot be written: the bundle runs, and no cache appears', (t) => {
  // A file where the cache directory would be (root writes through any mode bits).
  const { dir, cleanup } = tmpdir('vsnap-codecache-');
  t.after(cleanup);
  const bundle = path.join(dir, 'vsnap.cjs');
  fs.writeFileSync(bundle, bundleText('ro'));
  fs.writeFileSync(path.join(dir, 'cache'), 'a file, not a directory');
  assert.deepEqual(run(bundle), { label: 'ro', cache: 'none' });
  assert.deepEqual(run(bundle), { label: 'ro', cache: 'none' });
  assert.equal(fs.readFileSync(path.join(dir, 'cache'), 'utf8'), 'a file, not a directory');
});

function runWith(flags: string[], bundle: string): { label: string; cache: string } {
  const r = spawnSync(process.execPath, [...flags, '-e', `require(${JSON.stringify(LOADER)}).runBundle(${JSON.stringify(bundle)});`], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  const [label, , cache] = r.stdout.trim().split(' ');
  return { label, cache };
}
