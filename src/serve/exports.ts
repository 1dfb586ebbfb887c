// The NBD exports of a served volume (design.md §9): "" and "live" are the
// live volume, read-write; "snapshot/<name>" and "snapshot/<id>" (and
// "snapshot/latest") are snapshots, read-only. Each export is a BlockDevice
// over the coordinator; bounds were checked by the NBD layer.
import type { BlockDevice, BlockExtent, ExportProvider, ZeroOptions } from '../block.js';
import { BlockError } from '../block.js';
import type { Cluster } from '../coordinator/cluster.js';
import { StaleError, UsageError } from '../errors.js';
import { resolveRef } from '../store/names.js';

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
  /** A fast zero is done when it needs no copy-on-write and the file system punches holes (worker/zeroing.ts). */
  readonly canFastZero = true;
  constructor(private readonly cluster: Cluster) {}
  get size(): number {
    return this.cluster.size;
  }
  get preferredBlockSize(): number {
    return this.cluster.volume.blockSize;
  }
  read(offset: number, length: number): Promise<Buffer> {
    return asBlockError(this.cluster.read(0, offset, length));
  }
  write(offset: number, data: Buffer, fua: boolean): Promise<void> {
    return asBlockError(this.cluster.write(offset, data, fua));
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
  constructor(
    private readonly cluster: Cluster,
    private readonly id: number,
  ) {}
  get size(): number {
    return this.cluster.size;
  }
  get preferredBlockSize(): number {
    return this.cluster.volume.blockSize;
  }
  read(offset: number, length: number): Promise<Buffer> {
    return asBlockError(this.cluster.read(this.id, offset, length));
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

export class VolumeExports implements ExportProvider {
  constructor(private readonly cluster: Cluster) {}

  list(): string[] {
    const snaps = this.cluster.store.snapshots;
    return ['live', ...snaps.map((s) => `snapshot/${s.name}`), ...snaps.map((s) => `snapshot/${s.id}`)];
  }

  open(name: string): BlockDevice | undefined {
    if (name === '' || name === 'live') return new LiveDevice(this.cluster);
    if (!name.startsWith('snapshot/')) return undefined;
    try {
      return new SnapshotDevice(this.cluster, resolveRef(this.cluster.store.snapshots, name.slice('snapshot/'.length)).id);
    } catch {
      return undefined;
    }
  }
}
