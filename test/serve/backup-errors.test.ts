// scripts/vsnap-backup.py's own failures are one line naming the file, exit 1,
// never a Python traceback: an --in-place image or a --backing image that is
// not there (said before anything is copied), and an --in-place path that is
// a directory (an OSError from the copy itself).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { ROOT, vsnap, tmpdir, requireTool } from '../helpers/cli.js';
import { makeFixture } from '../helpers/volume-fixture.js';
import { run, SYSTEM_PYTHON_ENV } from '../nbd/harness.js';
import { startServe } from './harness.js';

const SCRIPT = path.join(ROOT, 'scripts', 'vsnap-backup.py');
const skip = requireTool('nbdsh', 'python3-libnbd') ?? requireTool('qemu-img', 'qemu-utils');

async function fails(args: string[], message: RegExp): Promise<void> {
  const r = await run('python3', [SCRIPT, ...args], { env: SYSTEM_PYTHON_ENV });
  assert.equal(r.code, 1, `exit code; stderr: ${r.stderr}`);
  assert.doesNotMatch(r.stderr, /Traceback/);
  assert.equal(r.stderr.trim().split('\n').length, 1, `one line: ${r.stderr}`);
  assert.match(r.stderr, message);
  assert.equal(r.stdout, '');
}

test('vsnap-backup.py: a missing --in-place or --backing image, or a directory, is one line naming it, exit 1, no traceback', { skip, timeout: 60_000 }, async () => {
  const t = tmpdir();
  const fx = makeFixture(t.dir);
  for (const n of ['s1', 's2']) assert.equal((await vsnap(['create', fx.manifest, '--name', n])).code, 0);
  const srv = await startServe(fx.manifest);
  try {
    const missing = path.join(t.dir, 'nonexist.raw');
    const inc = ['incremental', '--server', srv.uri, '--from', '1', '--snapshot', 'latest'];
    await fails([...inc, '--in-place', missing], new RegExp(`^vsnap-backup: ${missing}: no such file \\(--in-place: the image that holds snapshot 1 's1', --from\\)$`, 'm'));
    await fails([...inc, '--backing', missing, '--output', path.join(t.dir, 'o.qcow2')], new RegExp(`^vsnap-backup: ${missing}: no such file \\(--backing: `));
    assert.equal(fs.existsSync(path.join(t.dir, 'o.qcow2')), false, 'nothing was made');
    const dir = path.join(t.dir, 'a-dir');
    fs.mkdirSync(dir);
    await fails([...inc, '--in-place', dir], new RegExp(`^vsnap-backup: ${dir}: Is a directory$`, 'm'));
  } finally {
    await srv.stop();
    t.cleanup();
  }
});
