// The coordinator: forks one worker per distinct worker index, routes
// volume-level requests to the workers owning each piece, and runs the
// one-instant snapshot protocol (design.md §6). It never reads or writes
// partition data itself.
import fs from 'node:fs';
import type { Volume } from '../manifest/layout.js';
import { mapVolumeRange, mapPartitionRange, mergeRanges } from '../volume-map.js';
import { writeRecord } from '../formats/record-json.js';
import { fsyncDir } from '../formats/atomic.js';
import { OperationError, UsageError } from '../errors.js';
import { DataOp, FLAG_FUA, type ExportTarget, type ChangedBlocks, type PartitionSnapshotReply, type WorkerStatus } from '../worker/protocol.js';
import { Store, SNAPSHOT_KIND, type SnapshotRecord } from '../store/store.js';
import { deletingSnapshotDir, pendingSnapshotDir, snapshotDir, snapshotRecordFile, snapshotsDir } from '../store/layout.js';
import { WorkerHandle } from './worker-handle.js';
import { WriteGate } from '../gate.js';
import { maybeFault } from '../faults.js';
import { isSyncFailure } from '../worker/extent-io.js';
import { assertImagesFree } from '../io/image-lock.js';
import { volumeFiles } from '../store/backing.js';

export interface Range {
  offset: number;
  length: number;
}

export interface FileRange {
  file: string;
  offset: number;
  length: number;
}

export interface ClusterOptions {
  force?: boolean;
  /** Respawn a worker that dies (the server); its logs are recovered on open. */
  restartWorkers?: boolean;
  log?: (msg: string) => void;
}

export class Cluster {
  /** Coordinator-level gate: a snapshot waits for the volume writes in flight and holds new ones. */
  private readonly gate = new WriteGate();
  private closing = false;
  private restarts: number[] = [];

  private constructor(
    readonly volume: Volume,
    readonly store: Store,
    readonly workers: Map<number, WorkerHandle>,
    private readonly opts: ClusterOptions,
  ) {}

  static async start(store: Store, opts: ClusterOptions = {}): Promise<Cluster> {
    // As QEMU would: not while a VM or qemu-img holds a backing file (the workers' own locks would hide it).
    assertImagesFree(volumeFiles(store.volume));
    const cluster = new Cluster(store.volume, store, new Map(), opts);
    const indexes = [...new Set(store.volume.partitions.map((p) => p.worker))];
    try {
      await Promise.all(indexes.map((w) => cluster.spawnWorker(w)));
    } catch (err) {
      cluster.closing = true;
      for (const h of cluster.workers.values()) h.kill();
      await Promise.all([...cluster.workers.values()].map((h) => h.exited));
      throw err;
    }
    return cluster;
  }

  private async spawnWorker(w: number): Promise<WorkerHandle> {
    const parts = this.volume.partitions.filter((p) => p.worker === w);
    const h = await WorkerHandle.spawn(w, parts.map((p) => p.id));
    try {
      await h.control({
        t: 'open',
        storeDir: this.store.dir,
        fingerprint: this.volume.fingerprint,
        blockSize: this.volume.blockSize,
        worker: w,
        partitions: parts.map((p) => ({ index: p.index, id: p.id, length: p.length, extents: p.extents })),
        snapshots: this.store.snapshots.map((s) => s.id),
        force: this.opts.force ?? false,
        stale: this.store.stale,
      });
    } catch (err) {
      h.kill();
      await h.exited;
      throw err;
    }
    // Only an opened worker gets requests: until then they go to the old
    // (dead) handle and fail at once with its error.
    this.workers.set(w, h);
    void h.exited.then(() => this.onWorkerExit(h));
    return h;
  }

  /** After a failure that may leave workers disagreeing with the disk: restart them (server only). */
  private resync(): void {
    if (!this.opts.restartWorkers) return;
    for (const h of this.workers.values()) h.kill();
  }

  /** A server restarts a dead worker, but not in a loop: at most 5 restarts a minute. */
  private onWorkerExit(h: WorkerHandle): void {
    if (this.closing || !this.opts.restartWorkers || this.workers.get(h.index) !== h) return;
    const now = Date.now();
    this.restarts = this.restarts.filter((t) => now - t < 60_000);
    if (this.restarts.length >= 5) {
      this.opts.log?.(`worker ${h.index} died again; not restarting it (5 restarts in the last minute)`);
      return;
    }
    this.restarts.push(now);
    this.opts.log?.(`worker ${h.index} (pid ${h.pid}) died; restarting it`);
    this.spawnWorker(h.index).then(
      (n) => this.opts.log?.(`worker ${h.index} restarted as pid ${n.pid}`),
      (err) => this.opts.log?.(`worker ${h.index} failed to restart: ${(err as Error).message}`),
    );
  }

  get size(): number {
    return this.volume.size;
  }

  private worker(w: number): WorkerHandle {
    return this.workers.get(w)!;
  }

  /**
   * Run fn on every worker and wait for all of them to settle before
   * reporting the first failure: an abort must never clean up (say, remove a
   * snapshot's .tmp directory) while another worker is still working in it.
   */
  private async all<T>(fn: (h: WorkerHandle) => Promise<T>): Promise<T[]> {
    const results = await Promise.allSettled([...this.workers.values()].map(fn));
    const failed = results.find((r) => r.status === 'rejected');
    if (failed) throw (failed as PromiseRejectedResult).reason;
    return results.map((r) => (r as PromiseFulfilledResult<T>).value);
  }

  checkRange(offset: number, length: number): void {
    if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length < 0 || offset + length > this.size) {
      throw new UsageError(`range ${offset}+${length} is outside the volume (size ${this.size})`);
    }
  }

  /** view: 0 for the live volume, else a snapshot id. */
  async read(view: number, offset: number, length: number): Promise<Buffer> {
    if (view !== 0) this.store.checkChain(view);
    const segs = mapVolumeRange(this.volume.partitions, offset, length);
    const out = Buffer.allocUnsafe(length);
    await Promise.all(
      segs.map(async (s) => {
        const data = await this.worker(s.worker).request({ op: DataOp.Read, flags: 0, partition: s.partition, view, offset: s.partOffset, length: s.length });
        if (!data || data.length !== s.length) throw new OperationError(`worker ${s.worker} returned ${data?.length ?? 0} bytes for a ${s.length}-byte read`);
        data.copy(out, s.rangeOffset);
      }),
    );
    return out;
  }

  async write(offset: number, data: Buffer, fua = false): Promise<void> {
    await this.store.markWriting();
    const segs = mapVolumeRange(this.volume.partitions, offset, data.length);
    await this.gate.enter();
    try {
      await this.writeSegments(segs, data, fua);
    } finally {
      this.gate.leave();
    }
  }

  private async writeSegments(segs: ReturnType<typeof mapVolumeRange>, data: Buffer, fua: boolean): Promise<void> {
    await Promise.all(
      segs.map((s) =>
        this.noteSyncFailure(this.worker(s.worker).request({
          op: DataOp.Write,
          flags: fua ? FLAG_FUA : 0,
          partition: s.partition,
          view: 0,
          offset: s.partOffset,
          length: s.length,
          payload: data.subarray(s.rangeOffset, s.rangeOffset + s.length),
        })),
      ),
    );
  }

  async zero(offset: number, length: number, fua = false): Promise<void> {
    await this.store.markWriting();
    const segs = mapVolumeRange(this.volume.partitions, offset, length);
    await this.gate.enter();
    try {
      await Promise.all(
        segs.map((s) =>
          this.noteSyncFailure(this.worker(s.worker).request({ op: DataOp.Zero, flags: fua ? FLAG_FUA : 0, partition: s.partition, view: 0, offset: s.partOffset, length: s.length })),
        ),
      );
    } finally {
      this.gate.leave();
    }
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

  /** The first failed sync of a backing file, reported by every later FLUSH until the server restarts. */
  syncFailure: Error | undefined;

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

  /** The one-instant protocol: freeze, prepare into <id>.tmp, commit by rename, thaw. */
  async createSnapshot(name: string, expiresAt: string | null): Promise<SnapshotRecord> {
    await this.store.markWriting();
    const id = await this.store.reserveId();
    const final = snapshotDir(this.store.dir, id);
    const tmp = pendingSnapshotDir(this.store.dir, id);
    await fs.promises.mkdir(tmp);
    const createdAt = new Date().toISOString();
    const t0 = process.hrtime.bigint();
    let record: SnapshotRecord;
    // Volume writes already sent finish first; new ones wait until the thaw.
    await this.gate.freeze();
    try {
      await this.all((h) => h.control({ t: 'freeze' }));
      const replies = await this.all(async (h) => ({ h, parts: await h.control<PartitionSnapshotReply[]>({ t: 'prepare', snapshotId: id, tmpDir: tmp, finalDir: final, createdAt }) }));
      const byId = new Map<string, { h: WorkerHandle; r: PartitionSnapshotReply }>();
      for (const { h, parts } of replies) for (const r of parts) byId.set(r.partition, { h, r });
      const freezeMs = Number(process.hrtime.bigint() - t0) / 1e6;
      record = {
        id,
        name,
        createdAt,
        expiresAt,
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
      maybeFault('create-before-commit');
      // The commit point: the rename makes the whole snapshot visible at once.
      await fs.promises.rename(tmp, final);
      await fsyncDir(snapshotsDir(this.store.dir));
      maybeFault('create-after-commit'); // test-only: commit point durable, workers still frozen on the old logs
    } catch (err) {
      await Promise.allSettled([...this.workers.values()].map((h) => h.control({ t: 'thaw', commit: false })));
      await fs.promises.rm(tmp, { recursive: true, force: true });
      this.gate.thaw();
      throw err;
    }
    // The rename was the commit point; the chain in volume.json follows it. If
    // that write fails, the next open adds the committed directory back.
    await this.store.committed(record).catch((err: Error) => this.opts.log?.(`snapshot ${id} committed; recording it in volume.json failed (${err.message}); the next open repairs it`));
    try {
      await this.all((h) => h.control({ t: 'thaw', commit: true }));
    } catch (err) {
      this.resync();
      throw err;
    } finally {
      this.gate.thaw();
    }
    return record;
  }

  /** Delete: merge the snapshot's logs into its predecessor's, then remove it (design.md §5). */
  async deleteSnapshot(id: number): Promise<void> {
    await this.store.markWriting();
    const dir = snapshotDir(this.store.dir, id);
    const deleting = deletingSnapshotDir(this.store.dir, id);
    await this.gate.freeze();
    try {
      await this.all((h) => h.control({ t: 'freeze' }));
      await this.all((h) => h.control({ t: 'delete', snapshotId: id }));
      maybeFault('delete-after-merge');
      // Renaming first makes the removal atomic: a leftover .deleting
      // directory is already merged and is simply removed at the next open.
      await fs.promises.rename(dir, deleting);
      await fsyncDir(snapshotsDir(this.store.dir));
      // The rename decided the delete; the chain follows (the next open drops a listed id whose .deleting remains).
      await this.store.removed(id).catch((err: Error) => this.opts.log?.(`snapshot ${id} deleted; recording it in volume.json failed (${err.message}); the next open repairs it`));
      maybeFault('delete-before-rm'); // test-only: <id>.deleting renamed and durable, not yet removed
      await fs.promises.rm(deleting, { recursive: true, force: true });
    } catch (err) {
      // Some workers may have dropped the snapshot and others not: a server
      // restarts them all, so each reopens the store as it is on disk.
      this.resync();
      throw err;
    } finally {
      await Promise.allSettled([...this.workers.values()].map((h) => h.control({ t: 'thaw', commit: false })));
      this.gate.thaw();
    }
  }

  async restore(id: number, partitionIndexes: number[], onProgress?: (bytes: number) => void): Promise<number> {
    this.store.checkChain(id);
    await this.store.markWriting();
    const results = await this.all((h) => h.control<{ restoredBytes: number }>({ t: 'restore', snapshotId: id, partitions: partitionIndexes }, onProgress));
    return results.reduce((a, r) => a + r.restoredBytes, 0);
  }

  /** Changed blocks as volume ranges and, when asked, backing-file ranges. */
  async changed(from: number, to: number | null, exact: boolean): Promise<{ ranges: Range[]; fileRanges: FileRange[] }> {
    this.store.checkChain(from);
    const results = await this.all((h) => h.control<ChangedBlocks>({ t: 'changed', from, to, exact }));
    const bs = this.volume.blockSize;
    const ranges: Range[] = [];
    const files = new Map<string, Range[]>();
    for (const r of results) {
      for (const p of r.partitions) {
        const part = this.volume.partitions[p.index];
        const local = mergeRanges(p.blocks.map((b) => ({ offset: b * bs, length: bs })));
        for (const l of local) {
          ranges.push({ offset: part.volumeOffset + l.offset, length: l.length });
          for (const s of mapPartitionRange(part.extents, l.offset, l.length)) {
            const file = part.extents[s.extent].file;
            files.set(file, [...(files.get(file) ?? []), { offset: s.fileOffset, length: s.length }]);
          }
        }
      }
    }
    const fileRanges: FileRange[] = [];
    for (const [file, rs] of [...files].sort((a, b) => a[0].localeCompare(b[0]))) {
      for (const r of mergeRanges(rs)) fileRanges.push({ file, ...r });
    }
    return { ranges: mergeRanges(ranges), fileRanges };
  }

  /** Each worker copies its pieces straight into the outputs; the coordinator moves no data. */
  async exportTo(view: number, targets: ExportTarget[], sparse: boolean, onProgress?: (bytes: number) => void): Promise<number> {
    if (view !== 0) this.store.checkChain(view);
    const results = await this.all((h) =>
      h.control<{ bytes: number }>(
        { t: 'export', view, sparse, targets: targets.filter((t) => this.volume.partitions[t.partition].worker === h.index) },
        onProgress,
      ),
    );
    return results.reduce((a, r) => a + r.bytes, 0);
  }

  async status(): Promise<WorkerStatus[]> {
    return this.all((h) => h.control<WorkerStatus>({ t: 'status' }));
  }

  /** Orderly close: flush everyone first, so that no worker records backing-file identity while another still writes. */
  async close(): Promise<void> {
    this.closing = true;
    const live = [...this.workers.values()].filter((h) => h.alive);
    await Promise.allSettled(live.map((h) => h.control({ t: 'freeze' })));
    const results = await Promise.allSettled(live.map((h) => h.close()));
    const failed = results.find((r) => r.status === 'rejected') as PromiseRejectedResult | undefined;
    if (failed) throw failed.reason;
  }

  kill(): void {
    this.closing = true;
    for (const h of this.workers.values()) h.kill();
  }
}
