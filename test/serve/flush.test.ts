// NBD FLUSH is honest (issue 9, defect 2), through the real `vsnap serve`,
// nbdsh, and strace attached to the worker or server processes to fail or
// slow down the fdatasync of one backing file:
//   (a) after a FLUSH whose fdatasync failed, every later FLUSH (and FUA
//       write) of that file fails too, and no second fdatasync is tried;
//   (b) a FLUSH on a second connection, sent while the first connection's
//       FLUSH is syncing, waits for that sync and fails with it;
//   (c) after the server restarts a killed worker, a FLUSH succeeds only once
//       the new worker has synced the backing files its predecessor wrote, and
//       fails if that sync fails.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { vsnap, tmpdir, requireTool } from '../helpers/cli.js';
import { makeFixture, liveFromFiles } from '../helpers/volume-fixture.js';
import { run, SYSTEM_PYTHON_ENV } from '../nbd/harness.js';
import { startServe, type Server } from './harness.js';

const skip = requireTool('strace', 'strace') ?? requireTool('nbdsh', 'python3-libnbd');
// One libuv thread per process: strace counts injections per thread, and a
// worker that retried a failed sync would then retry on the thread whose
// first (and only failing) fdatasync was used up.
const ENV = { UV_THREADPOOL_SIZE: '1' };

interface Traced {
  out: string;
  stop(): Promise<void>;
}

/** Attach strace (all threads, and children forked later) to running processes; resolves once attached. */
async function attach(pids: number[], out: string, args: string[]): Promise<Traced> {
  const p = spawn('strace', ['-f', '-ttt', '-y', '-o', out, ...args, ...pids.flatMap((x) => ['-p', String(x)])], { stdio: ['ignore', 'ignore', 'pipe'] });
  let err = '';
  const exited = new Promise<void>((r) => p.on('exit', () => r()));
  await new Promise<void>((resolve, reject) => {
    p.stderr!.on('data', (d: Buffer) => {
      err += d.toString();
      if ((err.match(/attached/g) ?? []).length >= pids.length) resolve();
    });
    void exited.then(() => reject(new Error(`strace exited: ${err}`)));
    setTimeout(() => reject(new Error(`strace did not attach in 10 s: ${err}`)), 10_000).unref();
  });
  return {
    out,
    async stop() {
      p.kill('SIGTERM'); // detaches; the traced processes go on
      await exited;
    },
  };
}

/** `fdatasync` lines of a trace: thread id, time (s), path, result. */
function syncs(trace: string): { tid: number; at: number; path: string; ok: boolean }[] {
  const out = [];
  for (const line of fs.readFileSync(trace, 'utf8').split('\n')) {
    const m = /^(\d+)\s+([\d.]+) fdatasync\(\d+<([^>]+)>\)\s+=\s+(-?\d+)/.exec(line);
    if (m) out.push({ tid: Number(m[1]), at: Number(m[2]), path: m[3], ok: m[4] === '0' });
  }
  return out;
}

async function workerPid(manifest: string, w: number): Promise<number> {
  const st = await vsnap(['status', manifest, '--json']);
  assert.equal(st.code, 0, st.stderr);
  return (JSON.parse(st.stdout) as { workers: { worker: number; pid: number }[] }).workers.find((x) => x.worker === w)!.pid;
}

/** Run a Python snippet in nbdsh connected to uri; returns stdout. */
async function nbdsh(uri: string, script: string): Promise<string> {
  const r = await run('nbdsh', ['-u', uri, '-c', script], { env: SYSTEM_PYTHON_ENV, timeoutMs: 60_000 });
  assert.equal(r.code, 0, `nbdsh failed: ${r.stderr}`);
  return r.stdout;
}

/** SIGTERM the server and return its exit code (a failed orderly close exits nonzero). */
async function terminate(srv: Server): Promise<number | null> {
  const code = new Promise<number | null>((r) => srv.proc.on('exit', (c) => r(c)));
  srv.proc.kill('SIGTERM');
  return code;
}

async function waitFor(what: string, cond: () => boolean, ms = 20_000): Promise<void> {
  const t0 = Date.now();
  while (!cond()) {
    if (Date.now() - t0 > ms) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

const TRY = (name: string, call: string) => `
try:
    ${call}
    print("${name} ok")
except nbd.Error as e:
    print("${name}", e.errno)
`;

test('a failed fdatasync fails every later FLUSH and FUA write of the file, and is never retried', { skip }, async () => {
  const t = tmpdir();
  const fx = makeFixture(t.dir);
  const a = path.join(t.dir, 'a.img');
  const srv = await startServe(fx.manifest, [], ENV);
  let tr: Traced | undefined;
  try {
    // Worker 0 owns p0, volume offset 0 = a.img offset 0. The first fdatasync of a.img fails.
    tr = await attach([await workerPid(fx.manifest, 0)], path.join(t.dir, 'trace'), ['-e', 'trace=fdatasync', '-P', a, '-e', 'inject=fdatasync:error=EIO:when=1']);
    const out = await nbdsh(
      srv.uri,
      [
        'h.pwrite(b"\\x11" * 4096, 0)',
        TRY('flush1', 'h.flush()'),
        TRY('flush2', 'h.flush()'),
        'h.pwrite(b"\\x22" * 4096, 0)',
        TRY('flush3', 'h.flush()'),
        TRY('fua', 'h.pwrite(b"\\x33" * 4096, 0, nbd.CMD_FLAG_FUA)'),
        'assert h.pread(4096, 0) == b"\\x33" * 4096',
      ].join('\n'),
    );
    assert.equal(out, 'flush1 EIO\nflush2 EIO\nflush3 EIO\nfua EIO\n', srv.log());
    const st = await vsnap(['status', fx.manifest, '--json']);
    assert.match(JSON.parse(st.stdout).syncFailure ?? '', /fdatasync of .*a\.img failed \(EIO\)/);
    const human = await vsnap(['status', fx.manifest]);
    assert.match(human.stdout, /sync failed, every FLUSH fails/);
    assert.match(srv.log(), /fdatasync of .*a\.img failed \(EIO\)/);
    await tr.stop();
    tr = undefined;
    const seen = syncs(path.join(t.dir, 'trace')).filter((s) => s.path === a);
    assert.deepEqual(seen.map((s) => s.ok), [false], 'one fdatasync of a.img (the failed one), no retry that could succeed over dropped pages');
    // Even with strace gone (a sync would now succeed), FLUSH keeps failing: the error is sticky.
    assert.equal(await nbdsh(srv.uri, TRY('flush4', 'h.flush()')), 'flush4 EIO\n');
    // Nor does a restarted worker (whose fresh fdatasync would succeed over the
    // dropped pages) let FUA writes, zeroes or trims through (adversary D4).
    process.kill(await workerPid(fx.manifest, 0), 'SIGKILL');
    await waitFor('the worker restart', () => /worker 0 restarted as pid \d+/.test(srv.log()));
    assert.equal(
      await nbdsh(srv.uri, [TRY('fua2', 'h.pwrite(b"\\x44" * 4096, 8192, nbd.CMD_FLAG_FUA)'), TRY('zero', 'h.zero(4096, 4096, nbd.CMD_FLAG_FUA)'), TRY('trim', 'h.trim(4096, 12288, nbd.CMD_FLAG_FUA)'), TRY('flush5', 'h.flush()')].join('\n')),
      'fua2 EIO\nzero EIO\ntrim EIO\nflush5 EIO\n',
      srv.log(),
    );
    // The orderly stop cannot make the data durable either: it fails and leaves the state unclean.
    assert.notEqual(await terminate(srv), 0);
    assert.match(srv.log(), /fdatasync of .*a\.img failed/);
    // The next run syncs the unclean partitions' files when it opens, and works.
    const rd = await vsnap(['read', fx.manifest, '--offset', '0', '--length', '4096']);
    assert.equal(rd.code, 0, rd.stderr);
    assert.ok(rd.stdoutBuf.every((b) => b === 0x33));
  } finally {
    await tr?.stop();
    srv.proc.kill('SIGKILL');
    t.cleanup();
  }
});

test('a FLUSH on a second connection waits for the first connection\'s running sync and fails with it', { skip }, async () => {
  const t = tmpdir();
  const fx = makeFixture(t.dir);
  const a = path.join(t.dir, 'a.img');
  const srv = await startServe(fx.manifest, [], ENV);
  let tr: Traced | undefined;
  try {
    // Every fdatasync of a.img takes 2 s, then fails.
    tr = await attach([await workerPid(fx.manifest, 0)], path.join(t.dir, 'trace'), ['-e', 'trace=fdatasync', '-P', a, '-e', 'inject=fdatasync:error=EIO:delay_enter=2s']);
    const out = await nbdsh(
      srv.uri,
      `
import time
h2 = nbd.NBD()
h2.connect_uri(${JSON.stringify(srv.uri)})
h.pwrite(b"\\x44" * 4096, 0)
c1 = h.aio_flush()
time.sleep(0.3)
t0 = time.time()
try:
    h2.flush()
    print("B ok")
except nbd.Error as e:
    print("B", e.errno)
print("B waited", "long" if time.time() - t0 > 1.0 else "%.3f s" % (time.time() - t0))
while True:
    try:
        if h.aio_command_completed(c1):
            print("A ok")
            break
    except nbd.Error as e:
        print("A", e.errno)
        break
    h.poll(-1)
`,
    );
    assert.equal(out, 'B EIO\nB waited long\nA EIO\n', srv.log());
    await tr.stop();
    tr = undefined;
    assert.ok(syncs(path.join(t.dir, 'trace')).some((s) => s.path === a && !s.ok), 'the injected failure was hit');
    assert.notEqual(await terminate(srv), 0);
  } finally {
    await tr?.stop();
    srv.proc.kill('SIGKILL');
    t.cleanup();
  }
});

/** Write on one connection, kill worker 0, wait for its restart, then FLUSH on the same connection. */
async function writeKillFlush(t: { dir: string }, srv: Server, manifest: string, inject: string[]): Promise<{ out: string; trace: string; newPid: number }> {
  const written = path.join(t.dir, 'written');
  const go = path.join(t.dir, 'go');
  const trace = path.join(t.dir, 'trace');
  // Traced from the server down, so the worker it forks next is traced from its start.
  const tr = await attach([srv.proc.pid!], trace, ['-e', 'trace=fdatasync', '-P', path.join(t.dir, 'a.img'), ...inject]);
  try {
    const oldPid = await workerPid(manifest, 0);
    const client = nbdsh(
      srv.uri,
      `
import os, time
h.pwrite(b"\\x55" * 4096, 0)
open(${JSON.stringify(written)}, "w").close()
while not os.path.exists(${JSON.stringify(go)}):
    time.sleep(0.02)
try:
    h.flush()
    print("flush ok", repr(time.time()))
except nbd.Error as e:
    print("flush", e.errno)
`,
    );
    await waitFor('the acknowledged write', () => fs.existsSync(written));
    process.kill(oldPid, 'SIGKILL');
    await waitFor('the worker restart', () => /worker 0 restarted as pid \d+|worker 0 failed to restart/.test(srv.log()));
    fs.writeFileSync(go, '');
    const out = await client;
    const newPid = Number(/worker 0 restarted as pid (\d+)/.exec(srv.log())?.[1] ?? 0);
    return { out, trace, newPid };
  } finally {
    await tr.stop();
  }
}

test('after a worker restart, FLUSH succeeds only after the new worker synced what the killed one acknowledged', { skip }, async () => {
  const t = tmpdir();
  const fx = makeFixture(t.dir);
  const a = path.join(t.dir, 'a.img');
  const srv = await startServe(fx.manifest, [], ENV);
  try {
    const { out, trace, newPid } = await writeKillFlush(t, srv, fx.manifest, []);
    const m = /^flush ok ([\d.]+)\n$/.exec(out);
    assert.ok(m, `FLUSH after the restart: ${out}\n${srv.log()}`);
    const replyAt = Number(m[1]);
    assert.ok(newPid > 0);
    // Threads of the new worker: the sync runs on a libuv thread, whose id strace prints.
    const ofNew = syncs(trace).filter((s) => s.path === a && fs.existsSync(`/proc/${newPid}/task/${s.tid}`));
    assert.ok(
      ofNew.some((s) => s.ok && s.at < replyAt),
      `a successful fdatasync of a.img by the restarted worker (pid ${newPid}) before the FLUSH reply at ${replyAt}; trace:\n${fs.readFileSync(trace, 'utf8')}`,
    );
    assert.ok(liveFromFiles(fx).subarray(0, 4096).every((b) => b === 0x55), 'the acknowledged write is in a.img');
    await srv.stop();
  } finally {
    srv.proc.kill('SIGKILL');
    t.cleanup();
  }
});

test('after a worker restart whose first sync fails, FLUSH fails (never a silent success)', { skip }, async () => {
  const t = tmpdir();
  const fx = makeFixture(t.dir);
  const srv = await startServe(fx.manifest, [], ENV);
  try {
    // Only the new worker's threads are fresh to strace's per-thread counter; the server never syncs a.img.
    const { out } = await writeKillFlush(t, srv, fx.manifest, ['-e', 'inject=fdatasync:error=EIO:when=1']);
    assert.equal(out, 'flush EIO\n', srv.log());
    assert.match(srv.log(), /worker 0 failed to restart: fdatasync of .*a\.img failed \(EIO\)/);
  } finally {
    srv.proc.kill('SIGKILL');
    t.cleanup();
  }
});
