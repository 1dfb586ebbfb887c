// The coordinator's side of writable clones (design.md §5): which clones the
// workers have open (each under a session-local handle that data frames
// carry), routing a clone's reads, writes and flushes to the workers owning
// each piece, and draining a clone in the workers before a reset or delete.
// The clone's files are store/clones.ts's; its blocks are the workers'.
//
// FLUSH honesty across a worker's death: a worker keeps a clone's written
// blocks unmapped until a checkpoint, so a worker killed with writes acknowledged
// since the clone's last FLUSH may have lost them. Every later FLUSH of that
// clone then fails (as for a backing file whose sync failed), until the
// clone is reset or the server restarts.
import { OperationError } from '../errors.js';
import { mapVolumeRange } from '../volume-map.js';
import { DataOp, FLAG_FUA, type CloneSpec } from '../worker/protocol.js';
import { readClone } from '../store/clones.js';
import { cloneDir } from '../store/layout.js';
import type { Store } from '../store/store.js';
import type { WorkerPool } from './worker-pool.js';
import type { WorkerHandle } from './worker-handle.js';
import { readVolume } from './volume-read.js';
import { joinChunks } from '../transport/chunks.js';

interface OpenClone {
  spec: CloneSpec;
  /** Per worker index: writes acknowledged, and those covered by the last successful FLUSH. */
  acked: Map<number, number>;
  flushed: Map<number, number>;
  lost: Error | undefined;
}

export class CloneManager {
  private readonly opened = new Map<string, Promise<OpenClone>>();
  private readonly byName = new Map<string, OpenClone>();
  private nextHandle = 1;
  private readonly watched = new WeakSet<WorkerHandle>();

  constructor(
    private readonly store: Store,
    private readonly pool: WorkerPool,
  ) {
    // A worker restarted by the server learns the open clones in its OPEN.
    pool.cloneSpecs = () => [...this.byName.values()].map((c) => c.spec);
  }

  /** The clone open in every worker (opened at its first use in this session). */
  open(name: string): Promise<OpenClone> {
    let p = this.opened.get(name);
    if (!p) {
      p = (async () => {
        const rec = readClone(this.store.dir, name);
        const spec: CloneSpec = { handle: this.nextHandle++, name, snapshotId: rec.snapshot.id, dir: cloneDir(this.store.dir, name), force: rec.force };
        const c: OpenClone = { spec, acked: new Map(), flushed: new Map(), lost: undefined };
        this.byName.set(name, c);
        await this.pool.all((h) => h.control({ t: 'cloneOpen', clone: spec }));
        return c;
      })();
      this.opened.set(name, p);
      p.catch(() => {
        if (this.opened.get(name) === p) this.opened.delete(name);
        this.byName.delete(name);
      });
    }
    return p;
  }

  private worker(w: number): WorkerHandle {
    const h = this.pool.workers.get(w)!;
    if (!this.watched.has(h)) {
      this.watched.add(h);
      void h.exited.then(() => this.onWorkerExit(h));
    }
    return h;
  }

  private onWorkerExit(h: WorkerHandle): void {
    for (const c of this.byName.values()) {
      if ((c.acked.get(h.index) ?? 0) > (c.flushed.get(h.index) ?? 0) && !c.lost) {
        c.lost = new OperationError(`clone ${c.spec.name}: worker ${h.index} (pid ${h.pid}) died with writes not yet flushed; they may be lost, so every FLUSH of this clone fails until it is reset or the server restarts`);
      }
    }
  }

  /** The clone's data as the chunks the workers' replies arrived in, as the live export reads (volume-read.ts): no copy for a read inside one partition. */
  async readChunks(name: string, offset: number, length: number): Promise<Buffer[]> {
    const c = await this.open(name);
    return readVolume(this.store.volume, (w) => this.worker(w), c.spec.snapshotId, offset, length, c.spec.handle);
  }

  async read(name: string, offset: number, length: number): Promise<Buffer> {
    return joinChunks(await this.readChunks(name, offset, length));
  }

  private async modify(name: string, op: DataOp.Write | DataOp.Zero, offset: number, length: number, data: Buffer | undefined, fua: boolean): Promise<void> {
    const c = await this.open(name);
    await Promise.all(
      mapVolumeRange(this.store.volume.partitions, offset, length).map(async (s) => {
        await this.worker(s.worker).request({
          op,
          flags: fua ? FLAG_FUA : 0,
          partition: s.partition,
          view: c.spec.snapshotId,
          clone: c.spec.handle,
          offset: s.partOffset,
          length: s.length,
          payload: data?.subarray(s.rangeOffset, s.rangeOffset + s.length),
        });
        // Counted once acknowledged: a FLUSH covers the writes completed before it.
        c.acked.set(s.worker, (c.acked.get(s.worker) ?? 0) + 1);
      }),
    );
  }

  write(name: string, offset: number, data: Buffer, fua: boolean): Promise<void> {
    return this.modify(name, DataOp.Write, offset, data.length, data, fua);
  }

  zero(name: string, offset: number, length: number, fua: boolean): Promise<void> {
    return this.modify(name, DataOp.Zero, offset, length, undefined, fua);
  }

  /** Covers every write of the clone acknowledged before it, on any connection. */
  async flush(name: string): Promise<void> {
    const c = await this.open(name);
    if (c.lost) throw c.lost;
    const upTo = new Map(c.acked);
    await this.pool.all(async (h) => {
      const first = this.store.volume.partitions.find((p) => p.worker === h.index)!;
      await this.worker(h.index).request({ op: DataOp.Flush, flags: 0, partition: first.index, view: c.spec.snapshotId, clone: c.spec.handle, offset: 0, length: 0 });
    });
    if (c.lost) throw c.lost;
    for (const [w, n] of upTo) c.flushed.set(w, Math.max(n, c.flushed.get(w) ?? 0));
  }

  /** Open the clone's overlays in every worker now: a map or header the open refuses fails here, naming it (NBD_OPT_GO). */
  async check(name: string): Promise<void> {
    const c = await this.open(name);
    await this.pool.all((h) => h.control({ t: 'cloneCheck', handle: c.spec.handle }));
  }

  /** Empty the clone's overlays in the workers (they drain its I/O first). */
  async reset(name: string): Promise<void> {
    await this.pool.restartsDone();
    const c = await this.open(name);
    await this.pool.all((h) => h.control({ t: 'cloneReset', handle: c.spec.handle }));
    c.lost = undefined;
    c.flushed = new Map(c.acked);
  }

  /** Before a delete: the workers drain and close the clone's overlays; later I/O on it fails. */
  async close(name: string): Promise<void> {
    await this.pool.restartsDone();
    const p = this.opened.get(name);
    if (!p) return;
    const c = await p.catch(() => undefined);
    this.opened.delete(name);
    this.byName.delete(name);
    if (c) await this.pool.all((h) => h.control({ t: 'cloneClose', handle: c.spec.handle }));
  }
}
