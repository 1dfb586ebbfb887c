// Positional I/O on a partition's extents: partition offsets in, backing-file
// reads and writes out. One FileHandle per backing file per worker, shared by
// the worker's partitions.
import fs from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import { mapPartitionRange, extentStarts, type MapExtent } from '../volume-map.js';

export class HandleCache {
  private readonly handles = new Map<string, Promise<FileHandle>>();
  private readonly dirty = new Set<string>();
  constructor(private readonly writable: boolean) {}

  get(path: string): Promise<FileHandle> {
    let h = this.handles.get(path);
    if (!h) {
      h = fs.promises.open(path, this.writable ? 'r+' : 'r');
      this.handles.set(path, h);
    }
    return h;
  }

  markDirty(path: string): void {
    this.dirty.add(path);
  }

  /** fdatasync every backing file written since the last sync. */
  async sync(paths?: Iterable<string>): Promise<void> {
    const list = paths ? [...paths] : [...this.dirty];
    await Promise.all(
      list.map(async (p) => {
        this.dirty.delete(p);
        await (await this.get(p)).datasync();
      }),
    );
  }

  async closeAll(): Promise<void> {
    const hs = [...this.handles.values()];
    this.handles.clear();
    await Promise.all(hs.map(async (h) => (await h).close()));
  }
}

async function readFully(h: FileHandle, buf: Buffer, off: number, len: number, pos: number): Promise<void> {
  while (len > 0) {
    const { bytesRead } = await h.read(buf, off, len, pos);
    if (bytesRead === 0) {
      // Past the end of a backing file that shrank behind us: the manifest
      // check guarantees the size at open, so this is someone else's doing.
      buf.fill(0, off, off + len);
      return;
    }
    off += bytesRead;
    len -= bytesRead;
    pos += bytesRead;
  }
}

async function writeFully(h: FileHandle, buf: Buffer, off: number, len: number, pos: number): Promise<void> {
  while (len > 0) {
    const { bytesWritten } = await h.write(buf, off, len, pos);
    off += bytesWritten;
    len -= bytesWritten;
    pos += bytesWritten;
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
    await Promise.all(
      segs.map(async (s) => readFully(await this.handles.get(s.path), into, intoOffset + s.rangeOffset, s.length, s.fileOffset)),
    );
  }

  /** Write in place; returns the backing files touched (for FUA). */
  async write(partOffset: number, data: Buffer, dataOffset = 0, length = data.length - dataOffset): Promise<string[]> {
    const segs = mapPartitionRange(this.extents, partOffset, length, this.starts);
    await Promise.all(
      segs.map(async (s) => {
        this.handles.markDirty(s.path);
        await writeFully(await this.handles.get(s.path), data, dataOffset + s.rangeOffset, s.length, s.fileOffset);
      }),
    );
    return segs.map((s) => s.path);
  }
}
