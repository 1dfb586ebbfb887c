// `vsnap serve --run CMD --clone SNAP`: CMD gets a throwaway clone as $uri,
// the clone is gone afterwards, and the exit status is CMD's. Two runs at
// once against one running server each see only their own writes; a run
// stopped by SIGTERM still deletes its clone.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { BIN, vsnap, tmpdir, requireTool } from '../helpers/cli.js';
import { makeFixture, liveFromFiles } from '../helpers/volume-fixture.js';
import { startServe, type Server } from './harness.js';

const skip = requireTool('qemu-io', 'qemu-utils');

interface Ran {
  code: number | null;
  stderr: string;
}

function serveRun(manifest: string, args: string[], onStart?: (pid: number) => void): Promise<Ran> {
  return new Promise((resolve, reject) => {
    const p = spawn(process.execPath, [BIN, 'serve', manifest, ...args], { stdio: ['ignore', 'inherit', 'pipe'], env: { ...process.env, NO_COLOR: '1' } });
    let stderr = '';
    p.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
    p.on('error', reject);
    p.on('exit', (code) => resolve({ code, stderr }));
    onStart?.(p.pid!);
  });
}

async function clones(manifest: string): Promise<string[]> {
  const r = await vsnap(['clone', 'list', manifest, '--json']);
  assert.equal(r.code, 0, r.stderr);
  return (JSON.parse(r.stdout) as { name: string }[]).map((c) => c.name);
}

/**
 * A test script for one run: write its own pattern at offset 0 on $uri,
 * say so, wait until the other run has written too, then check that $uri
 * still reads its own pattern, and exit with `code`.
 */
function script(dir: string, me: string, other: string, pattern: number, code: number): string {
  const file = path.join(dir, `${me}.sh`);
  fs.writeFileSync(
    file,
    [
      'set -e',
      'echo "$uri" > ' + path.join(dir, `${me}.uri`),
      `qemu-io -f raw -c 'write -P ${pattern} 0 192k' -c flush "$uri" > /dev/null`,
      `touch ${path.join(dir, `${me}.done`)}`,
      `for i in $(seq 1 300); do [ -e ${path.join(dir, `${other}.done`)} ] && break; sleep 0.1; done`,
      `qemu-io -f raw -c 'read -P ${pattern} 0 192k' "$uri" | grep -q 'read 196608/196608'`,
      `exit ${code}`,
    ].join('\n'),
  );
  return file;
}

test('two concurrent serve --run --clone against one server: each sees its own writes, clones gone, status propagated', { skip, timeout: 240_000 }, async () => {
  const t = tmpdir();
  const fx = makeFixture(t.dir, { scale: 4 });
  let srv: Server | undefined;
  try {
    assert.equal((await vsnap(['create', fx.manifest, '--name', 'pristine'])).code, 0);
    const before = liveFromFiles(fx);
    srv = await startServe(fx.manifest);
    const a = script(t.dir, 'a', 'b', 0x11, 0);
    const b = script(t.dir, 'b', 'a', 0x22, 3);
    const [ra, rb] = await Promise.all([
      serveRun(fx.manifest, ['--clone', 'pristine', '--run', `sh ${a}`]),
      serveRun(fx.manifest, ['--clone', 'pristine', '--run', `sh ${b}`]),
    ]);
    assert.equal(ra.code, 0, `run a: ${ra.stderr}`);
    assert.equal(rb.code, 3, `run b exits with its command's status: ${rb.stderr}`);
    const ua = fs.readFileSync(path.join(t.dir, 'a.uri'), 'utf8').trim();
    const ub = fs.readFileSync(path.join(t.dir, 'b.uri'), 'utf8').trim();
    assert.notEqual(ua, ub, 'each run has its own clone');
    assert.match(ua, new RegExp(`^nbd\\+unix:///clone/run-\\d+-[0-9a-f]{6}\\?socket=${srv.socket}$`), 'served by the running server');
    assert.deepEqual(await clones(fx.manifest), [], 'the clones are deleted afterwards');
    assert.ok(liveFromFiles(fx).equals(before), 'the backing files never saw a clone write');

    // A failing command against the running server: its status, and the clone gone.
    const fail = await serveRun(fx.manifest, ['--clone', 'pristine', '--run', 'exit 42']);
    assert.equal(fail.code, 42, fail.stderr);
    // SIGTERM to the run: CMD is stopped, the clone still goes.
    let pid = 0;
    const stopped = serveRun(fx.manifest, ['--clone', 'pristine', '--run', `touch ${path.join(t.dir, 'started')}; sleep 30`], (p) => (pid = p));
    for (let k = 0; k < 200 && !fs.existsSync(path.join(t.dir, 'started')); k++) await new Promise((r) => setTimeout(r, 50));
    assert.equal((await clones(fx.manifest)).length, 1, 'the clone exists while CMD runs');
    process.kill(pid, 'SIGTERM');
    const r = await stopped;
    assert.equal(r.code, 143, `exit status of the killed CMD: ${r.stderr}`);
    assert.deepEqual(await clones(fx.manifest), []);
    // An unknown snapshot: exit 2, nothing left behind.
    const bad = await serveRun(fx.manifest, ['--clone', 'nope', '--run', 'true']);
    assert.equal(bad.code, 2, bad.stderr);
    await srv.stop();
    srv = undefined;
  } finally {
    srv?.proc.kill('SIGKILL');
    t.cleanup();
  }
});

test('serve --run --clone with no server running: its own server, the clone deleted, the status propagated', { skip, timeout: 120_000 }, async () => {
  const t = tmpdir();
  const fx = makeFixture(t.dir, { scale: 4 });
  try {
    assert.equal((await vsnap(['create', fx.manifest, '--name', 'pristine'])).code, 0);
    const before = liveFromFiles(fx);
    const r = await serveRun(fx.manifest, [
      '--clone',
      'pristine',
      '--run',
      `echo "$uri" > ${path.join(t.dir, 'uri')}; qemu-io -f raw -c 'write -P 9 0 64k' -c 'read -P 9 0 64k' "$uri" | grep -q 'read 65536/65536' && exit 7`,
    ]);
    assert.equal(r.code, 7, r.stderr);
    assert.match(fs.readFileSync(path.join(t.dir, 'uri'), 'utf8'), /^nbd\+unix:\/\/\/clone\/run-/);
    assert.deepEqual(await clones(fx.manifest), []);
    assert.ok(liveFromFiles(fx).equals(before));
    const usage = await serveRun(fx.manifest, ['--clone', 'pristine']);
    assert.equal(usage.code, 2);
    assert.match(usage.stderr, /--clone: only with --run/);
  } finally {
    t.cleanup();
  }
});
