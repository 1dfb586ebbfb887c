// Test backends for the NBD server: a BlockDevice over a plain file, and an
// ExportProvider with the export names vsnap serve uses (design.md §9).
// For tests only; the real stack is the volume with its workers.

import fs from 'node:fs';
import { BlockError, type BlockDevice, type BlockExtent, type ExportProvider } from '../../src/block.js';

const ZERO_CHUNK = Buffer.alloc(1024 * 1024);
/** Block status looks at most this far per request; the protocol allows answering less than asked. */
const STATUS_SCAN_LIMIT = 16 * 1024 * 1024;
const STATUS_GRANULE = 64 * 1024;

export interface FileDeviceOptions {
  readOnly?: boolean;
  preferredBlockSize?: number;
}

export class FileDevice implements BlockDevice {
  private constructor(
    private readonly fh: fs.promises.FileHandle,
    readonly size: number,
    readonly readOnly: boolean,
    readonly preferredBlockSize: number,
  ) {}

  static async open(path: string, opts: FileDeviceOptions = {}): Promise<FileDevice> {
    const readOnly = opts.readOnly ?? false;
    const fh = await fs.promises.open(path, readOnly ? 'r' : 'r+');
    const { size } = await fh.stat();
    return new FileDevice(fh, size, readOnly, opts.preferredBlockSize ?? 64 * 1024);
  }

  async read(offset: number, length: number): Promise<Buffer> {
    const buf = Buffer.allocUnsafe(length);
    let done = 0;
    while (done < length) {
      const { bytesRead } = await this.fh.read(buf, done, length - done, offset + done);
      if (bytesRead === 0) throw new BlockError('EIO', `short read at ${offset + done}`);
      done += bytesRead;
    }
    return buf;
  }

  async write(offset: number, data: Buffer, fua: boolean): Promise<void> {
    this.writable();
    let done = 0;
    while (done < data.length) {
      const { bytesWritten } = await this.fh.write(data, done, data.length - done, offset + done);
      done += bytesWritten;
    }
    if (fua) await this.fh.datasync();
  }

  async zero(offset: number, length: number, fua: boolean): Promise<void> {
    this.writable();
    for (let at = 0; at < length; at += ZERO_CHUNK.length) {
      await this.write(offset + at, ZERO_CHUNK.subarray(0, Math.min(ZERO_CHUNK.length, length - at)), false);
    }
    if (fua) await this.fh.datasync();
  }

  /** Advisory, and vsnap never drops data on trim: nothing to do beyond honouring FUA. */
  async trim(_offset: number, _length: number, fua: boolean): Promise<void> {
    this.writable();
    if (fua) await this.fh.datasync();
  }

  async flush(): Promise<void> {
    if (!this.readOnly) await this.fh.datasync();
  }

  /**
   * Everything is allocated (a plain file cannot ask for holes portably from
   * Node); runs of 64 KiB granules that read as zeroes get STATE_ZERO, which is
   * true and gives clients a map worth checking.
   */
  async blockStatus(offset: number, length: number): Promise<BlockExtent[]> {
    const span = Math.min(length, STATUS_SCAN_LIMIT);
    const data = await this.read(offset, span);
    const out: BlockExtent[] = [];
    let at = 0;
    while (at < span) {
      // Granules are aligned to the file, not to the request, so maps do not depend on how a client slices them.
      const next = Math.min(span, (Math.floor((offset + at) / STATUS_GRANULE) + 1) * STATUS_GRANULE - offset);
      const flags = isZero(data.subarray(at, next)) ? 2 : 0;
      const last = out[out.length - 1];
      if (last && last.flags === flags) last.length += next - at;
      else out.push({ length: next - at, flags });
      at = next;
    }
    return out;
  }

  async close(): Promise<void> {
    await this.fh.close();
  }

  private writable(): void {
    if (this.readOnly) throw new BlockError('EPERM', 'read-only device');
  }
}

function isZero(b: Buffer): boolean {
  for (let at = 0; at < b.length; at += ZERO_CHUNK.length) {
    const part = b.subarray(at, Math.min(b.length, at + ZERO_CHUNK.length));
    if (!part.equals(ZERO_CHUNK.subarray(0, part.length))) return false;
  }
  return true;
}

/** "" and "live": the read-write file; "snapshot/<name>": read-only files. */
export class FileExportProvider implements ExportProvider {
  constructor(
    private readonly live: BlockDevice,
    private readonly snapshots: ReadonlyMap<string, BlockDevice>,
  ) {}

  static async open(livePath: string, snapshots: Record<string, string> = {}, opts: FileDeviceOptions = {}): Promise<FileExportProvider> {
    const live = await FileDevice.open(livePath, { ...opts, readOnly: false });
    const snaps = new Map<string, BlockDevice>();
    for (const [name, path] of Object.entries(snapshots)) {
      snaps.set(name, await FileDevice.open(path, { ...opts, readOnly: true }));
    }
    return new FileExportProvider(live, snaps);
  }

  list(): string[] {
    return ['', 'live', ...[...this.snapshots.keys()].map((n) => `snapshot/${n}`)];
  }

  open(name: string): BlockDevice | undefined {
    if (name === '' || name === 'live') return this.live;
    if (name.startsWith('snapshot/')) return this.snapshots.get(name.slice('snapshot/'.length));
    return undefined;
  }

  async close(): Promise<void> {
    for (const d of [this.live, ...this.snapshots.values()]) {
      if (d instanceof FileDevice) await d.close();
    }
  }
}
