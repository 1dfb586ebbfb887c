// Change-log codec: the byte layout of docs/formats.md "Change log" and the
// checks on single headers and records. Pure (no file system): the log
// (log.ts) and the open-time scan (recovery.ts) build on it, and others that
// need to know a log's geometry (list counting records from a file's size)
// ask here instead of re-declaring sizes.
//
//   [0, 4096)            file header, crc32 at 4092 over [0, 4092)
//   4096 + k*(32+bs)     record k: 32-byte record header + bs bytes of data
import { crc32 } from 'node:zlib';
import { IntegrityError } from '../../errors.js';

export const CLOG_MAGIC = 'VSNAPCLG';
export const CLOG_VERSION = 1;
export const CLOG_HEADER_SIZE = 4096;
export const RECORD_HEADER_SIZE = 32;
/** Stored little-endian: the bytes on disk are 43 45 52 4c ("CERL"). */
export const RECORD_MAGIC = 0x4c524543;
export const MAX_PARTITION_ID_BYTES = 64;
/** Block sizes the format accepts (the manifest narrows this to 4 KiB..4 MiB). */
export const MIN_BLOCK_SIZE = 512;
export const MAX_BLOCK_SIZE = 16 * 1024 * 1024;

// File header field offsets.
const HO_MAGIC = 0;
const HO_VERSION = 8;
const HO_HEADER_SIZE = 12;
const HO_BLOCK_SIZE = 16;
const HO_RECORD_HEADER_SIZE = 20;
const HO_SNAPSHOT_ID = 24;
const HO_CREATED_AT = 32;
const HO_FINGERPRINT = 40;
const HO_ID_LENGTH = 72;
const HO_ID = 74;
const HO_CRC = 4092;

// Record header field offsets.
export const RO_MAGIC = 0;
export const RO_CRC = 4;
export const RO_BLOCK = 8;
export const RO_BATCH = 16;
export const RO_RESERVED = 24;

/** Target size of one read while scanning, verifying or merging. */
export const CHUNK_BYTES = 8 * 1024 * 1024;
/** Positional header reads kept in flight while opening a log of large records. */
export const HEADER_READ_WINDOW = 64;

const TWO32 = 0x1_0000_0000;

/** Bytes one record takes in a log of `blockSize`-byte blocks: its header plus one block. */
export function changeLogRecordSize(blockSize: number): number {
  return RECORD_HEADER_SIZE + blockSize;
}

/** File offset of record slot `slot` in a log of `blockSize`-byte blocks. */
export function changeLogSlotOffset(slot: number, blockSize: number): number {
  return CLOG_HEADER_SIZE + slot * changeLogRecordSize(blockSize);
}

/**
 * Whole records in a log file of `fileSize` bytes, from its size alone (a
 * trailing partial record does not count). Lets `list` and `show` count
 * logged blocks without opening logs or starting workers.
 */
export function changeLogRecordCount(fileSize: number, blockSize: number): number {
  return Math.max(0, Math.floor((fileSize - CLOG_HEADER_SIZE) / changeLogRecordSize(blockSize)));
}

export interface ChangeLogHeader {
  snapshotId: number;
  partitionId: string;
  blockSize: number;
  /** sha256 of the normalized volume mapping: 64 lowercase hex digits. */
  fingerprint: string;
  createdAtMs: number;
}

export interface ChangeLogExpect {
  snapshotId: number;
  partitionId: string;
  blockSize: number;
  fingerprint: string;
}

export interface ChangeLogOpenOptions {
  expect: ChangeLogExpect;
  /** Blocks in the partition: a record naming a block >= this is invalid. */
  blockCount: number;
  /** Whether the last writer closed the log in an orderly way (partition state). */
  cleanClose: boolean;
  /** File length recorded at the last clean close. */
  expectedLength?: number;
  /**
   * With cleanClose and expectedLength: the last writer recorded that an
   * append failed and could not be cut off, so bytes beyond expectedLength
   * are that append's and are dropped instead of being an integrity error.
   */
  dropTail?: boolean;
  /** Open without write access; recovery then trims the torn tail in memory only. */
  readOnly?: boolean;
  /**
   * Reads a block's in-place copy (the live volume) into `out`. Given for the
   * partition's newest log, the only one whose torn tail comes from
   * copy-on-write appends: a record of the newest batch whose data fails its
   * crc is then cut only if the live block matches it (a torn append), and is
   * an IntegrityError otherwise (docs/formats.md "Recovery rules on open", 4).
   */
  liveBlock?: (block: number, out: Buffer) => Promise<void>;
}

export interface ChangeLogRecord {
  block: number;
  data: Buffer;
}

export interface VerifyResult {
  bytesRead: number;
  problems: { offset: number; message: string }[];
}

export function writeU64(buf: Buffer, value: number, off: number): void {
  buf.writeUInt32LE(value % TWO32, off);
  buf.writeUInt32LE(Math.floor(value / TWO32), off + 4);
}

/** u64 as a number, or -1 when it does not fit in 53 bits (never valid in vsnap). */
export function readU64(buf: Buffer, off: number): number {
  const hi = buf.readUInt32LE(off + 4);
  if (hi > 0x1f_ffff) return -1;
  return hi * TWO32 + buf.readUInt32LE(off);
}

function isPow2(n: number): boolean {
  return Number.isSafeInteger(n) && n > 0 && (n & (n - 1)) === 0;
}

/** Problems with a header the caller asked us to write: programming errors, not integrity ones. */
function checkHeaderInput(h: ChangeLogHeader): string | undefined {
  if (!Number.isSafeInteger(h.snapshotId) || h.snapshotId < 1) return `snapshotId must be a positive integer (got ${h.snapshotId})`;
  if (!isPow2(h.blockSize) || h.blockSize < MIN_BLOCK_SIZE || h.blockSize > MAX_BLOCK_SIZE) {
    return `blockSize must be a power of two in ${MIN_BLOCK_SIZE}..${MAX_BLOCK_SIZE} (got ${h.blockSize})`;
  }
  if (!/^[0-9a-f]{64}$/.test(h.fingerprint)) return `fingerprint must be 64 lowercase hex digits (got ${JSON.stringify(h.fingerprint)})`;
  const idBytes = Buffer.byteLength(h.partitionId, 'utf8');
  if (idBytes === 0 || idBytes > MAX_PARTITION_ID_BYTES) return `partitionId must be 1..${MAX_PARTITION_ID_BYTES} bytes of UTF-8 (got ${idBytes})`;
  if (!Number.isSafeInteger(h.createdAtMs) || h.createdAtMs < 0) return `createdAtMs must be a non-negative integer (got ${h.createdAtMs})`;
  return undefined;
}

/** The 4096-byte file header; its crc is the value psnap files bind to. */
export function encodeChangeLogHeader(h: ChangeLogHeader): { bytes: Buffer; crc: number } {
  const problem = checkHeaderInput(h);
  if (problem) throw new Error(`change log header: ${problem}`);
  const b = Buffer.alloc(CLOG_HEADER_SIZE);
  b.write(CLOG_MAGIC, HO_MAGIC, 'ascii');
  b.writeUInt32LE(CLOG_VERSION, HO_VERSION);
  b.writeUInt32LE(CLOG_HEADER_SIZE, HO_HEADER_SIZE);
  b.writeUInt32LE(h.blockSize, HO_BLOCK_SIZE);
  b.writeUInt32LE(RECORD_HEADER_SIZE, HO_RECORD_HEADER_SIZE);
  writeU64(b, h.snapshotId, HO_SNAPSHOT_ID);
  writeU64(b, h.createdAtMs, HO_CREATED_AT);
  Buffer.from(h.fingerprint, 'hex').copy(b, HO_FINGERPRINT);
  const id = Buffer.from(h.partitionId, 'utf8');
  b.writeUInt16LE(id.length, HO_ID_LENGTH);
  id.copy(b, HO_ID);
  const crc = crc32(b.subarray(0, HO_CRC));
  b.writeUInt32LE(crc, HO_CRC);
  return { bytes: b, crc };
}

/** Parse and check a file header; every problem is an IntegrityError naming file and offset. */
export function decodeChangeLogHeader(b: Buffer, file: string): { header: ChangeLogHeader; crc: number } {
  const bad = (off: number, what: string) => new IntegrityError(`${file} at offset ${off}: change log header: ${what}`);
  if (b.length < CLOG_HEADER_SIZE) throw bad(b.length, `file is ${b.length} bytes, shorter than the ${CLOG_HEADER_SIZE}-byte header`);
  if (b.toString('latin1', HO_MAGIC, HO_MAGIC + 8) !== CLOG_MAGIC) throw bad(HO_MAGIC, `bad magic (not a vsnap change log)`);
  const stored = b.readUInt32LE(HO_CRC);
  const crc = crc32(b.subarray(0, HO_CRC));
  if (stored !== crc) throw bad(HO_CRC, `crc mismatch (stored ${hex32(stored)}, computed ${hex32(crc)})`);
  const version = b.readUInt32LE(HO_VERSION);
  if (version !== CLOG_VERSION) throw bad(HO_VERSION, `unsupported version ${version} (this vsnap reads ${CLOG_VERSION})`);
  const headerSize = b.readUInt32LE(HO_HEADER_SIZE);
  if (headerSize !== CLOG_HEADER_SIZE) throw bad(HO_HEADER_SIZE, `header size ${headerSize}, expected ${CLOG_HEADER_SIZE}`);
  const blockSize = b.readUInt32LE(HO_BLOCK_SIZE);
  if (!isPow2(blockSize) || blockSize < MIN_BLOCK_SIZE || blockSize > MAX_BLOCK_SIZE) throw bad(HO_BLOCK_SIZE, `invalid block size ${blockSize}`);
  const rhs = b.readUInt32LE(HO_RECORD_HEADER_SIZE);
  if (rhs !== RECORD_HEADER_SIZE) throw bad(HO_RECORD_HEADER_SIZE, `record header size ${rhs}, expected ${RECORD_HEADER_SIZE}`);
  const snapshotId = readU64(b, HO_SNAPSHOT_ID);
  if (snapshotId < 1) throw bad(HO_SNAPSHOT_ID, `invalid snapshot id`);
  const createdAtMs = readU64(b, HO_CREATED_AT);
  if (createdAtMs < 0) throw bad(HO_CREATED_AT, `invalid creation time`);
  const idLen = b.readUInt16LE(HO_ID_LENGTH);
  if (idLen === 0 || idLen > MAX_PARTITION_ID_BYTES) throw bad(HO_ID_LENGTH, `partition id length ${idLen} out of range 1..${MAX_PARTITION_ID_BYTES}`);
  const idBytes = b.subarray(HO_ID, HO_ID + idLen);
  const partitionId = idBytes.toString('utf8');
  if (!Buffer.from(partitionId, 'utf8').equals(idBytes)) throw bad(HO_ID, `partition id is not valid UTF-8`);
  for (let i = HO_ID + idLen; i < HO_CRC; i++) {
    if (b[i] !== 0) throw bad(i, `non-zero byte in header padding`);
  }
  const fingerprint = b.toString('hex', HO_FINGERPRINT, HO_FINGERPRINT + 32);
  return { header: { snapshotId, partitionId, blockSize, fingerprint, createdAtMs }, crc };
}

export function hex32(n: number): string {
  return '0x' + n.toString(16).padStart(8, '0');
}

/** What the fixed fields of a record header say, before its crc is checked. */
export interface SlotHeader {
  valid: boolean;
  /** Why the header is invalid (when !valid). */
  why: string;
  block: number;
  batch: number;
}

export function parseSlotHeader(h: Buffer, at: number, blockCount: number): SlotHeader {
  const block = readU64(h, at + RO_BLOCK);
  const batch = readU64(h, at + RO_BATCH);
  let why = '';
  if (h.readUInt32LE(at + RO_MAGIC) !== RECORD_MAGIC) why = 'bad record magic';
  else if (block < 0 || block >= blockCount) why = `block number ${block < 0 ? 'beyond 2^53' : block} outside the partition (${blockCount} blocks)`;
  else if (batch < 1) why = `invalid batch number`;
  else if (h.readUInt32LE(at + RO_RESERVED) !== 0 || h.readUInt32LE(at + RO_RESERVED + 4) !== 0) why = 'reserved field is not zero';
  return { valid: why === '', why, block, batch };
}

/** crc32 of record header bytes [8, 32) followed by the data. */
export function recordCrc(hdr: Buffer, hdrAt: number, data: Buffer): number {
  return crc32(data, crc32(hdr.subarray(hdrAt + RO_BLOCK, hdrAt + RECORD_HEADER_SIZE)));
}

/**
 * The record headers of one batch, each followed by its data, ready for one
 * gather-write. The caller has checked the records (sizes, range, duplicates).
 */
export function encodeBatch(records: readonly ChangeLogRecord[], batch: number): Buffer[] {
  const headers = Buffer.alloc(records.length * RECORD_HEADER_SIZE);
  const iov: Buffer[] = [];
  for (let i = 0; i < records.length; i++) {
    const at = i * RECORD_HEADER_SIZE;
    const r = records[i];
    headers.writeUInt32LE(RECORD_MAGIC, at + RO_MAGIC);
    writeU64(headers, r.block, at + RO_BLOCK);
    writeU64(headers, batch, at + RO_BATCH);
    // reserved stays zero (Buffer.alloc)
    headers.writeUInt32LE(recordCrc(headers, at, r.data), at + RO_CRC);
    iov.push(headers.subarray(at, at + RECORD_HEADER_SIZE), r.data);
  }
  return iov;
}

/** Check a record read from `file` at `off` (header at hdr[hdrAt..], data separate) against its crc and the expected block. */
export function checkRecord(file: string, hdr: Buffer, hdrAt: number, data: Buffer, off: number, block: number): void {
  const bad = (m: string) => new IntegrityError(`${file} at offset ${off}: record of block ${block}: ${m}`);
  if (hdr.readUInt32LE(hdrAt + RO_MAGIC) !== RECORD_MAGIC) throw bad('bad record magic');
  const stored = hdr.readUInt32LE(hdrAt + RO_CRC);
  const computed = recordCrc(hdr, hdrAt, data);
  if (stored !== computed) throw bad(`crc mismatch (stored ${hex32(stored)}, computed ${hex32(computed)})`);
  const onDisk = readU64(hdr, hdrAt + RO_BLOCK);
  if (onDisk !== block) throw bad(`record holds block ${onDisk}`);
}

export function checkExpect(h: ChangeLogHeader, e: ChangeLogExpect, file: string): void {
  const bad = (off: number, what: string, got: unknown, want: unknown) =>
    new IntegrityError(`${file} at offset ${off}: change log ${what} is ${JSON.stringify(got)}, expected ${JSON.stringify(want)}`);
  if (h.snapshotId !== e.snapshotId) throw bad(HO_SNAPSHOT_ID, 'snapshot id', h.snapshotId, e.snapshotId);
  if (h.blockSize !== e.blockSize) throw bad(HO_BLOCK_SIZE, 'block size', h.blockSize, e.blockSize);
  if (h.fingerprint !== e.fingerprint.toLowerCase()) throw bad(HO_FINGERPRINT, 'volume fingerprint', h.fingerprint, e.fingerprint);
  if (h.partitionId !== e.partitionId) throw bad(HO_ID, 'partition id', h.partitionId, e.partitionId);
}

export function sameHeader(a: ChangeLogHeader, b: ChangeLogHeader): boolean {
  return (
    a.snapshotId === b.snapshotId &&
    a.partitionId === b.partitionId &&
    a.blockSize === b.blockSize &&
    a.fingerprint === b.fingerprint &&
    a.createdAtMs === b.createdAtMs
  );
}
