// The coordinator's worker processes: one per distinct worker index, started
// with the store's committed snapshots, restarted (by a server) when one dies.
// A restart reads the snapshot list from the disk, and only once the create
// or delete in progress has its outcome there, so a restarted worker always
// agrees with the store (issue 9: a worker restarted with the list from
// before a create lost the new snapshot's copy-on-write).
import type { Volume } from '../manifest/layout.js';
import type { CloneSpec, ThawOutcome } from '../worker/protocol.js';
import { readSnapshots, type Store } from '../store/store.js';
import { WorkerHandle } from './worker-handle.js';

export interface PoolOptions {
  force?: boolean;
  /** Respawn a worker that dies (the server); its logs are recovered on open. */
  restartWorkers?: boolean;
  log?: (msg: string) => void;
}

export class WorkerPool {
  readonly workers = new Map<number, WorkerHandle>();
  closing = false;
  private restarts: number[] = [];
  /** Restarts in progress, by worker index. */
  private readonly restarting = new Map<number, Promise<unknown>>();
  /** Settles once the create or delete in progress has its outcome on disk. */
  private deciding: Promise<void> = Promise.resolve();
  /** The clones the workers have open (coordinator/clones.ts sets it): a restarted worker opens them again. */
  cloneSpecs: () => CloneSpec[] = () => [];

  constructor(
    private readonly volume: Volume,
    private readonly store: Store,
    private readonly opts: PoolOptions,
  ) {}

  async start(): Promise<void> {
    const indexes = [...new Set(this.volume.partitions.map((p) => p.worker))];
    try {
      await Promise.all(indexes.map((w) => this.spawn(w, false)));
    } catch (err) {
      this.closing = true;
      for (const h of this.workers.values()) h.kill();
      await Promise.all([...this.workers.values()].map((h) => h.exited));
      throw err;
    }
  }

  /**
   * Start worker w and open its partitions. A first start takes the list the
   * store just read; a restart reads the committed snapshots from the disk,
   * once no create or delete is between its freeze and its outcome.
   */
  private async spawn(w: number, restart: boolean): Promise<WorkerHandle> {
    let ids = this.store.snapshots.map((s) => s.id);
    if (restart) {
      for (let d = this.deciding; ; d = this.deciding) {
        await d;
        if (d === this.deciding) break;
      }
      ids = (await readSnapshots(this.store.dir)).map((s) => s.id);
    }
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
        snapshots: ids,
        force: this.opts.force ?? false,
        stale: this.store.stale.map((s) => ({ ...s, snapshots: s.snapshots.filter((i) => ids.includes(i)) })).filter((s) => s.snapshots.length),
        clones: this.cloneSpecs(),
      });
    } catch (err) {
      h.kill();
      await h.exited;
      throw err;
    }
    // Only an opened worker gets requests: until then they go to the old
    // (dead) handle and fail at once with its error.
    this.workers.set(w, h);
    void h.exited.then(() => this.onExit(h));
    return h;
  }

  /** A server restarts a dead worker, but not in a loop: at most 5 restarts a minute. */
  private onExit(h: WorkerHandle): void {
    if (this.closing || !this.opts.restartWorkers || this.workers.get(h.index) !== h || this.restarting.has(h.index)) return;
    const now = Date.now();
    this.restarts = this.restarts.filter((t) => now - t < 60_000);
    if (this.restarts.length >= 5) {
      this.opts.log?.(`worker ${h.index} died again; not restarting it (5 restarts in the last minute)`);
      return;
    }
    this.restarts.push(now);
    this.opts.log?.(`worker ${h.index} (pid ${h.pid}) died; restarting it`);
    const p = this.spawn(h.index, true).then(
      (n) => this.opts.log?.(`worker ${h.index} restarted as pid ${n.pid}`),
      (err) => this.opts.log?.(`worker ${h.index} failed to restart: ${(err as Error).message}`),
    );
    this.restarting.set(h.index, p);
    void p.finally(() => this.restarting.delete(h.index));
  }

  /** Wait for the restarts in progress (each settles: restarted, or given up). */
  async restartsDone(): Promise<void> {
    while (this.restarting.size) await Promise.allSettled([...this.restarting.values()]);
  }

  /** Open a decision window (freeze to outcome on disk); returns the function that closes it. */
  beginDecision(): () => void {
    let done!: () => void;
    this.deciding = new Promise<void>((r) => (done = r));
    return done;
  }

  /** After a failure that may leave workers disagreeing with the disk: restart them (server only). */
  resync(workers: WorkerHandle[]): void {
    if (!this.opts.restartWorkers) return;
    for (const h of workers) h.kill();
  }

  /**
   * Run fn on every worker and wait for all of them to settle before
   * reporting the first failure: an abort must never clean up (say, remove a
   * snapshot's .tmp directory) while another worker is still working in it.
   */
  async all<T>(fn: (h: WorkerHandle) => Promise<T>, workers = [...this.workers.values()]): Promise<T[]> {
    const results = await Promise.allSettled(workers.map(fn));
    const failed = results.find((r) => r.status === 'rejected');
    if (failed) throw (failed as PromiseRejectedResult).reason;
    return results.map((r) => (r as PromiseFulfilledResult<T>).value);
  }

  /**
   * THAW the workers that took part, to match the outcome on disk. A worker
   * that cannot switch is killed rather than left writing without the new
   * log; returns once every restart (from the disk) has settled, so writes
   * resume only on workers that agree with the store.
   */
  async thawAll(workers: WorkerHandle[], outcome: ThawOutcome): Promise<void> {
    const results = await Promise.allSettled(workers.map((h) => h.control({ t: 'thaw', outcome })));
    const failed: WorkerHandle[] = [];
    results.forEach((r, k) => {
      if (r.status === 'fulfilled') return;
      const h = workers[k];
      if (h.alive) this.opts.log?.(`worker ${h.index} (pid ${h.pid}) failed to thaw: ${(r.reason as Error).message}; stopping it`);
      h.kill();
      failed.push(h);
    });
    await Promise.all(failed.map((h) => h.exited));
    await this.restartsDone();
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
