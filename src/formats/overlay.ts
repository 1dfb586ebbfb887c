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
import { IntegrityError, fileError, namingFile, operationErrorFrom } from '../errors.js';
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

/** One record of a map that the scan found invalid. */
export interface BadMapRecord {
  /** File offset of the record. */
  offset: number;
  /** Why it is invalid (mapRecordFault). */
  fault: string;
  /** Its block field (untrustworthy when the crc is wrong). */
  block: bigint;
}

/** What a map's records say under the recovery rule (docs/formats.md "Open and recovery"). */
export interface MapScan {
  /** The valid records before the first invalid one (X), with their file offsets. */
  blocks: { block: number; offset: number }[];
  /** Bytes of records before X: where the map is cut when the rest is a torn tail. */
  validBytes: number;
  /** Set when the rest is damage, not a torn append: X, and the record after it that proves it. */
  damage?: { first: BadMapRecord; validAt?: number; withMagic?: BadMapRecord };
}

/**
 * Pure scan of a map's record area. X is the first whole record that is not
 * valid. What a torn append leaves from X on is whole records that never got
 * their bytes (zeros, or whatever the file system had there) and a partial
 * last record; never a valid record, and never one with the record magic and
 * a bad crc or block: records never straddle a sector, so a record's bytes
 * land whole or not at all. Either of those from X on is damage.
 */
export function scanMapRecords(records: Buffer, blockCount: number): MapScan {
  const blocks: { block: number; offset: number }[] = [];
  const whole = Math.floor(records.length / MAP_RECORD_SIZE);
  const bad = (k: number, fault: string): BadMapRecord => ({ offset: OVERLAY_HEADER_SIZE + k * MAP_RECORD_SIZE, fault, block: records.readBigUInt64LE(k * MAP_RECORD_SIZE + 8) });
  let k = 0;
  let first: BadMapRecord | undefined;
  for (; k < whole; k++) {
    const fault = mapRecordFault(records, k * MAP_RECORD_SIZE, blockCount);
    if (fault !== undefined) {
      first = bad(k, fault);
      break;
    }
    blocks.push({ block: Number(records.readBigUInt64LE(k * MAP_RECORD_SIZE + 8)), offset: OVERLAY_HEADER_SIZE + k * MAP_RECORD_SIZE });
  }
  const scan: MapScan = { blocks, validBytes: k * MAP_RECORD_SIZE };
  if (!first) return scan;
  let withMagic: BadMapRecord | undefined;
  for (let j = k; j < whole; j++) {
    const fault = mapRecordFault(records, j * MAP_RECORD_SIZE, blockCount);
    if (fault === undefined) return { ...scan, damage: { first, validAt: OVERLAY_HEADER_SIZE + j * MAP_RECORD_SIZE } };
    if (!withMagic && records.readUInt32LE(j * MAP_RECORD_SIZE) === MAP_RECORD_MAGIC) withMagic = bad(j, fault);
  }
  return withMagic ? { ...scan, damage: { first, withMagic } } : scan;
}

/** What to do about a damaged map (the open refuses it, verify reports it). */
export const MAP_DAMAGE_HINT = 'vsnap clone repair drops the bad records (their blocks read as the snapshot again), vsnap clone reset empties the clone';

/** A scan's damage in words, after "<where> at offset N: ". */
export function describeMapDamage(d: NonNullable<MapScan['damage']>): { offset: number; text: string } {
  if (d.validAt !== undefined) return { offset: d.first.offset, text: `${d.first.fault}, followed by a valid record at offset ${d.validAt} (damage, not a torn append)` };
  const r = d.withMagic!;
  const names = r.fault.includes('crc') ? ` (its block field says ${r.block})` : '';
  return { offset: r.offset, text: `${r.fault}${names} in a whole record with the record magic (damage: a torn append never leaves one); the flushed block it named would read as the snapshot again` };
}

/** Pure: the blocks of a map file's record area, and where a torn tail starts; damage is an IntegrityError. */
export function scanMap(records: Buffer, blockCount: number, file: string): { blocks: number[]; validBytes: number } {
  const scan = scanMapRecords(records, blockCount);
  if (scan.damage?.validAt !== undefined) {
    throw new IntegrityError(`${file} at offset ${scan.damage.first.offset}: invalid map record followed by valid ones (damage, not a torn append): the clone is not opened; ${MAP_DAMAGE_HINT}`);
  }
  if (scan.damage) {
    const d = describeMapDamage(scan.damage);
    throw new IntegrityError(`${file} at offset ${d.offset}: map record: ${d.text}; the clone is not opened: ${MAP_DAMAGE_HINT}`);
  }
  return { blocks: scan.blocks.map((b) => b.block), validBytes: scan.validBytes };
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

/** What a non-regular entry is, for a message. */
function entryKind(st: fs.Stats): string {
  if (st.isDirectory()) return 'a directory';
  if (st.isFIFO()) return 'a FIFO';
  if (st.isSocket()) return 'a socket';
  if (st.isCharacterDevice() || st.isBlockDevice()) return 'a device';
  return 'not a file';
}

/**
 * Open an overlay file for a reset. A regular file is used as it is; a
 * missing one, or a symlink in its place, is made again (`made`): the link
 * is removed, never written through, since what it names lies outside the
 * store (a reset truncated such a file: adversary E5); anything else (a
 * directory, a FIFO, ...) is refused, exit 3, since replacing it could throw
 * away what someone put there.
 */
async function openForReset(file: string): Promise<{ fh: FileHandle; made: boolean }> {
  try {
    if ((await fs.promises.lstat(file)).isSymbolicLink()) await fs.promises.unlink(file);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw operationErrorFrom(err as NodeJS.ErrnoException, file);
  }
  let st: fs.Stats | undefined;
  try {
    st = await fs.promises.stat(file);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw operationErrorFrom(err as NodeJS.ErrnoException, file);
  }
  if (st && !st.isFile()) {
    throw new IntegrityError(`${file}: not a regular file (${entryKind(st)}); clone reset makes again only a missing overlay file or one whose symlink dangles: move this one out of the store, then reset again`);
  }
  if (st) return { fh: await namingFile(file, fs.promises.open(file, 'r+')), made: false };
  return { fh: await createPrivateFile(file, 'wx'), made: true };
}

/**
 * Empty an overlay that nobody has open: the map first (the commit point),
 * then the data. A file that is missing (or a dangling symlink) is made again
 * (private, its directory synced), so the clone works after the reset.
 */
export async function resetOverlayFiles(paths: OverlayPaths, h: OverlayHeader): Promise<void> {
  for (const [kind, file] of [['map', paths.map], ['data', paths.data]] as const) {
    const { fh, made } = await openForReset(file);
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
        // A torn append (scanMap refused anything else): those blocks were never acknowledged by a FLUSH.
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
