// The NBD exports of a served volume (design.md §9): "" and "live" are the
// live volume, read-write; "snapshot/<name>" and "snapshot/<id>" (and
// "snapshot/latest") are snapshots, read-only; "snapshot/<T>@<S>" is T with
// exactly one dirty bitmap, against S (not listed: there are n² of them);
// "clone/<name>" is a writable clone, read-write (its writes go to its
// overlays, never to the volume). Each export is a BlockDevice over the
// coordinator; bounds were checked by the NBD layer. Dirty-bitmap contexts: bitmaps.ts.
import type { BlockDevice, BlockExtent, ExportProvider, MetaContext, ZeroOptions } from '../block.js';
import { BlockError } from '../block.js';
import type { Cluster } from '../coordinator/cluster.js';
import { StaleError, UsageError } from '../errors.js';
import { resolveRef } from '../store/names.js';
import { DirtyBitmaps } from './bitmaps.js';
import { cloneNames } from '../store/clones.js';

/** Errors from the volume stack, as the errno a client sees. */
async function asBlockError<T>(p: Promise<T>): Promise<T> {
  try {
    return await p;
  } catch (err) {
    if (err instanceof BlockError) throw err;
    const e = err as Error & { errno?: string };
    if (e.errno === 'ENOSPC' || e.errno === 'ENOTSUP') throw new BlockError(e.errno, e.message);
    if (err instanceof StaleError || err instanceof UsageError) throw new BlockError('EIO', e.message);
    throw new BlockError('EIO', e?.message ?? String(err));
  }
}

class LiveDevice implements BlockDevice {
  readonly readOnly = false;
  private readonly bitmaps: DirtyBitmaps;
  /** A fast zero is done when it needs no copy-on-write and the file system punches holes (worker/zeroing.ts). */
  readonly canFastZero = true;
  constructor(private readonly cluster: Cluster) {
    this.bitmaps = new DirtyBitmaps(cluster, 0, undefined, asBlockError);
  }
  metaContexts(): string[] {
    return this.bitmaps.names();
  }
  metaContext(name: string): MetaContext | undefined {
    return this.bitmaps.context(name);
  }
  get size(): number {
    return this.cluster.size;
  }
  get preferredBlockSize(): number {
    return this.cluster.volume.blockSize;
  }
  read(offset: number, length: number): Promise<Buffer> {
    return asBlockError(this.cluster.read(0, offset, length));
  }
  readChunks(offset: number, length: number): Promise<Buffer[]> {
    return asBlockError(this.cluster.readChunks(0, offset, length));
  }
  write(offset: number, data: Buffer, fua: boolean): Promise<void> {
    return asBlockError(this.cluster.write(offset, data, fua));
  }
  writeChunks(offset: number, chunks: readonly Buffer[], fua: boolean): Promise<void> {
    return asBlockError(this.cluster.write(offset, chunks, fua));
  }
  zero(offset: number, length: number, fua: boolean, opts: ZeroOptions = {}): Promise<void> {
    return asBlockError(this.cluster.zero(offset, length, fua, opts));
  }
  trim(offset: number, length: number, fua: boolean): Promise<void> {
    // Punches only blocks no snapshot needs copied first (worker/zeroing.ts).
    return asBlockError(this.cluster.zero(offset, length, fua, { trim: true }));
  }
  flush(): Promise<void> {
    return asBlockError(this.cluster.flush());
  }
  blockStatus(offset: number, length: number): Promise<BlockExtent[]> {
    // The backing files' holes (worker/allocation.ts).
    return asBlockError(this.cluster.blockStatus(0, offset, length));
  }
}

class SnapshotDevice implements BlockDevice {
  readonly readOnly = true;
  private readonly bitmaps: DirtyBitmaps;
  /** against: the alias export's one bitmap snapshot (snapshot/<T>@<S>). */
  constructor(
    private readonly cluster: Cluster,
    private readonly id: number,
    against?: number,
  ) {
    this.bitmaps = new DirtyBitmaps(cluster, id, against, asBlockError);
  }
  metaContexts(): string[] {
    return this.bitmaps.names();
  }
  metaContext(name: string): MetaContext | undefined {
    return this.bitmaps.context(name);
  }
  get size(): number {
    return this.cluster.size;
  }
  get preferredBlockSize(): number {
    return this.cluster.volume.blockSize;
  }
  read(offset: number, length: number): Promise<Buffer> {
    return asBlockError(this.cluster.read(this.id, offset, length));
  }
  readChunks(offset: number, length: number): Promise<Buffer[]> {
    return asBlockError(this.cluster.readChunks(this.id, offset, length));
  }
  async write(): Promise<void> {
    throw new BlockError('EPERM', 'snapshots are read-only');
  }
  async zero(): Promise<void> {
    throw new BlockError('EPERM', 'snapshots are read-only');
  }
  async trim(): Promise<void> {
    throw new BlockError('EPERM', 'snapshots are read-only');
  }
  async flush(): Promise<void> {}
  blockStatus(offset: number, length: number): Promise<BlockExtent[]> {
    // Logged blocks are data; the others follow the live source's allocation.
    return asBlockError(this.cluster.blockStatus(this.id, offset, length));
  }
}

/** A writable clone: FLUSH makes every write acknowledged before it durable in its overlays. */
class CloneDevice implements BlockDevice {
  readonly readOnly = false;
  constructor(
    private readonly cluster: Cluster,
    private readonly name: string,
  ) {}
  get size(): number {
    return this.cluster.size;
  }
  get preferredBlockSize(): number {
    return this.cluster.volume.blockSize;
  }
  /** Its overlays open in the workers: a damaged one refuses the export at GO, not every I/O after it. */
  ready(): Promise<void> {
    return this.cluster.clones.check(this.name);
  }
  read(offset: number, length: number): Promise<Buffer> {
    return asBlockError(this.cluster.clones.read(this.name, offset, length));
  }
  readChunks(offset: number, length: number): Promise<Buffer[]> {
    return asBlockError(this.cluster.clones.readChunks(this.name, offset, length));
  }
  write(offset: number, data: Buffer, fua: boolean): Promise<void> {
    return asBlockError(this.cluster.clones.write(this.name, offset, data, fua));
  }
  zero(offset: number, length: number, fua: boolean): Promise<void> {
    return asBlockError(this.cluster.clones.zero(this.name, offset, length, fua));
  }
  async trim(): Promise<void> {
    // Advisory: the clone keeps its data.
  }
  flush(): Promise<void> {
    return asBlockError(this.cluster.clones.flush(this.name));
  }
  async blockStatus(_offset: number, length: number): Promise<BlockExtent[]> {
    return [{ length, flags: 0 }];
  }
}

export class VolumeExports implements ExportProvider {
  constructor(private readonly cluster: Cluster) {}

  list(): string[] {
    // Names, then ids, in the same order: scripts/vsnap-backup.py pairs them by position.
    const snaps = this.cluster.store.snapshots;
    return ['live', ...snaps.map((s) => `snapshot/${s.name}`), ...snaps.map((s) => `snapshot/${s.id}`), ...cloneNames(this.cluster.store.dir).map((n) => `clone/${n}`)];
  }

  open(name: string): BlockDevice | undefined {
    if (name === '' || name === 'live') return new LiveDevice(this.cluster);
    if (name.startsWith('clone/')) {
      const clone = name.slice('clone/'.length);
      return cloneNames(this.cluster.store.dir).includes(clone) ? new CloneDevice(this.cluster, clone) : undefined;
    }
    if (!name.startsWith('snapshot/')) return undefined;
    const ref = name.slice('snapshot/'.length);
    const snaps = this.cluster.store.snapshots;
    try {
      // Snapshot names cannot hold '@', so "<T>@<S>" is always the alias export.
      const at = ref.indexOf('@');
      if (at < 0) return new SnapshotDevice(this.cluster, resolveRef(snaps, ref).id);
      const t = resolveRef(snaps, ref.slice(0, at)).id;
      const s = resolveRef(snaps, ref.slice(at + 1)).id;
      return s < t ? new SnapshotDevice(this.cluster, t, s) : undefined;
    } catch {
      return undefined;
    }
  }
}
