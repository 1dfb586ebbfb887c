// A clone's overlay for one partition (docs/formats.md "Writable clones"):
// `<partition>.ovl` holds written blocks at fixed slots (sparse), and
// `<partition>.ovm` is the append-only map of the blocks whose data is
// durable there. This module owns both byte layouts: creating the empty
// pair, opening (with torn-tail recovery of the map), positional data I/O,
// appending map records after the data they name is synced, and reset.
//
// What is "written but not yet mapped" is the caller's (worker/clone-overlay.ts)
// in-memory business: this file only ever maps blocks it is told are synced.
import fs from 'node:fs';
import path from 'node:path';
import type { FileHandle } from 'node:fs/promises';
import { crc32 } from 'node:zlib';
import { IntegrityError, fileError, namingFile } from '../errors.js';
import { BlockIndex } from './block-index.js';
import { createPrivateFile } from './private-file.js';
import { fsyncDir } from './atomic.js';
import { readFully, readFullyZeroFilled, writeFully, writevFully } from '../positional-io.js';

export const OVERLAY_DATA_MAGIC = 'VSNAPOVL';
export const OVERLAY_MAP_MAGIC = 'VSNAPOVM';
export const OVERLAY_VERSION = 1;
export const OVERLAY_HEADER_SIZE = 4096;
export const MAP_RECORD_SIZE = 16;
/** Stored little-endian: the bytes on disk are 4d 4f 56 52 ("MOVR"). */
export const MAP_RECORD_MAGIC = 0x52564f4d;

const HO_MAGIC = 0;
const HO_VERSION = 8;
const HO_HEADER_SIZE = 12;
const HO_BLOCK_SIZE = 16;
const HO_RECORD_SIZE = 20;
const HO_BLOCK_COUNT = 24;
const HO_SNAPSHOT_ID = 32;
const HO_FINGERPRINT = 40;
const HO_ID_LENGTH = 72;
const HO_ID = 74;
const HO_CRC = 4092;

/** What both headers of one partition's overlay say; a mismatch at open is corruption. */
export interface OverlayHeader {
  partitionId: string;
  blockSize: number;
  blockCount: number;
  snapshotId: number;
  /** 64 lowercase hex digits. */
  fingerprint: string;
}

export interface OverlayPaths {
  data: string;
  map: string;
}

export function encodeOverlayHeader(kind: 'data' | 'map', h: OverlayHeader): Buffer {
  const b = Buffer.alloc(OVERLAY_HEADER_SIZE);
  const id = Buffer.from(h.partitionId, 'utf8');
  if (id.length < 1 || id.length > 64) throw new Error(`overlay: partition id of ${id.length} bytes`);
  if (!/^[0-9a-f]{64}$/.test(h.fingerprint)) throw new Error('overlay: fingerprint is not 64 hex digits');
  b.write(kind === 'data' ? OVERLAY_DATA_MAGIC : OVERLAY_MAP_MAGIC, HO_MAGIC, 'latin1');
  b.writeUInt32LE(OVERLAY_VERSION, HO_VERSION);
  b.writeUInt32LE(OVERLAY_HEADER_SIZE, HO_HEADER_SIZE);
  b.writeUInt32LE(h.blockSize, HO_BLOCK_SIZE);
  b.writeUInt32LE(kind === 'map' ? MAP_RECORD_SIZE : 0, HO_RECORD_SIZE);
  b.writeBigUInt64LE(BigInt(h.blockCount), HO_BLOCK_COUNT);
  b.writeBigUInt64LE(BigInt(h.snapshotId), HO_SNAPSHOT_ID);
  Buffer.from(h.fingerprint, 'hex').copy(b, HO_FINGERPRINT);
  b.writeUInt16LE(id.length, HO_ID_LENGTH);
  id.copy(b, HO_ID);
  b.writeUInt32LE(crc32(b.subarray(0, HO_CRC)), HO_CRC);
  return b;
}

/** Check a header read from `file` against what the clone expects; every mismatch names the field. */
export function checkOverlayHeader(kind: 'data' | 'map', b: Buffer, file: string, want: OverlayHeader): void {
  const bad = (what: string) => new IntegrityError(`${file} at offset 0: ${what}`);
  if (b.length < OVERLAY_HEADER_SIZE) throw bad(`overlay header is ${b.length} bytes, expected ${OVERLAY_HEADER_SIZE} (file truncated)`);
  const magic = kind === 'data' ? OVERLAY_DATA_MAGIC : OVERLAY_MAP_MAGIC;
  if (b.toString('latin1', HO_MAGIC, HO_MAGIC + 8) !== magic) throw bad(`bad magic (expected ${magic})`);
  const crc = b.readUInt32LE(HO_CRC);
  if (crc32(b.subarray(0, HO_CRC)) !== crc) throw bad('header crc mismatch');
  const version = b.readUInt32LE(HO_VERSION);
  if (version !== OVERLAY_VERSION) throw bad(`unknown overlay version ${version}`);
  const check = (field: string, got: unknown, expected: unknown) => {
    if (got !== expected) throw bad(`${field} is ${String(got)}, the clone expects ${String(expected)}`);
  };
  check('headerSize', b.readUInt32LE(HO_HEADER_SIZE), OVERLAY_HEADER_SIZE);
  check('blockSize', b.readUInt32LE(HO_BLOCK_SIZE), want.blockSize);
  check('recordSize', b.readUInt32LE(HO_RECORD_SIZE), kind === 'map' ? MAP_RECORD_SIZE : 0);
  check('blockCount', Number(b.readBigUInt64LE(HO_BLOCK_COUNT)), want.blockCount);
  check('snapshotId', Number(b.readBigUInt64LE(HO_SNAPSHOT_ID)), want.snapshotId);
  check('fingerprint', b.toString('hex', HO_FINGERPRINT, HO_FINGERPRINT + 32), want.fingerprint);
  const n = b.readUInt16LE(HO_ID_LENGTH);
  check('partitionId', n >= 1 && n <= 64 ? b.toString('utf8', HO_ID, HO_ID + n) : `<${n} bytes>`, want.partitionId);
}

export function encodeMapRecord(block: number, into: Buffer = Buffer.alloc(MAP_RECORD_SIZE), at = 0): Buffer {
  into.writeUInt32LE(MAP_RECORD_MAGIC, at);
  into.writeBigUInt64LE(BigInt(block), at + 8);
  into.writeUInt32LE(crc32(into.subarray(at + 8, at + 16)), at + 4);
  return into;
}

/** The block a record maps, or undefined for a record that is not valid (torn, zero, out of range). */
export function decodeMapRecord(b: Buffer, at: number, blockCount: number): number | undefined {
  return mapRecordFault(b, at, blockCount) === undefined ? Number(b.readBigUInt64LE(at + 8)) : undefined;
}

/** Why a map record is not valid (what `vsnap verify` says), or undefined for a valid one. */
export function mapRecordFault(b: Buffer, at: number, blockCount: number): string | undefined {
  const magic = b.readUInt32LE(at);
  if (magic !== MAP_RECORD_MAGIC) return `bad record magic 0x${magic.toString(16).padStart(8, '0')}`;
  const crc = b.readUInt32LE(at + 4);
  if (crc32(b.subarray(at + 8, at + 16)) !== crc) return 'record crc mismatch';
  const block = b.readBigUInt64LE(at + 8);
  if (block >= BigInt(blockCount)) return `block ${block} is past the partition's ${blockCount} blocks`;
  return undefined;
}

/** Pure: the blocks of a map file's record area, and where a torn tail starts (docs/formats.md "Open and recovery"). */
export function scanMap(records: Buffer, blockCount: number, file: string): { blocks: number[]; validBytes: number } {
  const blocks: number[] = [];
  const whole = Math.floor(records.length / MAP_RECORD_SIZE);
  let k = 0;
  for (; k < whole; k++) {
    const b = decodeMapRecord(records, k * MAP_RECORD_SIZE, blockCount);
    if (b === undefined) break;
    blocks.push(b);
  }
  for (let j = k + 1; j < whole; j++) {
    if (decodeMapRecord(records, j * MAP_RECORD_SIZE, blockCount) !== undefined) {
      throw new IntegrityError(`${file} at offset ${OVERLAY_HEADER_SIZE + k * MAP_RECORD_SIZE}: invalid map record followed by valid ones (damage, not a torn append)`);
    }
  }
  return { blocks, validBytes: k * MAP_RECORD_SIZE };
}

/** Create a partition's empty overlay pair (headers only), durably; the files must not exist. */
export async function createOverlay(paths: OverlayPaths, h: OverlayHeader): Promise<void> {
  for (const [kind, file] of [['data', paths.data], ['map', paths.map]] as const) {
    const fh = await createPrivateFile(file, 'wx');
    try {
      const hdr = encodeOverlayHeader(kind, h);
      await namingFile(file, writeFully(fh, hdr, 0, hdr.length, 0));
      await namingFile(file, fh.datasync());
    } finally {
      await fh.close();
    }
  }
}

/** Bytes the overlay's files take on disk (allocated blocks, as du counts them). */
export function overlayUsedBytes(paths: OverlayPaths): number {
  let n = 0;
  for (const f of [paths.data, paths.map]) {
    try {
      n += fs.statSync(f).blocks * 512;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw fileError(f, err);
    }
  }
  return n;
}

/**
 * Empty one overlay file through `fh` and give it a fresh header: cut to the
 * header, write the header, fdatasync. A header damaged behind vsnap is
 * replaced, so a reset always leaves a working empty overlay; a good one is
 * rewritten with the same bytes (a torn write of it changes nothing).
 */
async function resetThrough(fh: FileHandle, kind: 'data' | 'map', file: string, h: OverlayHeader): Promise<void> {
  const hdr = encodeOverlayHeader(kind, h);
  await namingFile(file, fh.truncate(OVERLAY_HEADER_SIZE));
  await namingFile(file, writeFully(fh, hdr, 0, hdr.length, 0));
  await namingFile(file, fh.datasync());
}

/**
 * Empty an overlay that nobody has open: the map first (the commit point),
 * then the data. A file that is missing is made again (private, its
 * directory synced), so the clone works after the reset.
 */
export async function resetOverlayFiles(paths: OverlayPaths, h: OverlayHeader): Promise<void> {
  for (const [kind, file] of [['map', paths.map], ['data', paths.data]] as const) {
    let fh: FileHandle;
    let made = false;
    try {
      fh = await fs.promises.open(file, 'r+');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw fileError(file, err);
      fh = await createPrivateFile(file, 'wx');
      made = true;
    }
    try {
      await resetThrough(fh, kind, file, h);
    } finally {
      await fh.close();
    }
    if (made) await fsyncDir(path.dirname(file));
  }
}

/** One partition's open overlay: the durable map in memory, data I/O by slot. */
export class OverlayFile {
  private constructor(
    readonly paths: OverlayPaths,
    readonly header: OverlayHeader,
    private readonly data: FileHandle,
    private readonly map: FileHandle,
    /** Blocks whose map record is durable (or at least written after their data was synced). */
    public mapped: BlockIndex,
    private mapEnd: number,
  ) {}

  static async open(paths: OverlayPaths, want: OverlayHeader): Promise<OverlayFile> {
    const data = await namingFile(paths.data, fs.promises.open(paths.data, 'r+'));
    let map: FileHandle | undefined;
    try {
      map = await namingFile(paths.map, fs.promises.open(paths.map, 'r+'));
      for (const [kind, fh, file] of [['data', data, paths.data], ['map', map, paths.map]] as const) {
        const hdr = Buffer.alloc(OVERLAY_HEADER_SIZE);
        const n = await namingFile(file, readFully(fh, hdr, 0, hdr.length, 0));
        checkOverlayHeader(kind, hdr.subarray(0, n), file, want);
      }
      const size = (await namingFile(paths.map, map.stat())).size;
      const records = Buffer.alloc(size - OVERLAY_HEADER_SIZE);
      await namingFile(paths.map, readFully(map, records, 0, records.length, OVERLAY_HEADER_SIZE));
      const { blocks, validBytes } = scanMap(records, want.blockCount, paths.map);
      const end = OVERLAY_HEADER_SIZE + validBytes;
      if (end !== size) {
        // A torn append: those blocks were never acknowledged by a FLUSH.
        await namingFile(paths.map, map.truncate(end));
        await namingFile(paths.map, map.datasync());
      }
      const mapped = new BlockIndex(blocks.length);
      for (const b of blocks) if (!mapped.has(b)) mapped.add(b);
      return new OverlayFile(paths, want, data, map, mapped, end);
    } catch (err) {
      await data.close().catch(() => undefined);
      await map?.close().catch(() => undefined);
      throw err;
    }
  }

  get blockSize(): number {
    return this.header.blockSize;
  }

  /** File offset of byte `within` of block b's slot. */
  slot(b: number, within = 0): number {
    return OVERLAY_HEADER_SIZE + b * this.header.blockSize + within;
  }

  /** Read `len` bytes at partition offset `off` (all of whose blocks are in the overlay). */
  read(off: number, len: number, into: Buffer, intoOff: number): Promise<void> {
    return namingFile(this.paths.data, readFullyZeroFilled(this.data, into, intoOff, len, OVERLAY_HEADER_SIZE + off));
  }

  /** Gather-write starting at partition offset `off`. */
  write(off: number, bufs: Buffer[]): Promise<void> {
    return namingFile(this.paths.data, writevFully(this.data, bufs, OVERLAY_HEADER_SIZE + off));
  }

  syncData(): Promise<void> {
    return namingFile(this.paths.data, this.data.datasync());
  }

  /** Append records for blocks whose data the caller has synced, then sync the map. */
  async appendMapped(blocks: number[]): Promise<void> {
    const fresh = blocks.filter((b) => !this.mapped.has(b));
    if (fresh.length === 0) return;
    const buf = Buffer.alloc(fresh.length * MAP_RECORD_SIZE);
    fresh.forEach((b, k) => encodeMapRecord(b, buf, k * MAP_RECORD_SIZE));
    try {
      await namingFile(this.paths.map, writeFully(this.map, buf, 0, buf.length, this.mapEnd));
      await namingFile(this.paths.map, this.map.datasync());
    } catch (err) {
      // Cut what may have landed, so the next append starts at a known end.
      await this.map.truncate(this.mapEnd).catch(() => undefined);
      throw err;
    }
    this.mapEnd += buf.length;
    for (const b of fresh) this.mapped.add(b);
  }

  /** Empty the overlay in place: the map first (commit point), then the data's space. */
  async reset(): Promise<void> {
    await resetThrough(this.map, 'map', this.paths.map, this.header);
    this.mapEnd = OVERLAY_HEADER_SIZE;
    this.mapped = new BlockIndex();
    await resetThrough(this.data, 'data', this.paths.data, this.header);
  }

  async close(): Promise<void> {
    await Promise.allSettled([this.data.close(), this.map.close()]);
  }
}
