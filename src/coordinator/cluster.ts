// The coordinator: routes volume-level requests to the workers owning each
// piece (started and restarted by worker-pool.ts), and runs the one-instant
// snapshot protocol (design.md §6), deciding each create's and delete's
// outcome from what its commit rename left on disk (commit.ts). It never
// reads or writes partition data itself.
import fs from 'node:fs';
import type { Volume } from '../manifest/layout.js';
import { mapVolumeRange, changedRanges, type Range, type FileRange } from '../volume-map.js';
import { writeRecord } from '../formats/record-json.js';
import { fsyncDir } from '../formats/atomic.js';
import { OperationError, UsageError, describeErrnoError, isErrnoError } from '../errors.js';
import { DataOp, FLAG_FUA, FLAG_NO_HOLE, FLAG_FAST, type ExportTarget, type PartitionSnapshotReply, type RestoredPartition, type WorkerStatus } from '../worker/protocol.js';
import { Store, SNAPSHOT_KIND, type SnapshotRecord } from '../store/store.js';
import { deletingSnapshotDir, pendingSnapshotDir, snapshotDir, snapshotRecordFile, snapshotsDir } from '../store/layout.js';
import { volumeBlockStatus } from './allocation.js';
import type { WorkerHandle } from './worker-handle.js';
import { WorkerPool, type PoolOptions } from './worker-pool.js';
import { WriteGate } from '../gate.js';
import { maybeFault } from '../faults.js';
import { commitRename, pauseAt, type CommitOutcome } from './commit.js';
import { isSyncFailure } from '../worker/extent-io.js';
import { assertImagesFree } from '../io/image-lock.js';
import { volumeFiles } from '../store/backing.js';
import { chmodPrivateDir } from '../store/private.js';
import { refuseCloned } from '../store/clones.js';
import { CloneManager } from './clones.js';
import { byteLength, joinChunks, viewsOf, type Chunks } from '../transport/chunks.js';
import { readVolume } from './volume-read.js';

export type { Range, FileRange } from '../volume-map.js';
export type ClusterOptions = PoolOptions;

/** An error as one line for a log: errno failures with their call, file and errno. */
function messageOf(err: Error): string {
  return isErrnoError(err) ? describeErrnoError(err) : err.message;
}

export class Cluster {
  /** Coordinator-level gate: a snapshot waits for the volume writes in flight and holds new ones. */
  private readonly gate = new WriteGate();
  /** A commit whose directory state is not known durable: writes fail until an fsync of `dir` succeeds (design §6). */
  private undurable: { dir: string; error: Error } | undefined;

  private constructor(
    readonly volume: Volume,
    readonly store: Store,
    private readonly pool: WorkerPool,
    private readonly opts: ClusterOptions,
  ) {}

  static async start(store: Store, opts: ClusterOptions = {}): Promise<Cluster> {
    // As QEMU would: not while a VM or qemu-img holds a backing file (the workers' own locks would hide it).
    assertImagesFree(volumeFiles(store.volume));
    const pool = new WorkerPool(store.volume, store, opts);
    await pool.start();
    return new Cluster(store.volume, store, pool, opts);
  }

  private cloneManager: CloneManager | undefined;
  /** Writable clones: their I/O and their overlays in the workers (clones.ts). */
  get clones(): CloneManager {
    return (this.cloneManager ??= new CloneManager(this.store, this.pool));
  }

  get workers(): Map<number, WorkerHandle> {
    return this.pool.workers;
  }

  private all<T>(fn: (h: WorkerHandle) => Promise<T>, workers?: WorkerHandle[]): Promise<T[]> {
    return this.pool.all(fn, workers);
  }

  /** Writes and catalogue changes wait until the last commit's directory state is durable. */
  private async ensureDurable(): Promise<void> {
    const u = this.undurable;
    if (!u) return;
    try {
      await fsyncDir(u.dir);
      this.undurable = undefined;
      this.opts.log?.(`${u.dir} is durable again; writes resume`);
    } catch (err) {
      throw new OperationError(
        `writes are held: the last snapshot commit in ${u.dir} is not known to be durable (${u.error.message}), and fsync still fails: ${(err as Error).message}`,
      );
    }
  }

  get size(): number {
    return this.volume.size;
  }

  private worker(w: number): WorkerHandle {
    return this.workers.get(w)!;
  }

  checkRange(offset: number, length: number): void {
    if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length < 0 || offset + length > this.size) {
      throw new UsageError(`range ${offset}+${length} is outside the volume (size ${this.size})`);
    }
  }

  /** view: 0 for the live volume, else a snapshot id; the data as chunks (volume-read.ts). */
  async readChunks(view: number, offset: number, length: number): Promise<Buffer[]> {
    if (view !== 0) this.store.checkChain(view);
    return readVolume(this.volume, (w) => this.worker(w), view, offset, length);
  }

  async read(view: number, offset: number, length: number): Promise<Buffer> {
    return joinChunks(await this.readChunks(view, offset, length));
  }

  /**
   * Whether this session wrote volume data (write, zero, restore): its
   * orderly close then carries the final syncs of that data, and a failure
   * there fails the command. Otherwise the close only records metadata.
   */
  wroteData = false;

  async write(offset: number, data: Buffer | Chunks, fua = false): Promise<void> {
    if (fua && this.syncFailure) return this.writeThenFail(this.write(offset, data)); // as FLUSH: see flush()
    this.wroteData = true;
    await this.ensureDurable();
    await this.store.markWriting();
    const segs = mapVolumeRange(this.volume.partitions, offset, byteLength(data));
    await this.gate.enter();
    try {
      await this.writeSegments(segs, data, fua);
    } finally {
      this.gate.leave();
    }
  }

  private async writeSegments(segs: ReturnType<typeof mapVolumeRange>, data: Buffer | Chunks, fua: boolean): Promise<void> {
    await Promise.all(
      segs.map((s) =>
        this.noteSyncFailure(this.worker(s.worker).request({
          op: DataOp.Write,
          flags: fua ? FLAG_FUA : 0,
          partition: s.partition,
          view: 0,
          offset: s.partOffset,
          length: s.length,
          payloadParts: viewsOf(data, s.rangeOffset, s.length),
        })),
      ),
    );
  }

  /** Zero (punching holes unless noHole; fast: ENOTSUP rather than copy or write data), or trim (worker/zeroing.ts). */
  async zero(offset: number, length: number, fua = false, mode: { noHole?: boolean; fast?: boolean; trim?: boolean } = {}): Promise<void> {
    if (fua && this.syncFailure) return this.writeThenFail(this.zero(offset, length, false, mode));
    this.wroteData = true;
    await this.ensureDurable();
    await this.store.markWriting();
    const segs = mapVolumeRange(this.volume.partitions, offset, length);
    const flags = (fua ? FLAG_FUA : 0) | (mode.noHole ? FLAG_NO_HOLE : 0) | (mode.fast ? FLAG_FAST : 0);
    await this.gate.enter();
    try {
      await Promise.all(
        segs.map((s) =>
          this.noteSyncFailure(this.worker(s.worker).request({ op: mode.trim ? DataOp.Trim : DataOp.Zero, flags, partition: s.partition, view: 0, offset: s.partOffset, length: s.length })),
        ),
      );
    } finally {
      this.gate.leave();
    }
  }

  /** Allocation map of a view from offset (coordinator/allocation.ts): consecutive extents, possibly ending short. */
  blockStatus(view: number, offset: number, length: number): Promise<{ length: number; flags: number }[]> {
    if (view !== 0) this.store.checkChain(view);
    return volumeBlockStatus(this.volume, (w) => this.worker(w), view, offset, length);
  }

  /**
   * Covers every write acknowledged before it, on any connection: all of them
   * went through these workers, which count a write when it completes and
   * answer a Flush only after a sync started after that count succeeded. A
   * failed sync is sticky here too, so a worker restarted since (whose fresh
   * sync would succeed over pages the kernel dropped) cannot make a FLUSH lie.
   */
  async flush(): Promise<void> {
    if (this.syncFailure) throw this.syncFailure;
    await this.all(async (h) => {
      const first = this.volume.partitions.find((p) => p.worker === h.index)!;
      await this.noteSyncFailure(h.request({ op: DataOp.Flush, flags: 0, partition: first.index, view: 0, offset: 0, length: 0 }));
    });
  }

  /** The first failed sync of a backing file, reported by every later FLUSH and FUA request until the server restarts. */
  syncFailure: Error | undefined;
  /** A FUA request after a failed sync: done as a plain one, then failed like FLUSH (as the worker that failed the sync does). */
  private writeThenFail = (done: Promise<void>): Promise<void> => done.then(() => Promise.reject(this.syncFailure));

  private async noteSyncFailure<T>(p: Promise<T>): Promise<T> {
    try {
      return await p;
    } catch (err) {
      if (isSyncFailure(err) && !this.syncFailure) {
        this.syncFailure = err as Error;
        this.opts.log?.(`${(err as Error).message}; check the volume's data (guest fsck) after the restart`);
      }
      throw err;
    }
  }

  // ---------- snapshots ----------
  /**
   * The one-instant protocol: freeze, prepare into <id>.tmp, confirm,
   * commit by rename, thaw. The outcome is decided here, once, from what the
   * rename left on disk: before the commit point any failure (a worker that
   * died after PREPARE included) aborts; after it the create has succeeded,
   * and a worker that cannot switch to the new log is restarted from the disk.
   */
  async createSnapshot(name: string, expiresAt: string | null, manual = true): Promise<SnapshotRecord> {
    await this.pool.restartsDone();
    await this.ensureDurable();
    await this.store.markWriting();
    const id = await this.store.reserveId();
    const final = snapshotDir(this.store.dir, id);
    const tmp = pendingSnapshotDir(this.store.dir, id);
    await fs.promises.mkdir(tmp);
    await chmodPrivateDir(tmp); // the mkdir mode is masked by the umask; private before any data lands in it
    const t0 = process.hrtime.bigint();
    // Volume writes already sent finish first; new ones wait until the thaw.
    await this.gate.freeze();
    const workers = [...this.workers.values()];
    const decided = this.pool.beginDecision();
    let record: SnapshotRecord | undefined;
    let outcome: CommitOutcome;
    try {
      try {
        record = await this.prepareAll(workers, id, { name, expiresAt, manual }, tmp, t0);
        maybeFault('create-before-commit');
        // A worker that died after PREPARE (or was replaced) fails this, and the create aborts.
        await this.all((h) => h.control({ t: 'confirm', snapshotId: id }), workers);
        outcome = await commitRename(tmp, final, snapshotsDir(this.store.dir));
      } catch (err) {
        outcome = { committed: false, durable: true, error: err as Error };
      }
      // The rename was the commit point; the chain in volume.json follows it. If
      // that write fails, the next open adds the committed directory back.
      if (outcome.committed) await this.store.committed(record!).catch((err: Error) => this.opts.log?.(`snapshot ${id} committed; recording it in volume.json failed (${messageOf(err)}); the next open repairs it`));
      if (!outcome.durable) this.undurable = { dir: snapshotsDir(this.store.dir), error: outcome.error! };
      if (outcome.committed && outcome.durable) {
        maybeFault('create-after-commit'); // test-only: commit point durable, workers still frozen on the old logs
        await pauseAt('create-after-commit');
      }
    } finally {
      decided();
    }
    try {
      await this.pool.thawAll(workers, outcome.committed ? { snapshotId: id, committed: true, dir: final } : { snapshotId: id, committed: false });
      if (!outcome.committed) await fs.promises.rm(tmp, { recursive: true, force: true }).catch((err: Error) => this.opts.log?.(`cannot remove ${tmp} (the next open removes it): ${err.message}`));
    } finally {
      this.gate.thaw();
    }
    if (!outcome.committed) throw outcome.error;
    if (outcome.error) this.opts.log?.(`snapshot ${id} is committed, but ${outcome.error.message}; writes fail until ${snapshotsDir(this.store.dir)} can be fsynced`);
    return record!;
  }

  /** FREEZE and PREPARE on every worker, then the snapshot record written and synced into tmp. */
  private async prepareAll(workers: WorkerHandle[], id: number, meta: Pick<SnapshotRecord, 'name' | 'expiresAt' | 'manual'>, tmp: string, t0: bigint): Promise<SnapshotRecord> {
    const createdAt = new Date().toISOString();
    await this.all((h) => h.control({ t: 'freeze' }), workers);
    const replies = await this.all(async (h) => ({ h, parts: await h.control({ t: 'prepare', snapshotId: id, tmpDir: tmp, createdAt }) }), workers);
    const byId = new Map<string, { h: WorkerHandle; r: PartitionSnapshotReply }>();
    for (const { h, parts } of replies) for (const r of parts) byId.set(r.partition, { h, r });
    const freezeMs = Number(process.hrtime.bigint() - t0) / 1e6;
    const record: SnapshotRecord = {
      id,
      ...meta,
      createdAt,
      size: this.volume.size,
      blockSize: this.volume.blockSize,
      fingerprint: this.volume.fingerprint,
      coordinatorPid: process.pid,
      freezeMs: Math.round(freezeMs * 1000) / 1000,
      partitions: this.volume.partitions.map((p) => {
        const { h, r } = byId.get(p.id)!;
        return {
          id: p.id,
          worker: p.worker,
          pid: h.pid,
          snapshotFile: r.snapshotFile,
          changeLogFile: r.changeLogFile,
          snapshotBytes: r.snapshotBytes,
          snapshotChecksum: r.snapshotChecksum,
          changeLogHeaderCrc: r.changeLogHeaderCrc,
        };
      }),
    };
    await writeRecord(snapshotRecordFile(tmp), SNAPSHOT_KIND, { ...record });
    await fsyncDir(tmp);
    return record;
  }

  /**
   * Delete: merge the snapshot's logs into its predecessor's, then remove it
   * (design.md §5). The commit point is the rename to <id>.deleting: before
   * it the snapshot stays and the workers (some may have dropped its log)
   * restart from the disk; after it the delete has succeeded.
   */
  async deleteSnapshot(id: number): Promise<void> {
    refuseCloned(this.store.dir, this.store.snapshots.filter((s) => s.id === id)); // a clone's base view must stay
    await this.pool.restartsDone();
    await this.ensureDurable();
    await this.store.markWriting();
    const dir = snapshotDir(this.store.dir, id);
    const deleting = deletingSnapshotDir(this.store.dir, id);
    await this.gate.freeze();
    const workers = [...this.workers.values()];
    const decided = this.pool.beginDecision();
    let outcome: CommitOutcome;
    // The .deleting directory is the evidence the next open needs if the
    // chain in volume.json could not be updated: it then stays.
    let chainRecorded = false;
    try {
      try {
        await this.all((h) => h.control({ t: 'freeze' }), workers);
        await this.all((h) => h.control({ t: 'delete', snapshotId: id }), workers);
        maybeFault('delete-after-merge');
        // Renaming first makes the removal atomic: a leftover .deleting
        // directory is already merged and is simply removed at the next open.
        outcome = await commitRename(dir, deleting, snapshotsDir(this.store.dir));
      } catch (err) {
        outcome = { committed: false, durable: true, error: err as Error };
      }
      // The rename decided the delete; the chain follows (the next open drops a listed id whose .deleting remains).
      if (outcome.committed) {
        chainRecorded = await this.store.removed(id).then(
          () => true,
          (err: Error) => (this.opts.log?.(`snapshot ${id} deleted; recording it in volume.json failed (${messageOf(err)}); ${deleting} stays so that the next open repairs it`), false),
        );
      }
      else this.pool.resync(workers);
      if (!outcome.durable) this.undurable = { dir: snapshotsDir(this.store.dir), error: outcome.error! };
      if (outcome.committed) maybeFault('delete-before-rm'); // test-only: <id>.deleting renamed and durable, not yet removed
    } finally {
      decided();
    }
    try {
      await this.pool.thawAll(workers, null);
    } finally {
      this.gate.thaw();
    }
    if (!outcome.committed) throw outcome.error;
    if (!chainRecorded) return;
    await fs.promises.rm(deleting, { recursive: true, force: true }).catch((err: Error) => this.opts.log?.(`cannot remove ${deleting} (the next open removes it): ${err.message}`));
  }

  /** Restore S_id on the given partitions (dryRun: only say what would be written), per partition in volume order. */
  async restore(id: number, partitionIndexes: number[], o: { dryRun?: boolean; onProgress?: (bytes: number) => void } = {}): Promise<RestoredPartition[]> {
    this.store.checkChain(id);
    if (!o.dryRun) {
      // Every record to copy is crc-checked first, on every worker: a damaged one fails before any write.
      await this.all((h) => h.control({ t: 'restore', snapshotId: id, partitions: partitionIndexes, check: true }));
      this.wroteData = true;
      await this.store.markWriting();
    }
    const results = await this.all((h) => h.control({ t: 'restore', snapshotId: id, partitions: partitionIndexes, dryRun: o.dryRun }, o.onProgress));
    const order = new Map(this.volume.partitions.map((p) => [p.id, p.index]));
    const parts = results.flatMap((r) => r.partitions).sort((a, b) => order.get(a.partition)! - order.get(b.partition)!);
    for (const p of parts) if (p.cutError) this.opts.log?.(`partition ${p.partition} is restored, but ${p.cutError}`);
    return parts;
  }

  /** Changed blocks as volume ranges and, when asked, backing-file ranges. */
  async changed(from: number, to: number | null, exact: boolean): Promise<{ ranges: Range[]; fileRanges: FileRange[] }> {
    this.store.checkChain(from);
    const results = await this.all((h) => h.control({ t: 'changed', from, to, exact }));
    return changedRanges(this.volume.partitions, this.volume.blockSize, results.flatMap((r) => r.partitions));
  }

  /** Each worker copies its pieces straight into the outputs; the coordinator moves no data. */
  async exportTo(view: number, targets: ExportTarget[], sparse: boolean, onProgress?: (bytes: number) => void, sync?: boolean): Promise<number> {
    if (view !== 0) this.store.checkChain(view);
    const results = await this.all((h) =>
      h.control(
        { t: 'export', view, sparse, sync, targets: targets.filter((t) => this.volume.partitions[t.partition].worker === h.index) },
        onProgress,
      ),
    );
    return results.reduce((a, r) => a + r.bytes, 0);
  }

  async status(): Promise<WorkerStatus[]> {
    return this.all((h) => h.control({ t: 'status' }));
  }

  /** Orderly close: flush everyone first, so that no worker records backing-file identity while another still writes. */
  close(): Promise<void> {
    return this.pool.close();
  }

  kill(): void {
    this.pool.kill();
  }
}
