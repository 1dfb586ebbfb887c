// Crash-test harness: runs the real `vsnap` binary, kills it (or one of its
// worker processes) with SIGKILL at a chosen moment, and checks what the next
// commands find against a model that never goes through vsnap:
//   - the live volume is read straight from the backing files;
//   - every snapshot is read both through `vsnap read` and by an independent
//     reader of the on-disk change logs (docs/formats.md), so a full check of
//     all snapshots after every crash costs no extra process.
// See docs/reliability.md for the promises and which test checks which.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import zlib from 'node:zlib';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { BIN, ROOT } from '../helpers/cli.js';
import { makeFixture, liveFromFiles, checkGapsUntouched, rng, type Fixture } from '../helpers/volume-fixture.js';

export const SECTOR = 512;

// ---------- processes ----------

/** Direct children of a process, from /proc/<pid>/task/<tid>/children (every thread). */
export function childrenOf(pid: number): number[] {
  const out = new Set<number>();
  let tids: string[];
  try {
    tids = fs.readdirSync(`/proc/${pid}/task`);
  } catch {
    return [];
  }
  for (const tid of tids) {
    try {
      for (const c of fs.readFileSync(`/proc/${pid}/task/${tid}/children`, 'utf8').trim().split(/\s+/)) if (c) out.add(Number(c));
    } catch {
      /* thread or process gone */
    }
  }
  return [...out];
}

export function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  // A zombie still answers kill(0); it has stopped running all the same.
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2)[0] !== 'Z';
  } catch {
    return false;
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Wait until every pid has stopped running; false on timeout. */
export async function waitGone(pids: number[], ms: number): Promise<boolean> {
  const deadline = Date.now() + ms;
  while (pids.some(alive)) {
    if (Date.now() > deadline) return false;
    await sleep(5);
  }
  return true;
}

/**
 * Whom to kill and when. `after: 'spawn'` counts the delay from the CLI's
 * start (windows before the workers exist: lock, leftover cleanup);
 * `after: 'workers'` from the moment its worker processes exist;
 * `after: 'mutating'` from the moment the command marks the store as being
 * changed (its atomic rewrite of backing.json, the first step of every
 * write, create, delete, restore and prune), to aim at the operation itself
 * rather than at start-up and close.
 */
export type KillPlan =
  | { target: 'none' }
  | { target: 'coordinator'; after: 'spawn' | 'workers' | 'mutating'; delayMs: number }
  | { target: 'worker'; after?: 'workers' | 'mutating'; delayMs: number; pick: number };

export interface CliRun {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stdoutBuf: Buffer;
  stderr: string;
  pid: number;
  /** Worker pids seen while the command ran. */
  workers: number[];
  /** The kill was delivered while the target still ran. */
  killed: boolean;
  killedPid?: number;
  /** ms from spawn until the workers were seen, and until exit. */
  workersAtMs?: number;
  durationMs: number;
}

export interface RunOptions {
  input?: Buffer;
  env?: Record<string, string>;
  kill?: KillPlan;
  timeoutMs?: number;
}

/** Run bin/vsnap; optionally SIGKILL it or one of its workers per the plan. Never hangs: a timeout is a failure. */
export function runCli(args: string[], o: RunOptions & { storeDir?: string } = {}): Promise<CliRun> {
  const plan = o.kill ?? { target: 'none' };
  const timeoutMs = o.timeoutMs ?? 60_000;
  return new Promise((resolve, reject) => {
    const t0 = Date.now();
    const child = spawn(process.execPath, [BIN, ...args], {
      cwd: ROOT,
      env: { ...process.env, NO_COLOR: '1', VSNAP_FAULT: '', ...o.env },
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    const pid = child.pid!;
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    const workers = new Set<number>();
    let exited = false;
    let killed = false;
    let killedPid: number | undefined;
    let workersAtMs: number | undefined;
    child.stdout.on('data', (d: Buffer) => out.push(d));
    child.stderr.on('data', (d: Buffer) => err.push(d));
    child.stdin.on('error', () => {});
    child.stdin.end(o.input ?? '');
    const timers: NodeJS.Timeout[] = [];
    const hard = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`vsnap ${args.join(' ')} did not finish within ${timeoutMs} ms (hang); stderr: ${Buffer.concat(err).toString()}`));
    }, timeoutMs);
    const killNow = (target: number) => {
      if (exited || !alive(target)) return;
      try {
        process.kill(target, 'SIGKILL');
        killed = true;
        killedPid = target;
      } catch {
        /* already gone */
      }
    };
    const backing = o.storeDir ? path.join(o.storeDir, 'backing.json') : undefined;
    const identity = () => {
      try {
        const st = fs.statSync(backing!);
        return `${st.ino}:${st.mtimeMs}`;
      } catch {
        return 'none';
      }
    };
    const backingAtStart = backing ? identity() : '';
    const trigger = plan.target === 'none' ? undefined : (plan.after ?? 'workers');
    let fired = false;
    const fire = (kids: number[]) => {
      fired = true;
      if (plan.target === 'coordinator') timers.push(setTimeout(() => killNow(pid), plan.delayMs));
      if (plan.target === 'worker') {
        const victim = kids.sort((a, b) => a - b)[plan.pick % kids.length];
        timers.push(setTimeout(() => killNow(victim), plan.delayMs));
      }
    };
    // Watch for the workers (and remember them: orphans must exit by themselves).
    const poll = setInterval(() => {
      if (exited) return;
      const kids = childrenOf(pid);
      for (const k of kids) workers.add(k);
      if (kids.length && workersAtMs === undefined) workersAtMs = Date.now() - t0;
      if (fired || !kids.length) return;
      if (trigger === 'workers') fire(kids);
      else if (trigger === 'mutating' && backing && identity() !== backingAtStart) fire(kids);
    }, 2);
    if (plan.target === 'coordinator' && plan.after === 'spawn') timers.push(setTimeout(() => killNow(pid), plan.delayMs));
    child.on('error', reject);
    child.on('close', (code, signal) => {
      exited = true;
      clearInterval(poll);
      clearTimeout(hard);
      for (const t of timers) clearTimeout(t);
      const stdoutBuf = Buffer.concat(out);
      resolve({
        code,
        signal,
        stdout: stdoutBuf.toString(),
        stdoutBuf,
        stderr: Buffer.concat(err).toString(),
        pid,
        workers: [...workers],
        killed,
        killedPid,
        workersAtMs,
        durationMs: Date.now() - t0,
      });
    });
    child.on('exit', () => {
      exited = true;
    });
  });
}

// ---------- independent reader of the on-disk snapshots ----------

interface DiskLog {
  blocks: Map<number, Buffer>;
}

/** Parse one change log by docs/formats.md; every check failing here is a consistency bug after recovery. */
export function readClogFile(file: string, bs: number, snapshotId: number): DiskLog {
  const buf = fs.readFileSync(file);
  const R = 32 + bs;
  assert.ok(buf.length >= 4096, `${file}: shorter than its header`);
  assert.equal(buf.subarray(0, 8).toString('latin1'), 'VSNAPCLG', `${file}: bad magic`);
  assert.equal(buf.readUInt32LE(16), bs, `${file}: block size`);
  assert.equal(Number(buf.readBigUInt64LE(24)), snapshotId, `${file}: snapshot id`);
  assert.equal(zlib.crc32(buf.subarray(0, 4092)), buf.readUInt32LE(4092), `${file}: header crc`);
  assert.equal((buf.length - 4096) % R, 0, `${file}: length ${buf.length} is not 4096 + k*${R} (a torn tail survived recovery)`);
  const blocks = new Map<number, Buffer>();
  let lastBatch = 0;
  for (let at = 4096; at < buf.length; at += R) {
    assert.equal(buf.readUInt32LE(at), 0x4c524543, `${file} at offset ${at}: record magic`);
    const block = Number(buf.readBigUInt64LE(at + 8));
    const batch = Number(buf.readBigUInt64LE(at + 16));
    assert.ok(batch === lastBatch || batch === lastBatch + 1, `${file} at offset ${at}: batch ${batch} after ${lastBatch}`);
    lastBatch = batch;
    const data = buf.subarray(at + 32, at + R);
    const crc = zlib.crc32(data, zlib.crc32(buf.subarray(at + 8, at + 32)));
    assert.equal(crc, buf.readUInt32LE(at + 4), `${file} at offset ${at}: record crc`);
    assert.ok(!blocks.has(block), `${file} at offset ${at}: block ${block} logged twice`);
    blocks.set(block, data);
  }
  return { blocks };
}

export function storeDirOf(fx: Fixture): string {
  return path.join(fx.dir, '.vsnap', 'model');
}

/** Ids of committed snapshots on disk: `snapshots/<8+ digits>/snapshot.json`. */
export function diskSnapshotIds(fx: Fixture): number[] {
  const sdir = path.join(storeDirOf(fx), 'snapshots');
  if (!fs.existsSync(sdir)) return [];
  return fs
    .readdirSync(sdir)
    .filter((n) => /^\d{8,}$/.test(n) && fs.existsSync(path.join(sdir, n, 'snapshot.json')))
    .map(Number)
    .sort((a, b) => a - b);
}

/** Every committed snapshot's view of the whole volume, computed from the files by design §5's read rule. */
export function diskViews(fx: Fixture): Map<number, Buffer> {
  const bs = fx.blockSize;
  const ids = diskSnapshotIds(fx);
  const live = liveFromFiles(fx);
  const views = new Map<number, Buffer>(ids.map((id) => [id, Buffer.from(live)]));
  let volOff = 0;
  for (const p of fx.partitions) {
    const len = p.extents.reduce((a, e) => a + e.length, 0);
    const logs = ids.map((id) => readClogFile(path.join(storeDirOf(fx), 'snapshots', String(id).padStart(8, '0'), `${p.id}.clog`), bs, id));
    for (const log of logs) for (const b of log.blocks.keys()) assert.ok(b < len / bs, `partition ${p.id}: logged block ${b} beyond its ${len / bs} blocks`);
    for (let i = 0; i < ids.length; i++) {
      const view = views.get(ids[i])!;
      for (let b = 0; b < len / bs; b++) {
        for (let j = i; j < ids.length; j++) {
          const d = logs[j].blocks.get(b);
          if (d) {
            d.copy(view, volOff + b * bs);
            break;
          }
        }
      }
    }
    volOff += len;
  }
  return views;
}

/** Where two buffers first differ, for messages. */
export function firstDiff(a: Buffer, b: Buffer): string {
  if (a.length !== b.length) return `length ${a.length} vs ${b.length}`;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return `first difference at byte ${i} (sector ${Math.floor(i / SECTOR)})`;
  return 'equal';
}

// ---------- the scenario: model + operations + checks ----------

export type Op = 'write' | 'create' | 'delete' | 'restore' | 'prune';

export interface Stats {
  runs: number;
  killsLanded: number;
  coordinatorKills: number;
  workerKills: number;
  faults: number;
  staleLocksTakenOver: number;
  leftoversCleaned: number;
  tornWrites: number;
  maybeSnapshots: number;
  byOp: Record<string, number>;
}

export interface Outcome {
  run: CliRun;
  /** The command did not finish successfully (killed, or failed because a worker died). */
  interrupted: boolean;
}

/**
 * One volume and its model. Every mutation goes through `step()`, which runs
 * the command under a kill plan, then checks the promises of
 * docs/reliability.md and brings the model up to date.
 */
export class Scenario {
  live: Buffer;
  snaps = new Map<number, Buffer>();
  maxIdSeen = 0;
  readonly rand: () => number;
  readonly stats: Stats = {
    runs: 0,
    killsLanded: 0,
    coordinatorKills: 0,
    workerKills: 0,
    faults: 0,
    staleLocksTakenOver: 0,
    leftoversCleaned: 0,
    tornWrites: 0,
    maybeSnapshots: 0,
    byOp: {},
  };
  private names = 0;

  constructor(
    readonly fx: Fixture,
    seed: number,
    public label: string,
  ) {
    this.rand = rng(seed);
    this.live = liveFromFiles(fx);
  }

  static create(dir: string, seed: number, label: string): Scenario {
    return new Scenario(makeFixture(dir, { blockSize: 4096, scale: 4 }), seed, label);
  }

  int(n: number): number {
    return Math.floor(this.rand() * n);
  }

  get ids(): number[] {
    return [...this.snaps.keys()].sort((a, b) => a - b);
  }

  private where(extra: string): string {
    return `${this.label}: ${extra}`;
  }

  // ----- operations -----

  /** Random unaligned write spanning blocks, extents and partitions. */
  randomWrite(): { off: number; data: Buffer } {
    const big = this.rand() < 0.3;
    const len = 1 + this.int(big ? 24 * this.fx.blockSize : 3 * this.fx.blockSize);
    const off = this.int(this.fx.size - len + 1);
    return { off, data: randomBytes(len) };
  }

  async write(kill: KillPlan, env?: Record<string, string>, w = this.randomWrite()): Promise<Outcome> {
    const before = Buffer.from(this.live);
    const run = await this.cli('write', ['write', this.fx.manifest, '--offset', String(w.off)], kill, env, w.data);
    const out = this.outcome(run);
    if (!out.interrupted) {
      w.data.copy(this.live, w.off);
      this.expectLive('after an acknowledged write');
      return out;
    }
    // Interrupted: every 512-byte sector of the range is old or new, nothing outside it changed.
    const now = liveFromFiles(this.fx);
    const after = Buffer.from(before);
    w.data.copy(after, w.off);
    const s0 = Math.floor(w.off / SECTOR);
    const s1 = Math.ceil((w.off + w.data.length) / SECTOR);
    assert.ok(now.subarray(0, s0 * SECTOR).equals(before.subarray(0, s0 * SECTOR)), this.where(`interrupted write ${w.off}+${w.data.length} changed bytes before its range`));
    assert.ok(now.subarray(s1 * SECTOR).equals(before.subarray(s1 * SECTOR)), this.where(`interrupted write ${w.off}+${w.data.length} changed bytes after its range`));
    let newSectors = 0;
    for (let s = s0; s < s1; s++) {
      const a = s * SECTOR;
      const z = Math.min(a + SECTOR, this.fx.size);
      const got = now.subarray(a, z);
      const isOld = got.equals(before.subarray(a, z));
      const isNew = got.equals(after.subarray(a, z));
      assert.ok(isOld || isNew, this.where(`interrupted write ${w.off}+${w.data.length}: sector ${s} is neither old nor new (garbage)`));
      if (isNew && !isOld) newSectors++;
    }
    if (newSectors > 0 && newSectors < s1 - s0) this.stats.tornWrites++;
    this.live = now;
    await this.recover('write', { maybe: [] });
    return out;
  }

  async create(kill: KillPlan, env?: Record<string, string>): Promise<Outcome & { id?: number }> {
    const name = `c${++this.names}`;
    const before = Buffer.from(this.live);
    const known = new Set(this.ids);
    const run = await this.cli('create', ['create', this.fx.manifest, '--name', name, '--json'], kill, env);
    const out = this.outcome(run);
    if (!out.interrupted) {
      const id = JSON.parse(run.stdout).id as number;
      assert.ok(id > this.maxIdSeen, this.where(`create reported id ${id}, not above every id used before (${this.maxIdSeen})`));
      this.maxIdSeen = id;
      this.snaps.set(id, before);
      this.expectLive('after create');
      return { ...out, id };
    }
    this.expectLive('after an interrupted create (create never changes the live volume)');
    const listed = await this.recover('create', { maybe: [] });
    const extra = listed.filter((i) => !known.has(i));
    const missing = [...known].filter((i) => !listed.includes(i));
    assert.deepEqual(missing, [], this.where('snapshots vanished after an interrupted create'));
    assert.ok(extra.length <= 1, this.where(`an interrupted create left ${extra.length} new snapshots: ${extra}`));
    let id: number | undefined;
    if (extra.length === 1) {
      id = extra[0];
      assert.ok(id > this.maxIdSeen, this.where(`snapshot ${id} from an interrupted create reuses an old id (max seen ${this.maxIdSeen})`));
      this.maxIdSeen = id;
      // Committed: it must read as the volume was at the create.
      this.snaps.set(id, before);
      this.stats.maybeSnapshots++;
    }
    this.checkAll(`after interrupted create (${extra.length ? 'committed' : 'not committed'})`);
    return { ...out, id };
  }

  async delete(id: number, kill: KillPlan, env?: Record<string, string>): Promise<Outcome & { gone: boolean }> {
    const run = await this.cli('delete', ['delete', this.fx.manifest, String(id)], kill, env);
    const out = this.outcome(run);
    if (!out.interrupted) {
      this.snaps.delete(id);
      this.expectLive('after delete');
      this.checkAll('after delete');
      return { ...out, gone: true };
    }
    this.expectLive('after an interrupted delete');
    const listed = await this.recover('delete', { maybe: [id] });
    const gone = !listed.includes(id);
    this.expectSet(listed, [id], `interrupted delete of ${id}`);
    if (gone) this.snaps.delete(id);
    // Either fully there (reads as before) or gone; every other snapshot reads as before.
    this.checkAll(`after interrupted delete of ${id} (${gone ? 'gone' : 'still there'})`);
    return { ...out, gone };
  }

  async restore(id: number, kill: KillPlan, env?: Record<string, string>): Promise<Outcome> {
    const args = ['restore', this.fx.manifest, String(id), '--json'];
    const run = await this.cli('restore', args, kill, env);
    const out = this.outcome(run);
    if (out.interrupted) {
      // The next command is the re-run itself: it must recover and complete.
      await this.recover('restore', { rerun: args });
    }
    this.live = Buffer.from(this.snaps.get(id)!);
    this.expectLive(`after restore of ${id}${out.interrupted ? ' (re-run after the crash)' : ''}`);
    this.checkAll(`after restore of ${id}`);
    return out;
  }

  async prune(keepLast: number, kill: KillPlan, env?: Record<string, string>): Promise<Outcome> {
    const ids = this.ids;
    const keep = new Set(ids.slice(Math.max(0, ids.length - keepLast)));
    const run = await this.cli('prune', ['prune', this.fx.manifest, '--keep-last', String(keepLast), '--include-manual', '--json'], kill, env);
    const out = this.outcome(run);
    if (!out.interrupted) {
      const j = JSON.parse(run.stdout) as { kept: { id: number }[]; deleted: { id: number }[] };
      assert.deepEqual(j.kept.map((k) => k.id).sort((a, b) => a - b), [...keep], this.where('prune kept'));
      for (const d of j.deleted) this.snaps.delete(d.id);
      this.expectLive('after prune');
      this.checkAll('after prune');
      return out;
    }
    this.expectLive('after an interrupted prune');
    const maybe = ids.filter((i) => !keep.has(i));
    const listed = await this.recover('prune', { maybe });
    this.expectSet(listed, maybe, 'interrupted prune');
    for (const i of maybe) if (!listed.includes(i)) this.snaps.delete(i);
    this.checkAll('after interrupted prune');
    return out;
  }

  // ----- checks -----

  private async cli(op: Op, args: string[], kill: KillPlan, env: Record<string, string> | undefined, input?: Buffer): Promise<CliRun> {
    this.stats.runs++;
    this.stats.byOp[op] = (this.stats.byOp[op] ?? 0) + 1;
    const run = await runCli(args, { kill, env, input, storeDir: storeDirOf(this.fx) });
    if (run.killed) {
      this.stats.killsLanded++;
      if (run.killedPid === run.pid) this.stats.coordinatorKills++;
      else this.stats.workerKills++;
    }
    if (env?.VSNAP_FAULT && run.code !== 0) this.stats.faults++;
    // Orphaned workers of a dead coordinator must go away by themselves.
    const gone = await waitGone([run.pid, ...run.workers], 10_000);
    assert.ok(gone, this.where(`${op}: processes ${[run.pid, ...run.workers].filter(alive)} still run 10 s after the command ended`));
    this.lastRun = run;
    return run;
  }

  lastRun: CliRun | undefined;
  /** Called after an interrupted command, before the next one runs: to look at the crash state. */
  onInterrupted: ((run: CliRun) => void) | undefined;

  /** Success, or an interruption that looks like one: SIGKILL of the CLI, or exit 1 after a worker died. */
  private outcome(run: CliRun): Outcome {
    const what = `${run.killed ? `killed pid ${run.killedPid}` : 'no kill'}; exit ${run.code ?? run.signal}; stderr: ${run.stderr.trim().slice(0, 600)}`;
    if (run.code === 0) return { run, interrupted: false };
    if (run.signal === 'SIGKILL') return { run, interrupted: true };
    // A worker died (our kill or a fault point): the command must fail cleanly with exit 1, naming the worker.
    assert.equal(run.code, 1, this.where(`command failed with an unexpected status (${what})`));
    assert.doesNotMatch(run.stderr, /internal error/, this.where(`a dead worker is reported as an internal error (${what})`));
    assert.match(run.stderr, /worker \d+ \(pid \d+\) exited|worker \d+/, this.where(`exit 1 without naming the dead worker (${what})`));
    return { run, interrupted: true };
  }

  private expectLive(when: string): void {
    const now = liveFromFiles(this.fx);
    assert.ok(now.equals(this.live), this.where(`live volume differs from the model ${when}: ${firstDiff(now, this.live)}`));
    const gap = checkGapsUntouched(this.fx);
    assert.equal(gap, undefined, this.where(`${when}: ${gap}`));
  }

  /** Listed ids must be the model's, except that each of `maybe` may be missing. */
  private expectSet(listed: number[], maybe: number[], when: string): void {
    const must = this.ids.filter((i) => !maybe.includes(i));
    for (const i of must) assert.ok(listed.includes(i), this.where(`${when}: snapshot ${i} is gone`));
    for (const i of listed) assert.ok(this.snaps.has(i), this.where(`${when}: unknown snapshot ${i} appeared`));
  }

  /**
   * The command after a crash: it must succeed by itself (stale lock taken
   * over, leftovers removed, torn log tails recovered). Returns the listed ids.
   */
  private async recover(op: Op, o: { rerun?: string[]; maybe?: number[] }): Promise<number[]> {
    if (this.onInterrupted && this.lastRun) this.onInterrupted(this.lastRun);
    const sdir = path.join(storeDirOf(this.fx), 'snapshots');
    const lockFile = path.join(storeDirOf(this.fx), 'lock');
    let staleLock = false;
    if (fs.existsSync(lockFile)) {
      const text = fs.readFileSync(lockFile, 'utf8');
      let pid = 0;
      try {
        pid = (JSON.parse(text) as { pid: number }).pid;
      } catch {
        /* half-written lock file from the crash */
      }
      assert.ok(!pid || !alive(pid), this.where(`${op}: lock held by live pid ${pid} after the command ended`));
      staleLock = true;
    }
    const leftovers = fs.existsSync(sdir) ? fs.readdirSync(sdir).filter((n) => n.endsWith('.tmp') || n.endsWith('.deleting')) : [];
    let listed: number[];
    let listedByList = false;
    if (o.rerun) {
      const r = await runCli(o.rerun);
      assert.equal(r.code, 0, this.where(`${op}: re-run after the crash failed: ${r.stderr}`));
      listed = diskSnapshotIds(this.fx);
    } else if (o.maybe === undefined || this.rand() < 0.3) {
      // `list` starts no worker: it recovers the store (lock, leftovers) only.
      const r = await runCli(['list', this.fx.manifest, '--json']);
      assert.equal(r.code, 0, this.where(`${op}: list after the crash failed: ${r.stderr}`));
      listed = (JSON.parse(r.stdout) as { id: number }[]).map((s) => s.id);
      listedByList = true;
      assert.deepEqual(listed, diskSnapshotIds(this.fx), this.where('list differs from the committed snapshot directories'));
    } else {
      // A read is the next command: it recovers the store and the change logs at once.
      listed = await this.readOneView(op, o.maybe);
    }
    if (staleLock) this.stats.staleLocksTakenOver++;
    this.stats.leftoversCleaned += leftovers.length;
    const still = fs.readdirSync(sdir).filter((n) => n.endsWith('.tmp') || n.endsWith('.deleting'));
    assert.deepEqual(still, [], this.where(`${op}: leftovers after the next command: ${still}`));
    assert.ok(!fs.existsSync(lockFile), this.where(`${op}: the lock file is still there after the next command`));
    if (!o.rerun && listedByList) {
      // A command that starts the workers recovers the change logs (torn tails).
      await this.readOneView(op, this.ids.filter((i) => !listed.includes(i)));
    }
    this.checkStateClean(op);
    return listed;
  }

  /** `vsnap read` of the whole live volume or of a snapshot that is certainly there; returns the ids on disk after it. */
  private async readOneView(op: Op, maybe: number[]): Promise<number[]> {
    const sure = this.ids.filter((i) => !maybe.includes(i));
    const views = [0, ...sure];
    const view = views[this.int(views.length)];
    const args = ['read', this.fx.manifest, '--offset', '0', '--length', String(this.fx.size)];
    if (view) args.push('--snapshot', String(view));
    const r = await runCli(args);
    assert.equal(r.code, 0, this.where(`${op}: read after the crash failed: ${r.stderr}`));
    const model = view === 0 ? this.live : this.snaps.get(view)!;
    assert.ok(r.stdoutBuf.equals(model), this.where(`${op}: after the crash ${view ? `snapshot ${view}` : 'the live volume'} reads wrong through vsnap: ${firstDiff(r.stdoutBuf, model)}`));
    return diskSnapshotIds(this.fx);
  }

  /** After an orderly command every partition state is clean again. */
  private checkStateClean(op: Op): void {
    const sdir = path.join(storeDirOf(this.fx), 'state');
    for (const p of this.fx.partitions) {
      const f = path.join(sdir, `${p.id}.json`);
      if (!fs.existsSync(f)) continue;
      const s = JSON.parse(fs.readFileSync(f, 'utf8')) as { clean: boolean };
      assert.equal(s.clean, true, this.where(`${op}: partition ${p.id} state still unclean after the recovering command`));
    }
  }

  /** Every committed snapshot, computed from the files, equals the model; the set matches. */
  checkAll(when: string): void {
    const views = diskViews(this.fx);
    assert.deepEqual([...views.keys()], this.ids, this.where(`${when}: snapshots on disk`));
    for (const [id, v] of views) {
      const model = this.snaps.get(id)!;
      assert.ok(v.equals(model), this.where(`${when}: snapshot ${id} (from its change logs) differs from the model: ${firstDiff(v, model)}`));
    }
  }

  /** Every snapshot and the live volume read through `vsnap read`. */
  async checkAllViaCli(when: string): Promise<void> {
    for (const view of [0, ...this.ids]) {
      const args = ['read', this.fx.manifest, '--offset', '0', '--length', String(this.fx.size)];
      if (view) args.push('--snapshot', String(view));
      const r = await runCli(args);
      assert.equal(r.code, 0, this.where(`${when}: read of ${view || 'live'} failed: ${r.stderr}`));
      const model = view ? this.snaps.get(view)! : this.live;
      assert.ok(r.stdoutBuf.equals(model), this.where(`${when}: ${view ? `snapshot ${view}` : 'live'} reads wrong through vsnap: ${firstDiff(r.stdoutBuf, model)}`));
    }
  }

  summary(): string {
    const s = this.stats;
    return `${this.label}: ${s.runs} commands (${Object.entries(s.byOp).map(([k, v]) => `${k} ${v}`).join(', ')}); kills landed ${s.killsLanded} (coordinator ${s.coordinatorKills}, worker ${s.workerKills}); fault deaths ${s.faults}; stale locks taken over ${s.staleLocksTakenOver}; .tmp/.deleting cleaned ${s.leftoversCleaned}; torn writes ${s.tornWrites}; snapshots committed by interrupted creates ${s.maybeSnapshots}`;
  }
}

/** Iteration budget: VSNAP_CRASH_ITERATIONS overrides the CI-sized default. */
export function iterations(def: number): number {
  const v = Number(process.env.VSNAP_CRASH_ITERATIONS ?? def);
  if (!Number.isInteger(v) || v < 1) throw new Error(`VSNAP_CRASH_ITERATIONS must be a positive integer, got ${process.env.VSNAP_CRASH_ITERATIONS}`);
  return v;
}
