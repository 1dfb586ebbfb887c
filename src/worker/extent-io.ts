// Positional I/O on a partition's extents: partition offsets in, backing-file
// reads and writes out. One file descriptor per backing file per worker,
// shared by the worker's partitions.
//
// This is the hot path, so it uses fs's callback API on raw descriptors:
// measured here on tmpfs with 32 writes of 4 KiB in flight, FileHandle (the
// promise API) managed ~0.1-0.25 M writes/s against ~0.2-0.65 M for callbacks
// (and ~1 M for synchronous writes).
import fs from 'node:fs';
import { mapPartitionRange, extentStarts, type MapExtent } from '../volume-map.js';
// Reads past the end of a backing file that shrank behind us read as zeros.
import { readFullyZeroFilled as readFully, writeFully } from '../positional-io.js';

function fdatasync(fd: number): Promise<void> {
  return new Promise((resolve, reject) => fs.fdatasync(fd, (err) => (err ? reject(err) : resolve())));
}

export class HandleCache {
  private readonly fds = new Map<string, number>();
  private readonly dirty = new Set<string>();
  constructor(private readonly writable: boolean) {}

  /** Opened synchronously once per file: a cached number afterwards, no promise per I/O. */
  get(path: string): number {
    let fd = this.fds.get(path);
    if (fd === undefined) {
      fd = fs.openSync(path, this.writable ? 'r+' : 'r');
      this.fds.set(path, fd);
    }
    return fd;
  }

  markDirty(path: string): void {
    this.dirty.add(path);
  }

  /** fdatasync every backing file written since the last sync. */
  async sync(paths?: Iterable<string>): Promise<void> {
    const list = paths ? [...new Set(paths)] : [...this.dirty];
    await Promise.all(
      list.map(async (p) => {
        this.dirty.delete(p);
        await fdatasync(this.get(p));
      }),
    );
  }

  async closeAll(): Promise<void> {
    const fds = [...this.fds.values()];
    this.fds.clear();
    await Promise.all(fds.map((fd) => new Promise<void>((r) => fs.close(fd, () => r()))));
  }
}

export class ExtentIO {
  private readonly starts: number[];
  constructor(
    readonly extents: MapExtent[],
    private readonly handles: HandleCache,
  ) {
    this.starts = extentStarts(extents);
  }

  async read(partOffset: number, length: number, into: Buffer, intoOffset: number): Promise<void> {
    const segs = mapPartitionRange(this.extents, partOffset, length, this.starts);
    if (segs.length === 1) {
      const s = segs[0];
      return readFully(this.handles.get(s.path), into, intoOffset + s.rangeOffset, s.length, s.fileOffset);
    }
    await Promise.all(segs.map((s) => readFully(this.handles.get(s.path), into, intoOffset + s.rangeOffset, s.length, s.fileOffset)));
  }

  /** Write in place; returns the backing files touched (for FUA). */
  async write(partOffset: number, data: Buffer, dataOffset = 0, length = data.length - dataOffset): Promise<string[]> {
    const segs = mapPartitionRange(this.extents, partOffset, length, this.starts);
    await Promise.all(
      segs.map((s) => {
        this.handles.markDirty(s.path);
        return writeFully(this.handles.get(s.path), data, dataOffset + s.rangeOffset, s.length, s.fileOffset);
      }),
    );
    return segs.map((s) => s.path);
  }
}
