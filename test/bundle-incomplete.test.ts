// A build or install whose bundle lost its worker program (a partial copy,
// an interrupted upgrade) fails with one line naming the missing file and
// the fix, exit 1, no node stack trace (adversary D5).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { spawn } from 'node:child_process';
import { ROOT, tmpdir } from './helpers/cli.js';

function run(bin: string, args: string[]): Promise<{ code: number | null; stderr: string }> {
  return new Promise((resolve) => {
    const p = spawn(process.execPath, [bin, ...args], { stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, NO_COLOR: '1' } });
    let stderr = '';
    p.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    p.on('exit', (code) => resolve({ code, stderr }));
  });
}

test('a bundle without its worker program: one line naming it, exit 1, no stack trace', async () => {
  const t = tmpdir();
  try {
    const copy = path.join(t.dir, 'vsnap');
    for (const d of ['bin', 'dist', 'build', 'package.json']) fs.cpSync(path.join(ROOT, d), path.join(copy, d), { recursive: true });
    fs.symlinkSync(path.join(ROOT, 'node_modules'), path.join(copy, 'node_modules'));
    const worker = path.join(copy, 'dist', 'bundle', 'worker.cjs');
    assert.ok(fs.existsSync(worker), 'the build has a bundled worker');
    fs.rmSync(worker);
    const bin = path.join(copy, 'bin', 'vsnap');
    const init = await run(bin, ['init', path.join(t.dir, 'v'), '--file-size', '4MiB', '-q']);
    assert.equal(init.code, 0, init.stderr);
    for (const args of [['create', path.join(t.dir, 'v', 'volume.json')], ['list', path.join(t.dir, 'v', 'volume.json')]]) {
      const r = await run(bin, args);
      if (args[0] === 'list') {
        assert.equal(r.code, 0, `list needs no worker: ${r.stderr}`);
        continue;
      }
      assert.equal(r.code, 1, r.stderr);
      assert.match(r.stderr, /worker\.cjs: the worker program is missing .*npm run build/);
      assert.doesNotMatch(r.stderr, /^\s+at /m, 'no stack trace');
      assert.doesNotMatch(r.stderr, /Cannot find module/);
    }
  } finally {
    t.cleanup();
  }
});
