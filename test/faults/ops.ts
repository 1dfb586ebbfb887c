// One faulted run of a CLI operation and every promise checked afterwards:
// the failure is reported cleanly, nothing half-done is visible, and an
// orderly restart (list, read of the live volume and of every snapshot,
// verify, a new write and create) succeeds with every view as the model says.
// The model never goes through vsnap (test/crash/harness.ts: the live volume
// from the backing files, snapshots from the change logs).
import fs from 'node:fs';
import path from 'node:path';
import { liveFromFiles, checkGapsUntouched, type Fixture } from '../helpers/volume-fixture.js';
import { runCli, diskViews, diskSnapshotIds, firstDiff, waitGone, alive, SECTOR, type CliRun } from '../crash/harness.js';
import { shimEnv, readFired, pattern, storeOf, type Case, type Model } from './points.js';

export type OpName = 'write' | 'create' | 'delete' | 'restore' | 'prune';
export const OPS: OpName[] = ['write', 'create', 'delete', 'restore', 'prune'];

/** A promise that broke: which, and what was seen. */
export class Broken extends Error {
  constructor(
    readonly promise: string,
    message: string,
  ) {
    super(message);
  }
}
const need = (ok: unknown, promise: string, msg: string): void => {
  if (!ok) throw new Broken(promise, msg);
};

export interface OpSpec {
  args: string[];
  input?: Buffer;
}

/** The operation's command line on a cloned volume; deterministic so that counting and faulted runs agree. */
export function opSpec(op: OpName, fx: Fixture, model: Model): OpSpec {
  const ids = [...model.snaps.keys()].sort((a, b) => a - b);
  const bs = fx.blockSize;
  switch (op) {
    case 'write':
      // Unaligned, across partitions and files, mostly blocks not yet in the newest log.
      return { args: ['write', fx.manifest, '--offset', String(bs * 9 + 700)], input: pattern(7, 14 * bs + 300) };
    case 'create':
      return { args: ['create', fx.manifest, '--name', 'faulted', '--json'] };
    case 'delete':
      return { args: ['delete', fx.manifest, String(ids[1])] };
    case 'restore':
      return { args: ['restore', fx.manifest, String(ids[0]), '--json'] };
    case 'prune':
      return { args: ['prune', fx.manifest, '--keep-last', '1', '--include-manual', '--json'] };
  }
}

export async function runOp(spec: OpSpec, env: Record<string, string>): Promise<CliRun> {
  const run = await runCli(spec.args, { input: spec.input, env, timeoutMs: 60_000 });
  const gone = await waitGone([run.pid, ...run.workers], 10_000);
  need(gone, 'P8 no process left behind', `processes ${[run.pid, ...run.workers].filter(alive)} still run 10 s after the command ended`);
  return run;
}

/**
 * The faulted call's file as a message must name it: its last two path
 * components (`00000003/p0.clog`, `model/backing.json`), without the random
 * suffix of a temporary name (a backing file by its name). The counting run's volume lives in another
 * directory than the faulted run's, so the full path cannot be compared.
 */
export function fileWords(p: string): string[] {
  const base = path.basename(p).replace(/\.tmp-\d+-[0-9a-f]+$/, '').replace(/^lock\.\d+\.[a-z0-9]+$/, 'lock');
  // Backing files and the manifest are named as the manifest names them (relative).
  if (!p.includes(`${path.sep}.vsnap${path.sep}`)) return [base];
  const dir = path.basename(path.dirname(p));
  // A snapshot being prepared is written by up to 32 lanes at once, so the
  // n-th fsync of the counting run need not be the n-th of the faulted run:
  // a message naming another file of the same pending directory names the
  // file the fault really hit.
  if (dir.endsWith('.tmp')) return [`${dir}/${base}`, `${dir}/`];
  return [`${dir}/${base}`];
}

/** Exit status and message of a failed command: exit 1 or 3, the errno and the file named, no internal error. */
export function checkMessage(run: CliRun, c: Case): void {
  const what = `exit ${run.code ?? run.signal}; stderr: ${run.stderr.trim().slice(0, 500)}`;
  need(run.code === 1 || run.code === 3, 'exit status 1 (or 3)', what);
  need(!/internal error/i.test(run.stderr), 'no internal error', what);
  need(!/\n\s+at .+:\d+:\d+\)?\s*(\n|$)/.test(run.stderr), 'no stack trace', what);
  const errnoRe = c.errno === 'EIO' ? /EIO|i\/o error|input\/output error/i : /ENOSPC|no space left/i;
  need(errnoRe.test(run.stderr), 'message names the errno', what);
  need(fileWords(c.path).some((w) => run.stderr.includes(w)), 'message names the file', `${what} (file ${c.path})`);
}

/**
 * A failed sync must never be reported as silent success: that is a
 * durability lie. The one exit 0 allowed is an operation already decided on
 * disk (a committed create or delete) whose bookkeeping afterwards failed:
 * it must then warn, naming the errno and the file.
 */
export function checkNotSwallowed(run: CliRun, c: Case, fired: boolean, op: string): void {
  if (!fired || run.code !== 0) return;
  const errnoRe = c.errno === 'EIO' ? /EIO|i\/o error|input\/output error/i : /ENOSPC|no space left/i;
  const warned = /warning/i.test(run.stderr) && errnoRe.test(run.stderr) && fileWords(c.path).some((w) => run.stderr.includes(w));
  if (warned && ['create', 'delete', 'prune'].includes(op)) return;
  need(!['fsync', 'fdatasync', 'write'].includes(c.call), 'a failed write/sync is not reported as success', `exit 0 although ${c.call} of ${c.path} failed with ${c.errno}`);
}

/** Each sector of [off, off+len) is old or new, nothing outside changed. */
export function checkSectors(now: Buffer, before: Buffer, after: Buffer, promise: string): void {
  for (let s = 0; s * SECTOR < now.length; s++) {
    const a = s * SECTOR;
    const z = Math.min(a + SECTOR, now.length);
    const got = now.subarray(a, z);
    need(got.equals(before.subarray(a, z)) || got.equals(after.subarray(a, z)), promise, `sector ${s} is neither the old nor the new content`);
  }
}

export interface CaseResult {
  fired: boolean;
  exit: number | null;
  /** The fault was swallowed: the command succeeded. */
  succeeded: boolean;
  /** Every promise that broke: the message checks go on to the model checks; the first model check that fails ends the case. */
  broken: Broken[];
}

/** Runs a check; a broken promise is recorded and the case goes on. */
export function soft(broken: Broken[], fn: () => void): void {
  try {
    fn();
  } catch (e) {
    if (!(e instanceof Broken)) throw e;
    broken.push(e);
  }
}

/**
 * Run `op` with fault `c` on a cloned volume and check every promise; the
 * promises that broke are in the result. `model` is updated.
 */
export async function faultCase(op: OpName, c: Case, fx: Fixture, model: Model, logDir: string, seen: { fired?: boolean } = {}): Promise<CaseResult> {
  const broken: Broken[] = [];
  const res: CaseResult = { fired: false, exit: null, succeeded: false, broken };
  try {
    await faultChecks(op, c, fx, model, logDir, res);
  } catch (e) {
    if (!(e instanceof Broken)) throw e;
    broken.push(e);
  }
  seen.fired = res.fired;
  return res;
}

async function faultChecks(op: OpName, c: Case, fx: Fixture, model: Model, logDir: string, res: CaseResult): Promise<void> {
  const spec = opSpec(op, fx, model);
  const idsBefore = [...model.snaps.keys()].sort((a, b) => a - b);
  const liveBefore = Buffer.from(model.live);
  const run = await runOp(spec, shimEnv(fx.dir, logDir, c));
  const fired = readFired(logDir) !== undefined;
  const ok = run.code === 0;
  Object.assign(res, { fired, exit: run.code, succeeded: ok });
  need(run.signal === null, 'no crash', `killed by ${run.signal}; stderr: ${run.stderr}`);
  if (!ok) soft(res.broken, () => checkMessage(run, c));
  soft(res.broken, () => checkNotSwallowed(run, c, fired, op));

  // Immediately: the live volume (P3/P4/P7) and the backing files outside the mapping.
  const now = liveFromFiles(fx);
  const gap = checkGapsUntouched(fx);
  need(gap === undefined, 'P4 bytes outside the mapping never change', gap ?? '');
  let target: Buffer | undefined;
  if (op === 'write') {
    const after = Buffer.from(liveBefore);
    spec.input!.copy(after, Number(spec.args[3]));
    if (ok) need(now.equals(after), 'P3 an acknowledged write is in the live volume', firstDiff(now, after));
    else checkSectors(now, liveBefore, after, 'P4 a failed write leaves each sector old or new');
    model.live = now;
  } else if (op === 'restore') {
    target = model.snaps.get(Number(spec.args[2]))!;
    if (ok) need(now.equals(target), 'restore makes the live volume the snapshot', firstDiff(now, target));
    else checkSectors(now, liveBefore, target, 'a failed restore leaves each sector old or restored');
    model.live = now;
  } else {
    need(now.equals(liveBefore), 'P7 create/delete/prune never change the live volume', firstDiff(now, liveBefore));
  }

  // Orderly restart. A failed restore is re-run first and must complete (P6).
  if (op === 'restore' && !ok) {
    const r = await runOp(spec, {});
    need(r.code === 0, 'P6 a failed restore can be re-run', r.stderr);
    model.live = liveFromFiles(fx);
    need(model.live.equals(target!), 'P6 the re-run restore completes', firstDiff(model.live, target!));
  }
  const list = await runOp({ args: ['list', fx.manifest, '--json'] }, {});
  need(list.code === 0, 'P1 the next command (list) succeeds', list.stderr);
  const listed = (JSON.parse(list.stdout) as { id: number }[]).map((s) => s.id);
  need(JSON.stringify(listed) === JSON.stringify(diskSnapshotIds(fx)), 'list shows the committed snapshot directories', `${listed} vs ${diskSnapshotIds(fx)}`);
  applySnapshotSet(op, run, ok, listed, idsBefore, liveBefore, model);

  await checkReads(fx, model, 'after the orderly restart');
  checkDisk(fx, model, 'after the orderly restart');
  const v = await runOp({ args: ['verify', fx.manifest] }, {});
  need(v.code === 0, 'verify passes after the restart', `exit ${v.code}: ${v.stderr}${v.stdout}`);
  const w = { off: fx.blockSize * 2 + 333, data: pattern(99, 10 * fx.blockSize) };
  const wr = await runOp({ args: ['write', fx.manifest, '--offset', String(w.off)], input: w.data }, {});
  need(wr.code === 0, 'a new write succeeds after the restart', wr.stderr);
  w.data.copy(model.live, w.off);
  const cr = await runOp({ args: ['create', fx.manifest, '--name', 'after', '--json'] }, {});
  need(cr.code === 0, 'a new create succeeds after the restart', cr.stderr);
  const newId = (JSON.parse(cr.stdout) as { id: number }).id;
  need(newId > Math.max(0, ...idsBefore, ...listed), 'P2 ids are never reused', `new id ${newId} after ${listed}`);
  model.snaps.set(newId, Buffer.from(model.live));
  need(liveFromFiles(fx).equals(model.live), 'the live volume after the new write', firstDiff(liveFromFiles(fx), model.live));
  checkDisk(fx, model, 'after the new write and create');
  const st = await runOp({ args: ['read', fx.manifest, '--offset', '0', '--length', String(fx.size), '--snapshot', String(newId)] }, {});
  need(st.code === 0 && st.stdoutBuf.equals(model.live), 'the new snapshot reads as the volume at its create', st.stderr);
}

/** The snapshot set after the faulted command, by what it reported (P2, P5). */
function applySnapshotSet(op: OpName, run: CliRun, ok: boolean, listed: number[], idsBefore: number[], liveBefore: Buffer, model: Model): void {
  const has = (i: number) => listed.includes(i);
  if (op === 'create') {
    const extra = listed.filter((i) => !idsBefore.includes(i));
    need(idsBefore.every(has), 'P2 no committed snapshot is lost', `before ${idsBefore}, now ${listed}`);
    if (ok) {
      const id = (JSON.parse(run.stdout) as { id: number }).id;
      need(extra.length === 1 && extra[0] === id, 'a reported create is on disk', `reported ${id}, listed ${listed}`);
    } else {
      need(extra.length === 0, 'what create reports is what is on disk: a failed create leaves no snapshot', `failed create left snapshot(s) ${extra}`);
    }
    for (const i of extra) model.snaps.set(i, Buffer.from(liveBefore));
    return;
  }
  let maybe: number[] = [];
  if (op === 'delete') maybe = [idsBefore[1]];
  if (op === 'prune') maybe = idsBefore.slice(0, -1);
  const sure = idsBefore.filter((i) => !maybe.includes(i));
  need(sure.every(has), 'P2/P5 no snapshot outside the operation is lost', `before ${idsBefore}, now ${listed}`);
  need(listed.every((i) => idsBefore.includes(i)), 'no snapshot appears', `before ${idsBefore}, now ${listed}`);
  if (ok) need(maybe.every((i) => !has(i)), 'a reported delete is done', `still listed: ${maybe.filter(has)}`);
  for (const i of maybe) if (!has(i)) model.snaps.delete(i);
}

/** Every view through `vsnap read`: the live volume and each snapshot. */
export async function checkReads(fx: Fixture, model: Model, when: string): Promise<void> {
  for (const id of [0, ...[...model.snaps.keys()].sort((a, b) => a - b)]) {
    const args = ['read', fx.manifest, '--offset', '0', '--length', String(fx.size)];
    if (id) args.push('--snapshot', String(id));
    const r = await runOp({ args }, {});
    const want = id ? model.snaps.get(id)! : model.live;
    need(r.code === 0, `P1 read of ${id ? `snapshot ${id}` : 'the live volume'} works ${when}`, r.stderr);
    need(r.stdoutBuf.equals(want), id ? 'P2/P5 every snapshot reads as before' : 'P3 the live volume reads as the model', `${id ? `snapshot ${id}` : 'live'} ${when}: ${firstDiff(r.stdoutBuf, want)}`);
  }
}

/** The independent reader: change logs well formed, each snapshot as the model; no leftovers, no lock, clean states. */
export function checkDisk(fx: Fixture, model: Model, when: string): void {
  let views: Map<number, Buffer>;
  try {
    views = diskViews(fx);
  } catch (e) {
    throw new Broken('P1 change logs are well formed after recovery', `${when}: ${(e as Error).message}`);
  }
  need(JSON.stringify([...views.keys()]) === JSON.stringify([...model.snaps.keys()].sort((a, b) => a - b)), 'snapshot set', `${when}: ${[...views.keys()]}`);
  for (const [id, v] of views) need(v.equals(model.snaps.get(id)!), 'P2/P5 every snapshot (from its change logs) reads as before', `${when}: snapshot ${id}: ${firstDiff(v, model.snaps.get(id)!)}`);
  const store = storeOf(fx);
  const left = fs.readdirSync(path.join(store, 'snapshots')).filter((n) => n.endsWith('.tmp') || n.endsWith('.deleting'));
  need(left.length === 0, 'P1 leftovers are removed by the next command', `${when}: ${left}`);
  need(!fs.existsSync(path.join(store, 'lock')), 'P1 no lock after orderly commands', when);
  const sdir = path.join(store, 'state');
  for (const f of fs.existsSync(sdir) ? fs.readdirSync(sdir).filter((n) => n.endsWith('.json')) : []) {
    const s = JSON.parse(fs.readFileSync(path.join(sdir, f), 'utf8')) as { clean?: boolean };
    need(s.clean !== false, 'P1 partition states are clean after orderly commands', `${when}: ${f}`);
  }
}
