// The CI recipe (README "Recipes", examples/ci-loop.sh): the tests take turns
// on the live volume, the images go back to pristine after each, and the job
// stops at the first failing test with that test's status, the images back
// to pristine and the pristine snapshot gone.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import { vsnap, tmpdir, ROOT, BIN, requireTool } from './helpers/cli.js';

/** A small volume for the recipe, its image's pristine bytes, and a bin/ directory with `vsnap` in it as an installed one would be. */
async function ciVolume(t: { after(fn: () => void): void }, prefix: string) {
  const { dir, cleanup } = tmpdir(prefix);
  t.after(cleanup);
  const init = await vsnap(['init', dir, '--files', '1', '--file-size', '8MiB', '--partitions', '2', '--workers', '2', '--name', 'ci']);
  assert.equal(init.code, 0, init.stderr);
  const image = path.join(dir, 'disk-0.img');
  const bin = path.join(dir, 'bin');
  fs.mkdirSync(bin);
  fs.writeFileSync(path.join(bin, 'vsnap'), `#!/bin/sh\nexec "${process.execPath}" "${BIN}" "$@"\n`, { mode: 0o755 });
  return { dir, manifest: path.join(dir, 'volume.json'), image, before: fs.readFileSync(image), bin, log: path.join(dir, 'ran.log') };
}

test('examples/ci-loop.sh restores after each test and stops at the first failing one with its status', async (t) => {
  const missing = requireTool('qemu-io', 'qemu-utils');
  if (missing) return t.skip(missing);
  const { dir, manifest, image, before, bin, log } = await ciVolume(t, 'vsnap-ci-');
  const testScript = (name: string, body: string) => {
    const p = path.join(dir, name);
    fs.writeFileSync(p, `#!/bin/sh\necho ${name} >> "${log}"\n${body}\n`, { mode: 0o755 });
    return p;
  };
  // Each test first checks it starts from pristine (zeroes), then dirties the volume.
  const check = `qemu-io -f raw -c 'read -P 0 0 1M' "$uri" | grep -q 'read 1048576' || exit 9`;
  const t1 = testScript('t1.sh', `${check}\nqemu-io -f raw -c 'write -P 0x55 0 1M' "$uri" >/dev/null`);
  const t2 = testScript('t2.sh', `${check}\nqemu-io -f raw -c 'write -P 0x66 0 64k' "$uri" >/dev/null\nexit 7`);
  const t3 = testScript('t3.sh', 'exit 0');
  const r = spawnSync(path.join(ROOT, 'examples', 'ci-loop.sh'), [manifest, t1, t2, t3], {
    encoding: 'utf8',
    env: { ...process.env, PATH: `${bin}:${process.env.PATH}`, NO_COLOR: '1' },
    timeout: 300_000,
  });
  assert.equal(r.status, 7, `the job's status is the failing test's: ${r.stderr}`);
  assert.deepEqual(fs.readFileSync(log, 'utf8').trim().split('\n'), ['t1.sh', 't2.sh'], 't3 must not run after t2 failed; t2 started from pristine');
  assert.ok(fs.readFileSync(image).equals(before), 'the images are pristine again');
  const list = JSON.parse((await vsnap(['list', manifest, '--json'])).stdout) as unknown[];
  assert.deepEqual(list, [], 'the pristine snapshot was deleted');
});

test('examples/ci-loop.sh --clones gives each test its own clone of pristine, never writes the images, and stops at the first failure', async (t) => {
  const missing = requireTool('qemu-io', 'qemu-utils');
  if (missing) return t.skip(missing);
  const { dir, manifest, image, before, bin, log } = await ciVolume(t, 'vsnap-ci-clones-');
  const mtimeBefore = fs.statSync(image).mtimeMs;
  const testScript = (name: string, body: string) => {
    const p = path.join(dir, name);
    fs.writeFileSync(p, `#!/bin/sh\necho "${name} $uri" >> "${log}"\n${body}\n`, { mode: 0o755 });
    return p;
  };
  // The pattern check fails (exit 9) unless the test starts from pristine zeroes.
  const check = `qemu-io -f raw -c 'read -P 0 0 1M' "$uri" | grep -q 'read 1048576' || exit 9`;
  const t1 = testScript('t1.sh', `${check}\nqemu-io -f raw -c 'write -P 0x55 0 1M' "$uri" >/dev/null`);
  const t2 = testScript('t2.sh', `${check}\nqemu-io -f raw -c 'write -P 0x66 0 64k' "$uri" >/dev/null\nexit 7`);
  const t3 = testScript('t3.sh', 'exit 0');
  const r = spawnSync(path.join(ROOT, 'examples', 'ci-loop.sh'), ['--clones', manifest, t1, t2, t3], {
    encoding: 'utf8',
    env: { ...process.env, PATH: `${bin}:${process.env.PATH}`, NO_COLOR: '1' },
    timeout: 300_000,
  });
  assert.equal(r.status, 7, `the job's status is the failing test's: ${r.stderr}`);
  const ran = fs.readFileSync(log, 'utf8').trim().split('\n');
  assert.deepEqual(ran.map((l) => l.split(' ')[0]), ['t1.sh', 't2.sh'], 't3 must not run after t2 failed');
  for (const l of ran) assert.match(l, /clone%2Frun-|clone\/run-/, `each test's $uri is a clone export: ${l}`);
  assert.ok(fs.readFileSync(image).equals(before), 'the images were never written');
  assert.equal(fs.statSync(image).mtimeMs, mtimeBefore, 'not even touched');
  const clones = JSON.parse((await vsnap(['clone', 'list', manifest, '--json'])).stdout) as unknown[];
  assert.deepEqual(clones, [], 'every throwaway clone was deleted');
  const list = JSON.parse((await vsnap(['list', manifest, '--json'])).stdout) as unknown[];
  assert.deepEqual(list, [], 'the pristine snapshot was deleted');
});
