// Fault injection under `vsnap serve`: one session (NBD WRITE and FLUSH,
// control-socket create, a copy-on-write WRITE with FUA, control-socket
// delete, FLUSH, SIGTERM) is counted with the shim, then each chosen call
// occurrence of the server and its workers fails in turn (EIO, ENOSPC) on a
// fresh copy of the prepared volume. Checked: replies carry EIO/ENOSPC or
// success, a FLUSH never succeeds after a sync of acknowledged data failed
// (sticky errors), control commands fail with exit 1 naming the errno and the
// file, a create is on disk exactly when it was reported, and after an
// orderly restart every view reads as the model says.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { spawn } from 'node:child_process';
import { tmpdir, BIN } from '../helpers/cli.js';
import { liveFromFiles, type Fixture } from '../helpers/volume-fixture.js';
import { RawClient, CMD, FLAG } from '../nbd/raw-client.js';
import { prepareGolden, ciShare, shimEnv, readFired, pattern, type Golden, type Case, type Model } from './points.js';
import { runOp, checkMessage, checkSectors, checkReads, checkDisk, soft, Broken } from './ops.js';
import { countPoints, runCases, describeFailures, summary } from './run-cases.js';

const STRIDE = Number(process.env.VSNAP_FAULTS_SERVE_STRIDE ?? 60);
let tmp: { dir: string; cleanup: () => void };
let golden: Golden;
before(async () => {
  tmp = tmpdir('vsnap-faults-serve-');
  fs.mkdirSync(path.join(tmp.dir, 'golden'));
  golden = await prepareGolden(path.join(tmp.dir, 'golden'));
});
after(() => tmp?.cleanup());

const need = (ok: unknown, promise: string, msg: string): void => {
  if (!ok) throw new Broken(promise, msg);
};
const within = <T>(p: Promise<T>, ms: number, what: string): Promise<T> =>
  Promise.race([p, new Promise<T>((_, j) => setTimeout(() => j(new Broken('no hang', `${what}: no answer within ${ms} ms`)), ms).unref())]);

interface Session {
  /** Per NBD request: its reply's error (0 = success). */
  replies: { what: string; error: number; fired: boolean }[];
  create?: { code: number; id?: number; stderr: string };
  del?: { code: number; stderr: string };
  serveExit: number | null;
  log: string;
}

/** The three writes: disjoint ranges, the second and third after the create (copy-on-write into its log). */
function writes(fx: Fixture): { off: number; data: Buffer }[] {
  const bs = fx.blockSize;
  return [
    { off: bs * 3 + 512, data: pattern(11, 5 * bs) },
    { off: bs * 30 + 1024, data: pattern(12, 9 * bs) },
    { off: bs * 50, data: pattern(13, 4 * bs) },
  ];
}

async function session(fx: Fixture, model: Model, env: Record<string, string>, logDir?: string): Promise<Session> {
  const proc = spawn(process.execPath, [BIN, 'serve', fx.manifest], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, NO_COLOR: '1', VSNAP_FAULT: '', ...env } });
  let log = '';
  proc.stderr.on('data', (d: Buffer) => (log += d.toString()));
  const exited = new Promise<number | null>((r) => proc.on('exit', (c) => r(c)));
  const s: Session = { replies: [], serveExit: null, log: '' };
  const fired = () => (logDir ? readFired(logDir) !== undefined : false);
  const uri = await within(
    new Promise<string | undefined>((resolve) => {
      let out = '';
      proc.stdout.on('data', (d: Buffer) => {
        out += d.toString();
        if (out.includes('\n')) resolve(out.split('\n')[0]);
      });
      void exited.then(() => resolve(undefined));
    }),
    30_000,
    'serve start',
  );
  if (!uri) {
    s.serveExit = await exited;
    s.log = log;
    return s;
  }
  const socket = /socket=([^&]+)$/.exec(uri)![1];
  const [w1, w2, w3] = writes(fx);
  const ids = [...model.snaps.keys()].sort((a, b) => a - b);
  try {
    const c = await RawClient.connect(socket);
    await within(c.handshake(''), 10_000, 'handshake');
    const req = async (what: string, type: number, w?: { off: number; data: Buffer }, flags = 0) => {
      c.request(type, { offset: w?.off ?? 0, length: w?.data.length ?? 0, payload: w?.data, flags, cookie: BigInt(s.replies.length + 1) });
      const r = await within(c.simpleReply(), 30_000, what);
      s.replies.push({ what, error: r.error, fired: fired() });
    };
    await req('WRITE 1', CMD.WRITE, w1);
    await req('FLUSH 1', CMD.FLUSH);
    const cr = await runOp({ args: ['create', fx.manifest, '--name', 'served', '--json'] }, {});
    s.create = { code: cr.code ?? -1, stderr: cr.stderr, id: cr.code === 0 ? (JSON.parse(cr.stdout) as { id: number }).id : undefined };
    await req('WRITE 2', CMD.WRITE, w2);
    await req('FLUSH 2', CMD.FLUSH);
    const dl = await runOp({ args: ['delete', fx.manifest, String(ids[1])] }, {});
    s.del = { code: dl.code ?? -1, stderr: dl.stderr };
    await req('WRITE 3 (FUA)', CMD.WRITE, w3, FLAG.FUA);
    await req('FLUSH 3', CMD.FLUSH);
    c.request(CMD.DISC);
    c.end();
  } finally {
    proc.kill('SIGTERM');
    s.serveExit = await within(exited, 30_000, 'serve stop');
    s.log = log;
  }
  return s;
}

async function serveCase(c: Case, fx: Fixture, model: Model, logDir: string, seen: { fired?: boolean }): Promise<{ succeeded: boolean; broken: Broken[] }> {
  const broken: Broken[] = [];
  let succeeded = false;
  try {
    const before = Buffer.from(model.live);
    const s = await session(fx, model, shimEnv(fx.dir, logDir, c), logDir);
    seen.fired = readFired(logDir) !== undefined;
    const fakeRun = (code: number | null, stderr: string) => ({ code, stderr, signal: null }) as Parameters<typeof checkMessage>[0];
    need(s.serveExit === 0 || s.serveExit === 1, 'serve exits 0 (or 1 after an I/O error)', `exit ${s.serveExit}; log: ${s.log.slice(0, 500)}`);
    const bad = /internal error|\n\s+at .+:\d+:\d+\)?\n/.exec(s.log);
    soft(broken, () => need(!bad, 'no internal error or stack trace in the server log', s.log.slice(Math.max(0, (bad?.index ?? 0) - 300), (bad?.index ?? 0) + 500)));
    if (s.serveExit === 1 && s.replies.length === 0) soft(broken, () => checkMessage(fakeRun(1, s.log), c));
    for (const r of s.replies) soft(broken, () => need([0, 5, 28].includes(r.error), 'NBD errors are EIO or ENOSPC', `${r.what}: error ${r.error}`));
    // Sticky sync errors: once a sync (or a write acknowledged earlier) of data failed, no later FLUSH succeeds.
    // Sticky for the backing files, which hold acknowledged data. A failed
    // sync of a change log concerns only the copies of the write that needed
    // them: that write fails and the append is cut back (docs/reliability.md,
    // "A failed change-log append"); nothing acknowledged depended on it.
    if (['fsync', 'fdatasync'].includes(c.call) && !/\.json|\.tmp|\.clog$|\/snapshots$|\/state$|\/model$/.test(c.path)) {
      const at = s.replies.findIndex((r) => r.fired);
      const lie = s.replies.slice(Math.max(at, 0)).find((r) => at >= 0 && r.what.startsWith('FLUSH') && r.error === 0);
      soft(broken, () => need(!lie, 'FLUSH never succeeds after a failed sync (sticky errors)', `${lie?.what} succeeded after ${c.call} of ${c.path} failed`));
    }
    if (s.create && s.create.code !== 0) soft(broken, () => checkMessage(fakeRun(s.create!.code, s.create!.stderr), c));
    if (s.del && s.del.code !== 0) soft(broken, () => checkMessage(fakeRun(s.del!.code, s.del!.stderr), c));
    succeeded = s.serveExit === 0 && s.replies.length === 6 && s.replies.every((r) => r.error === 0) && s.create?.code === 0 && s.del?.code === 0;

    // The live volume: acknowledged writes there, failed ones old or new per sector, nothing else changed.
    const now = liveFromFiles(fx);
    const expect = Buffer.from(before);
    writes(fx).forEach((w, k) => {
      const r = s.replies.find((x) => x.what.startsWith(`WRITE ${k + 1}`));
      if (r && r.error === 0) w.data.copy(expect, w.off);
      else {
        const after = Buffer.from(now);
        now.copy(expect, w.off, w.off, w.off + w.data.length);
        checkSectors(after.subarray(w.off, w.off + w.data.length), before.subarray(w.off, w.off + w.data.length), Buffer.from(w.data), `P4 a failed NBD write leaves each sector old or new (write ${k + 1})`);
      }
    });
    need(now.equals(expect), 'P3 acknowledged NBD writes are in the live volume, nothing else changed', '');
    model.live = now;
    // The created snapshot: the volume after write 1 (writes 2 and 3 are elsewhere).
    const [, w2, w3] = writes(fx);
    const atCreate = Buffer.from(now);
    before.copy(atCreate, w2.off, w2.off, w2.off + w2.data.length);
    before.copy(atCreate, w3.off, w3.off, w3.off + w3.data.length);

    // Orderly restart.
    const ids = [...model.snaps.keys()].sort((a, b) => a - b);
    const list = await runOp({ args: ['list', fx.manifest, '--json'] }, {});
    need(list.code === 0, 'P1 the next command (list) succeeds', list.stderr);
    const listed = (JSON.parse(list.stdout) as { id: number }[]).map((x) => x.id);
    need(ids.filter((i) => i !== ids[1]).every((i) => listed.includes(i)), 'P2 no committed snapshot is lost', `listed ${listed}`);
    if (s.create?.code === 0) need(listed.includes(s.create.id!), 'a reported create is on disk', `listed ${listed}`);
    const extra = listed.filter((i) => !ids.includes(i));
    if (s.create?.code !== 0) need(extra.length === 0, 'what create reports is what is on disk: a failed create leaves no snapshot', `left ${extra}`);
    for (const i of extra) model.snaps.set(i, atCreate);
    if (s.del?.code === 0) need(!listed.includes(ids[1]), 'a reported delete is done', `listed ${listed}`);
    if (!listed.includes(ids[1])) model.snaps.delete(ids[1]);
    await checkReads(fx, model, 'after the server stopped');
    checkDisk(fx, model, 'after the server stopped');
    const v = await runOp({ args: ['verify', fx.manifest] }, {});
    need(v.code === 0, 'verify passes after the restart', `exit ${v.code}: ${v.stderr}${v.stdout}`);
    const wr = await runOp({ args: ['write', fx.manifest, '--offset', '0'], input: pattern(98, 3 * fx.blockSize) }, {});
    need(wr.code === 0, 'a new write succeeds after the restart', wr.stderr);
    const cr = await runOp({ args: ['create', fx.manifest, '--name', 'after', '--json'] }, {});
    need(cr.code === 0, 'a new create succeeds after the restart', cr.stderr);
  } catch (e) {
    if (!(e instanceof Broken)) throw e;
    broken.push(e);
  }
  return { succeeded, broken };
}

test('serve: each file-system call occurrence of the server and its workers fails in turn during WRITE, FLUSH, control create/delete; every promise holds', async (t) => {
  const points = await countPoints(golden, tmp.dir, async (fx, model, env) => {
    const s = await session(fx, model, env);
    assert.equal(s.serveExit, 0, `counting run: serve failed: ${s.log}`);
    assert.deepEqual(s.replies.map((r) => r.error), [0, 0, 0, 0, 0, 0], `counting run: ${JSON.stringify(s.replies)}`);
    assert.equal(s.create?.code, 0, s.create?.stderr);
    assert.equal(s.del?.code, 0, s.del?.stderr);
  });
  assert.ok(points.some((p) => p.role.startsWith('worker') && p.call === 'fdatasync'), 'the workers synced during the session');
  const tally = await runCases('serve', golden, tmp.dir, points, (all) => ciShare(all, STRIDE, 5), serveCase);
  t.diagnostic(summary(tally));
  if (tally.failures.length) t.diagnostic(describeFailures(tally));
  assert.ok(tally.fired >= tally.run * 0.8, `serve: only ${tally.fired} of ${tally.run} runs reached their fault`);
  assert.equal(tally.failures.length, 0, `${summary(tally)}\n${describeFailures(tally)}`);
});
