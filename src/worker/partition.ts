// One partition's copy-on-write engine (design.md §5), run inside the worker
// that owns it.
//
// Block states for block b with snapshots S1..Sn and change logs L1..Ln:
//   - b in L_n: already copied since the newest snapshot; writes go in place.
//   - b pending: its old content is being appended to L_n; writers of b wait
//     for that one copy (so concurrent writes never copy a block twice).
//   - otherwise: the first write of b copies the whole old block into L_n,
//     waits until the record is durable (fdatasync in a batch shared with
//     other writers: group commit), and only then writes in place.
// A snapshot S_i reads b from the first of L_i..L_n holding it, else from the
// live source.
import { ChangeLog } from '../formats/changelog.js';
import { GroupCommit } from './group-commit.js';
import { writePartitionSnapshot } from '../formats/psnap.js';
import { UsageError, StaleError, OperationError } from '../errors.js';
import { blockSpan } from '../volume-map.js';
import type { PartitionSpec, PartitionSnapshotReply, ThawOutcome } from './protocol.js';
import { ExtentIO, HandleCache } from './extent-io.js';
import { WriteGate } from '../gate.js';
import { chunksLength, type Chunks } from '../transport/chunks.js';
import { identities } from '../store/backing.js';
import { maybeFault } from '../faults.js';
import { changeLogFile, changeLogName, partitionSnapshotFile, partitionSnapshotName } from '../store/layout.js';

export interface LogEntry {
  id: number;
  log: ChangeLog;
}

export interface EngineContext {
  storeDir: string;
  fingerprint: string;
  blockSize: number;
  worker: number;
  gate: WriteGate;
  handles: HandleCache;
  force: boolean;
  /** Called before the first change; marks the partition state unclean. */
  mutating(): Promise<void>;
  /** Before a restore cuts partition's log of snapshotId to `length`: record that length in the partition state. */
  recordCut?(partition: string, snapshotId: number, length: number): Promise<void>;
}

/** A snapshot's view: the list of logs a read walks (fixed when the read starts) and the snapshot's index in it. */
export interface ViewLogs {
  logs: readonly LogEntry[];
  from: number;
}

export class PartitionEngine {
  readonly io: ExtentIO;
  readonly blockCount: number;
  /** The change logs, oldest first. Never changed in place: a create or a delete installs a new
   * array, so a read walks the list it took at its start across all its awaits (a delete of an
   * older snapshot must not shift its position onto another snapshot's log). */
  logs: readonly LogEntry[] = [];
  /** Reads in flight, and closes of logs a delete removed, which wait for those reads. */
  readonly reading = new Set<Promise<unknown>>();
  private readonly retiring = new Set<Promise<unknown>>();
  stale = new Map<number, string>();
  readonly pendingCopies = new Map<number, Promise<void>>();
  private readonly commits = new GroupCommit();
  /** The log prepared by PREPARE, until THAW commits or drops it. */
  private prepared: { snapshotId: number; log: ChangeLog } | undefined;

  constructor(
    readonly spec: PartitionSpec,
    readonly ctx: EngineContext,
  ) {
    this.io = new ExtentIO(spec.extents, ctx.handles);
    this.blockCount = spec.length / ctx.blockSize;
  }

  get blockSize(): number {
    return this.ctx.blockSize;
  }

  private logIndex(view: number, logs: readonly LogEntry[] = this.logs): number {
    const i = logs.findIndex((l) => l.id === view);
    if (i < 0) throw new UsageError(`snapshot ${view} does not exist`);
    return i;
  }

  /** The logs of one view, fixed for the duration of one read. */
  viewOf(view: number): ViewLogs {
    const logs = this.logs;
    return { logs, from: this.logIndex(view, logs) };
  }

  /** Run a read against a fixed list of logs; logs removed meanwhile stay open until it ends. */
  track<T>(p: Promise<T>): Promise<T> {
    this.reading.add(p);
    const done = () => this.reading.delete(p);
    p.then(done, done);
    return p;
  }

  checkFresh(view: number): void {
    const why = this.stale.get(view);
    if (why !== undefined && !this.ctx.force) {
      throw new StaleError(`snapshot ${view} is stale for partition ${this.spec.id}: ${why} (a write that bypassed vsnap; use --force to read it anyway)`);
    }
  }

  /**
   * The first log of the view holding block b. Logs created after the view
   * was taken come last: a block first copied into one of them was, until
   * that copy, unchanged since every snapshot of the view.
   */
  private findLog(v: ViewLogs, b: number): ChangeLog | undefined {
    const { logs, from } = v;
    for (let j = from; j < logs.length; j++) if (logs[j].log.has(b)) return logs[j].log;
    const newest = logs.length ? logs[logs.length - 1].id : 0;
    const now = this.logs;
    if (now !== logs) for (const l of now) if (l.id > newest && l.log.has(b)) return l.log;
    return undefined;
  }

  /** force: a stale snapshot's view is read anyway (a clone made with --force reads its base so). */
  async read(view: number, off: number, len: number, force = false): Promise<Buffer> {
    const out = Buffer.allocUnsafe(len);
    if (len === 0) return out;
    if (view === 0) {
      await this.io.read(off, len, out, 0);
      return out;
    }
    const v = this.viewOf(view);
    if (!force) this.checkFresh(view);
    await this.track(this.readView(v, off, len, out, 0));
    return out;
  }

  async readView(v: ViewLogs, off: number, len: number, out: Buffer, outOff: number): Promise<void> {
    const bs = this.blockSize;
    const { first, last } = blockSpan(off, len, bs);
    const jobs: Promise<void>[] = [];
    let run: number[] = [];
    const flushRun = () => {
      if (run.length === 0) return;
      const blocks = run;
      run = [];
      const start = Math.max(off, blocks[0] * bs);
      const end = Math.min(off + len, (blocks[blocks.length - 1] + 1) * bs);
      jobs.push(this.readSource(v, blocks, start, end, off, out, outOff));
    };
    for (let b = first; b <= last; b++) {
      const log = this.findLog(v, b);
      if (!log) {
        run.push(b);
        continue;
      }
      flushRun();
      jobs.push(this.readLogged(log, b, off, len, out, outOff));
    }
    flushRun();
    await Promise.all(jobs);
  }

  /** Read blocks that no log held from the source, then fix up any a concurrent write copied meanwhile. */
  private async readSource(v: ViewLogs, blocks: number[], start: number, end: number, off: number, out: Buffer, outOff: number): Promise<void> {
    await this.io.read(start, end - start, out, outOff + start - off);
    // A write may have copied and overwritten one of these blocks while we
    // read. Its in-place write starts only after the copy is in the newest
    // log, so a block still absent from every log was read untouched.
    for (const b of blocks) {
      const log = this.findLog(v, b);
      if (!log) continue;
      await this.readLogged(log, b, start, end - start, out, outOff + start - off);
    }
  }

  /** Logged block b's part inside [off, off+len), into out at outOff + (its offset - off); a whole block is read straight into out. */
  private async readLogged(log: ChangeLog, b: number, off: number, len: number, out: Buffer, outOff: number): Promise<void> {
    const bs = this.blockSize;
    const s = Math.max(off, b * bs);
    const e = Math.min(off + len, (b + 1) * bs);
    if (e - s === bs) await log.readBlock(b, out, outOff + s - off);
    else await log.readRange(b, s - b * bs, e - s, out, outOff + s - off);
  }

  /** data: one buffer, or a chunk list (a payload as it arrived, written with one writev). */
  async write(off: number, data: Buffer | Chunks, fua: boolean): Promise<void> {
    const len = Buffer.isBuffer(data) ? data.length : chunksLength(data);
    if (len === 0) return;
    await this.ctx.gate.enter();
    try {
      await this.ctx.mutating();
      const newest = this.logs[this.logs.length - 1];
      if (newest) {
        newest.log.pin(); // appends go here: its descriptor stays out of the pool's eviction
        await this.copyOnWrite(newest.log, off, len);
      }
      maybeFault('write-before-in-place'); // test-only: old blocks synced in the newest log, in-place write not started
      const touched = Buffer.isBuffer(data) ? await this.io.write(off, data) : await this.io.writeChunks(off, data, len);
      if (fua) await this.ctx.handles.sync(touched);
    } finally {
      this.ctx.gate.leave();
    }
  }

  /** Copy the blocks of the range not yet in `log` (nor `skip`ped: zeroing.ts skips holes), durably. */
  async copyOnWrite(log: ChangeLog, off: number, len: number, skip?: (b: number) => boolean): Promise<void> {
    const bs = this.blockSize;
    const { first, last } = blockSpan(off, len, bs);
    const waits: Promise<void>[] = [];
    let runStart = -1;
    const flushRun = (endExclusive: number) => {
      if (runStart < 0) return;
      const p = this.copyRun(log, runStart, endExclusive);
      for (let b = runStart; b < endExclusive; b++) this.pendingCopies.set(b, p);
      const blocks = [runStart, endExclusive];
      void p.then(
        () => this.forgetPending(blocks[0], blocks[1], p),
        () => this.forgetPending(blocks[0], blocks[1], p),
      );
      waits.push(p);
      runStart = -1;
    };
    for (let b = first; b <= last; b++) {
      if (log.has(b) || skip?.(b)) {
        flushRun(b);
        continue;
      }
      const pending = this.pendingCopies.get(b);
      if (pending) {
        flushRun(b);
        waits.push(pending);
        continue;
      }
      if (runStart < 0) runStart = b;
    }
    flushRun(last + 1);
    await Promise.all(waits);
  }

  private forgetPending(from: number, to: number, p: Promise<void>): void {
    for (let b = from; b < to; b++) if (this.pendingCopies.get(b) === p) this.pendingCopies.delete(b);
  }

  /** Copy blocks [from, to) into the log: one source read, records durable on return. */
  private async copyRun(log: ChangeLog, from: number, to: number): Promise<void> {
    const bs = this.blockSize;
    const buf = Buffer.allocUnsafe((to - from) * bs);
    await this.io.read(from * bs, buf.length, buf, 0);
    const records: { block: number; data: Buffer }[] = [];
    for (let b = from; b < to; b++) records.push({ block: b, data: buf.subarray((b - from) * bs, (b - from + 1) * bs) });
    await this.commits.append(log, records);
  }

  // ---------- snapshots ----------

  async prepare(snapshotId: number, tmpDir: string, createdAt: string): Promise<PartitionSnapshotReply> {
    await this.ctx.mutating();
    // A create that never reached its THAW (its coordinator aborted it) left this behind.
    if (this.prepared) await this.prepared.log.close();
    this.prepared = undefined;
    const clogName = changeLogName(this.spec.id);
    const psnapName = partitionSnapshotName(this.spec.id);
    const log = await ChangeLog.create(changeLogFile(tmpDir, this.spec.id), {
      snapshotId,
      partitionId: this.spec.id,
      blockSize: this.blockSize,
      fingerprint: this.ctx.fingerprint,
      createdAtMs: Date.parse(createdAt),
    }, { blockCount: this.blockCount });
    this.prepared = { snapshotId, log };
    const ids = identities(this.spec.extents.map((e) => e.path));
    const { bytes, checksum } = await writePartitionSnapshot(partitionSnapshotFile(tmpDir, this.spec.id), {
      volumeFingerprint: this.ctx.fingerprint,
      snapshotId,
      partitionId: this.spec.id,
      length: this.spec.length,
      blockSize: this.blockSize,
      extents: this.spec.extents.map((e) => {
        const id = ids.find((x) => x.path === e.path)!;
        return { file: e.file, path: e.path, offset: e.offset, length: e.length, backing: { dev: id.dev, ino: id.ino, size: id.size, mtimeMs: id.mtimeMs, ctimeMs: id.ctimeMs } };
      }),
      worker: this.ctx.worker,
      pid: process.pid,
      createdAt,
      changeLogFile: clogName,
      changeLogHeaderCrc: log.headerCrc,
    });
    return { partition: this.spec.id, snapshotFile: psnapName, changeLogFile: clogName, snapshotBytes: bytes, snapshotChecksum: checksum, changeLogHeaderCrc: log.headerCrc };
  }

  /** Before the commit point: this engine still holds the log it prepared for snapshotId. */
  confirmPrepared(snapshotId: number): void {
    // test-only: PREPARE replied, the coordinator has not renamed yet (any worker, or worker N only)
    maybeFault('worker-after-prepare');
    maybeFault(`worker-${this.ctx.worker}-after-prepare`);
    if (this.prepared?.snapshotId !== snapshotId) {
      throw new OperationError(`partition ${this.spec.id} holds no prepared snapshot ${snapshotId} (prepared: ${this.prepared?.snapshotId ?? 'none'})`);
    }
  }

  /**
   * THAW: after a committed create the new log (in the committed directory
   * the coordinator names) becomes the newest; after an abort it is dropped.
   */
  async finishPrepare(outcome: ThawOutcome): Promise<void> {
    const prepared = this.prepared;
    this.prepared = undefined;
    if (prepared) await prepared.log.close();
    if (!outcome?.committed) return;
    if (prepared?.snapshotId !== outcome.snapshotId) {
      throw new OperationError(`partition ${this.spec.id} cannot switch to snapshot ${outcome.snapshotId}: it prepared ${prepared?.snapshotId ?? 'nothing'}`);
    }
    const reopened = await ChangeLog.open(changeLogFile(outcome.dir, this.spec.id), {
      expect: { snapshotId: outcome.snapshotId, partitionId: this.spec.id, blockSize: this.blockSize, fingerprint: this.ctx.fingerprint },
      blockCount: this.blockCount,
      cleanClose: true,
    });
    this.logs[this.logs.length - 1]?.log.pin(false);
    reopened.pin();
    this.logs = [...this.logs, { id: outcome.snapshotId, log: reopened }];
  }

  /** Delete S_i: move L_i's blocks that L_{i-1} lacks into L_{i-1}, then drop L_i. */
  async deleteSnapshot(id: number): Promise<number> {
    const i = this.logIndex(id);
    await this.ctx.mutating();
    let moved = 0;
    maybeFault('worker-delete-before-merge'); // test-only: partition state unclean, merge into the predecessor not started
    if (i > 0) moved = await ChangeLog.mergeFrom(this.logs[i - 1].log, this.logs[i].log);
    maybeFault('worker-delete-after-merge'); // test-only: merge synced, snapshot's log not yet dropped, no rename yet
    const gone = this.logs[i].log;
    this.logs = this.logs.filter((_, j) => j !== i);
    this.stale.delete(id);
    // Reads that took the old list may still read the removed log.
    const closing = Promise.allSettled([...this.reading]).then(() => gone.close());
    this.retiring.add(closing);
    void closing.finally(() => this.retiring.delete(closing)).catch(() => {});
    return moved;
  }

  /** Blocks changed since S_from (up to S_to, or live). */
  async changedBlocks(from: number, to: number | null, exact: boolean): Promise<number[]> {
    const logs = this.logs;
    const i = this.logIndex(from, logs);
    const k = to === null ? logs.length : this.logIndex(to, logs);
    const set = new Set<number>();
    for (let j = i; j < k; j++) for (const b of logs[j].log.blocks()) set.add(b);
    const blocks = [...set].sort((a, b) => a - b);
    if (!exact) return blocks;
    const bs = this.blockSize;
    const out: number[] = [];
    for (const b of blocks) {
      const before = Buffer.allocUnsafe(bs);
      await this.track(this.readView({ logs, from: i }, b * bs, bs, before, 0));
      const after = Buffer.allocUnsafe(bs);
      if (to === null) await this.io.read(b * bs, bs, after, 0);
      else await this.track(this.readView({ logs, from: k }, b * bs, bs, after, 0));
      if (!before.equals(after)) out.push(b);
    }
    return out;
  }

  async closeLogs(): Promise<void> {
    await Promise.allSettled([...this.retiring]);
    await Promise.all(this.logs.map((l) => l.log.close()));
    if (this.prepared) await this.prepared.log.close();
  }
}
