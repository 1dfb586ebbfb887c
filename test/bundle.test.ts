// The bundled entry points (scripts/bundle.mjs, docs/performance.md "Fixed
// cost of the CLI"): `npm run build` makes them, they match the compiled
// modules they were made from (a stale bundle would run old code under every
// end-to-end test), the package ships them, and bin/vsnap and the workers it
// forks run them, the CLI with the V8 code cache the build made for this
// node (src/cli/bundle-loader.ts; test/code-cache.test.ts tests the cache's
// failure cases).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import { vsnap, tmpdir, requireTool, ROOT, BIN } from './helpers/cli.js';

const BUNDLE = path.join(ROOT, 'dist', 'bundle');

test('npm run build bundles the CLI and the worker, and the package ships the bundle', () => {
  const pkg = JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { scripts: Record<string, string>; files: string[] };
  assert.match(pkg.scripts.build, /node scripts\/bundle\.mjs/, 'the build script does not run scripts/bundle.mjs');
  assert.match(pkg.scripts.prepare, /node scripts\/bundle\.mjs/, 'the prepare script does not run scripts/bundle.mjs');
  assert.ok(pkg.files.includes('dist/bundle'), 'package.json "files" lacks dist/bundle');
  for (const f of ['vsnap.cjs', 'loader.cjs', 'worker.cjs', 'worker-main.cjs', 'inputs.json']) assert.ok(fs.existsSync(path.join(BUNDLE, f)), `dist/bundle/${f} is missing: run npm run build`);
});

test('the bundle matches the compiled modules it was made from (not stale)', () => {
  const { inputs } = JSON.parse(fs.readFileSync(path.join(BUNDLE, 'inputs.json'), 'utf8')) as { inputs: Record<string, string> };
  const names = Object.keys(inputs);
  for (const entry of ['dist/src/main.js', 'dist/src/worker/main.js', 'dist/src/commands/snapshots.js']) assert.ok(names.includes(entry), `the bundle was not made from ${entry}`);
  const stale = names.filter((f) => {
    const p = path.join(ROOT, f);
    return !fs.existsSync(p) || createHash('sha256').update(fs.readFileSync(p)).digest('hex') !== inputs[f];
  });
  assert.deepEqual(stale, [], `dist/bundle is stale (these compiled files changed since it was made): run npm run build`);
});

test('bin/vsnap runs the bundle, and the workers it forks run the bundled worker', async (t) => {
  const skip = requireTool('strace', 'strace');
  if (skip) return t.skip(skip);
  const { dir, cleanup } = tmpdir('vsnap-bundle-');
  t.after(cleanup);
  const init = await vsnap(['init', dir, '--files', '1', '--file-size', '4MiB', '--partitions', '2', '--workers', '2']);
  assert.equal(init.code, 0, init.stderr);
  const log = path.join(dir, 'strace.log');
  // -ff: one file per process. With one file, two workers opening at once
  // interleave as '<unfinished ...>' and '<... openat resumed>' lines, and a
  // line with the path then has no result on it (seen in a clean-clone run).
  const r = spawnSync('strace', ['-ff', '-qq', '-s', '1024', '-o', log, '-e', 'trace=execve,openat', process.execPath, BIN, 'create', path.join(dir, 'volume.json')], { encoding: 'utf8', env: { ...process.env, NO_COLOR: '1' } });
  assert.equal(r.status, 0, r.stderr);
  const trace = fs
    .readdirSync(dir)
    .filter((n) => n.startsWith('strace.log.'))
    .map((n) => fs.readFileSync(path.join(dir, n), 'utf8'))
    .join('\n');
  const opened = (f: string) => new RegExp(`openat\\([^"]*"${f.replace(/[.]/g, '\\.')}"[^=]*= \\d`).test(trace);
  assert.ok(opened(path.join(BUNDLE, 'vsnap.cjs')), 'bin/vsnap did not load dist/bundle/vsnap.cjs');
  assert.ok(!opened(path.join(ROOT, 'dist', 'src', 'main.js')), 'bin/vsnap loaded dist/src/main.js beside the bundle');
  const workers = trace.split('\n').filter((l) => l.includes('execve(') && l.includes(process.execPath) && !l.includes(BIN));
  assert.equal(workers.length, 2, `expected 2 forked workers:\n${workers.join('\n')}`);
  for (const w of workers) assert.ok(w.includes(path.join(BUNDLE, 'worker.cjs')), `a worker did not run the bundled worker: ${w}`);
  assert.equal(trace.split('\n').filter((l) => l.includes(path.join(BUNDLE, 'worker-main.cjs')) && /openat\(.*= \d/.test(l)).length, 2, 'each worker reads the bundled worker code');
  // ... with the code cache the build made (read, and no new one written: a hit).
  const cacheOpens = trace.split('\n').filter((l) => /openat\(.*"[^"]*\/cache\/worker-main\.[0-9a-f]+\.v8cache[^"]*"/.test(l) && /= \d/.test(l));
  assert.equal(cacheOpens.length, 2, `each worker reads its code cache:\n${cacheOpens.join('\n')}`);
  assert.ok(cacheOpens.every((l) => l.includes('O_RDONLY')), `a worker wrote its code cache (the build's was not used):\n${cacheOpens.join('\n')}`);
});

test('bin/vsnap runs the bundle with the code cache the build made, run by node or by its #! line', async (t) => {
  const { dir, cleanup } = tmpdir('vsnap-bundle-');
  t.after(cleanup);
  const init = await vsnap(['init', dir, '--files', '1', '--file-size', '4MiB', '--partitions', '1', '--workers', '1']);
  assert.equal(init.code, 0, init.stderr);
  const manifest = path.join(dir, 'volume.json');
  const env = { ...process.env, NO_COLOR: '1', VSNAP_STARTUP_TRACE: '1' };
  for (const [how, cmd, args] of [
    ['node bin/vsnap', process.execPath, [BIN, 'list', manifest]],
    ['bin/vsnap (#! flags)', BIN, ['list', manifest]],
  ] as const) {
    const r = spawnSync(cmd, args, { encoding: 'utf8', env });
    assert.equal(r.status, 0, `${how}: ${r.stderr}`);
    assert.match(r.stderr, /^vsnap-trace .* cache=hit$/m, `${how}: the build's code cache was not used`);
  }
});
