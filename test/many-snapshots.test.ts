// Issue 9: a store with thousands of snapshots works within a small open-file
// limit. Every command runs the real binary under `ulimit -n` (256 for the
// 3,000 snapshots of the normal suite; VSNAP_MANY_SNAPSHOTS=10000 runs 10,000
// under 1,024, design §10), so one descriptor per change log would fail with
// EMFILE at once. Reads are checked against a model of the volume at each
// snapshot, including old snapshots whose view walks thousands of logs.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { BIN, ROOT, requireTool, tmpdir, vsnap, type RunResult } from './helpers/cli.js';
import fs from 'node:fs';
import path from 'node:path';
import { liveFromFiles, rng, type Fixture } from './helpers/volume-fixture.js';
import { cloneSnapshots, storeOf } from './helpers/many-snapshots.js';
import { runOk } from './nbd/harness.js';

const COUNT = Number(process.env.VSNAP_MANY_SNAPSHOTS ?? 3000);
const LIMIT = COUNT > 3000 ? 1024 : 256;

/** The real binary with the open-file limit lowered, as `sh -c 'ulimit -n N; exec node bin/vsnap ...'`. */
function limited(args: string[], input?: Buffer): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = spawn('sh', ['-c', `ulimit -n ${LIMIT} && exec "$0" "$@"`, process.execPath, BIN, ...args], {
      cwd: ROOT,
      env: { ...process.env, NO_COLOR: '1' },
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on('data', (d: Buffer) => out.push(d));
    child.stderr.on('data', (d: Buffer) => err.push(d));
    child.on('error', reject);
    child.stdin.on('error', () => {});
    child.stdin.end(input ?? '');
    child.on('close', (code) => {
      const stdoutBuf = Buffer.concat(out);
      resolve({ code: code ?? -1, stdout: stdoutBuf.toString(), stdoutBuf, stderr: Buffer.concat(err).toString() });
    });
  });
}

const timings: string[] = [];
async function ok(what: string, args: string[], input?: Buffer): Promise<RunResult> {
  const t0 = Date.now();
  const r = await limited(args, input);
  timings.push(`${what} ${Date.now() - t0} ms`);
  assert.doesNotMatch(r.stderr, /EMFILE|ENFILE|too many open files/i, `${what}: ${r.stderr}`);
  assert.equal(r.code, 0, `${what} exit code; stderr: ${r.stderr}`);
  return r;
}

test(`${COUNT} snapshots under ulimit -n ${LIMIT}: list, write, create, read old and new, serve, delete, prune, verify`, { timeout: COUNT > 3000 ? 1_800_000 : 300_000 }, async (tt) => {
  const missing = requireTool('nbdcopy', 'libnbd-bin');
  if (missing) return tt.skip(missing);
  const t = tmpdir();
  try {
    const fx = smallVolume(t.dir);
    const m = fx.manifest;
    const rand = rng(9);
    const scribble = async (n: number, run: (a: string[], i: Buffer) => Promise<RunResult>) => {
      for (let k = 0; k < n; k++) {
        const len = 1 + Math.floor(rand() * 3 * fx.blockSize);
        const off = Math.floor(rand() * (fx.size - len));
        const w = await run(['write', m, '--offset', String(off)], randomBytes(len));
        assert.equal(w.code, 0, w.stderr);
      }
    };
    const plain = (a: string[], i: Buffer) => vsnap(a, { input: i });
    // Three real snapshots with real log content between them; the third
    // (log still empty) is the template of the copies.
    const model = new Map<number, Buffer>();
    for (const name of ['first', 'second', 'template']) {
      const c = await vsnap(['create', m, '--name', name, '--json']);
      assert.equal(c.code, 0, c.stderr);
      model.set(JSON.parse(c.stdout).id as number, liveFromFiles(fx));
      if (name !== 'template') await scribble(4, plain);
    }
    const t0 = Date.now();
    const clones = await cloneSnapshots(storeOf(m), 3, COUNT - 3);
    timings.push(`cloning ${clones.length} snapshots ${Date.now() - t0} ms`);
    for (const id of clones) model.set(id, model.get(3)!);
    const newestClone = clones[clones.length - 1];
    const middle = clones[Math.floor(clones.length / 2)];

    const list = JSON.parse((await ok('list', ['list', m, '--json'])).stdout) as { id: number }[];
    assert.equal(list.length, COUNT);
    assert.equal(list[0].id, 1);
    assert.equal(list[list.length - 1].id, newestClone);

    // Copy-on-write into the newest (copied) log, then a real create after thousands.
    await scribble(2, (a, i) => ok('write', a, i));
    const c = JSON.parse((await ok('create', ['create', m, '--name', 'after', '--json'])).stdout) as { id: number };
    assert.equal(c.id, newestClone + 1);
    model.set(c.id, liveFromFiles(fx));
    await scribble(1, (a, i) => ok('write', a, i));

    const readSnap = async (id: number) => {
      const r = await ok(`read --snapshot ${id}`, ['read', m, '--offset', '0', '--length', String(fx.size), '--snapshot', String(id)]);
      assert.ok(r.stdoutBuf.equals(model.get(id)!), `snapshot ${id} reads as taken`);
    };
    await readSnap(1); // the oldest: its view walks every log
    await readSnap(c.id); // the newest

    // vsnap serve under the same limit, an NBD read of the oldest snapshot.
    const srv = await serveLimited(m);
    try {
      const t1 = Date.now();
      const r = await runOk('nbdcopy', [srv.exportUri('snapshot/first'), '-'], { timeoutMs: 120_000 });
      timings.push(`nbdcopy of snapshot 1 ${Date.now() - t1} ms`);
      assert.ok(r.stdoutBuf.equals(model.get(1)!), 'snapshot 1 over NBD reads as taken');
    } finally {
      await srv.stop();
    }

    await ok('verify', ['verify', m]);

    // Deletes in the middle: snapshot 2's log (real content) merges into 1's.
    await ok('delete', ['delete', m, '2', String(middle), String(middle + 1)]);
    await readSnap(1);
    await readSnap(middle - 1);

    const pruned = JSON.parse((await ok('prune', ['prune', m, '--keep-last', '10', '--include-manual', '--json'])).stdout) as { kept: unknown[]; deleted: unknown[] };
    assert.equal(pruned.kept.length, 10);
    assert.equal(pruned.deleted.length, COUNT + 1 - 3 - 10);
    const left = JSON.parse((await ok('list', ['list', m, '--json'])).stdout) as { id: number }[];
    assert.deepEqual(left.map((s) => s.id), Array.from({ length: 10 }, (_, k) => c.id - 9 + k));
    await readSnap(left[0].id);
    await readSnap(c.id);
    await ok('verify', ['verify', m]);
    tt.diagnostic(timings.join('; '));
    if (process.env.VSNAP_MANY_SNAPSHOTS) console.error(`many-snapshots timings: ${timings.join('; ')}`);
  } finally {
    t.cleanup();
  }
});

/**
 * Two partitions on two workers, 32 blocks each (one spans two files): every
 * snapshot costs 2 logs, and each worker holds COUNT of them, far above the limit.
 */
function smallVolume(dir: string): Fixture {
  const bs = 4096;
  const initial = new Map<string, Buffer>([
    ['a.img', randomBytes(40 * bs)],
    ['b.img', randomBytes(24 * bs)],
  ]);
  for (const [f, b] of initial) fs.writeFileSync(path.join(dir, f), b);
  const partitions = [
    { id: 'p0', worker: 0, extents: [{ file: 'a.img', offset: 0, length: 32 * bs }] },
    { id: 'p1', worker: 1, extents: [{ file: 'b.img', offset: 0, length: 24 * bs }, { file: 'a.img', offset: 32 * bs, length: 8 * bs }] },
  ];
  const manifest = path.join(dir, 'volume.json');
  fs.writeFileSync(manifest, JSON.stringify({ name: 'many', blockSize: bs, partitions }));
  return { dir, manifest, blockSize: bs, size: 64 * bs, partitions, initial };
}

/** `vsnap serve` under the lowered limit; resolves once it listens. */
async function serveLimited(manifest: string): Promise<{ exportUri(name: string): string; stop(): Promise<void> }> {
  const proc = spawn('sh', ['-c', `ulimit -n ${LIMIT} && exec "$0" "$@"`, process.execPath, BIN, 'serve', manifest], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, NO_COLOR: '1' },
  });
  let stderr = '';
  proc.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const exited = new Promise<number | null>((r) => proc.on('exit', (code) => r(code)));
  const uri = await new Promise<string>((resolve, reject) => {
    let out = '';
    proc.stdout.on('data', (d: Buffer) => {
      out += d.toString();
      const nl = out.indexOf('\n');
      if (nl >= 0) resolve(out.slice(0, nl));
    });
    void exited.then((code) => reject(new Error(`vsnap serve exited ${code} before listening: ${stderr}`)));
    setTimeout(() => reject(new Error(`vsnap serve did not start in 120 s: ${stderr}`)), 120_000).unref();
  });
  const socket = /socket=([^&]+)$/.exec(uri)?.[1] ?? '';
  return {
    exportUri: (name) => `nbd+unix:///${name}?socket=${socket}`,
    async stop() {
      proc.kill('SIGTERM');
      assert.equal(await exited, 0, `vsnap serve exit code; log:\n${stderr}`);
      assert.doesNotMatch(stderr, /EMFILE|ENFILE|too many open files/i);
    },
  };
}

