// The change log (<partition>.clog): one per partition per snapshot, holding
// the OLD contents of blocks written after that snapshot. Byte layout,
// invariants and recovery rules are in docs/formats.md; the short version:
//
//   [0, 4096)            file header, crc32 at 4092 over [0, 4092)
//   4096 + k*(32+bs)     record k: 32-byte record header + bs bytes of data
//
// Records are fixed size so slot k's position is computed, never searched, and
// a torn append can only damage whole slots at the end of the file. Appends
// come in batches (one positional write, then fdatasync); the caller writes a
// block in place only after the batch logging its old content is durable, so
// on recovery after a crash the newest, possibly unsynced batch may be dropped
// without losing any snapshot's data.
import { open, unlink, type FileHandle } from 'node:fs/promises';
import { crc32 } from 'node:zlib';
import { IntegrityError, OperationError } from '../errors.js';
import { BlockIndex } from './block-index.js';

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
const RO_MAGIC = 0;
const RO_CRC = 4;
const RO_BLOCK = 8;
const RO_BATCH = 16;
const RO_RESERVED = 24;

/** Target size of one read while scanning, verifying or merging. */
const CHUNK_BYTES = 8 * 1024 * 1024;
/** Positional header reads kept in flight while opening a log of large records. */
const HEADER_READ_WINDOW = 64;

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
  /** Open without write access; recovery then trims the torn tail in memory only. */
  readOnly?: boolean;
}

export interface ChangeLogRecord {
  block: number;
  data: Buffer;
}

export interface VerifyResult {
  bytesRead: number;
  problems: { offset: number; message: string }[];
}

function writeU64(buf: Buffer, value: number, off: number): void {
  buf.writeUInt32LE(value % TWO32, off);
  buf.writeUInt32LE(Math.floor(value / TWO32), off + 4);
}

/** u64 as a number, or -1 when it does not fit in 53 bits (never valid in vsnap). */
function readU64(buf: Buffer, off: number): number {
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

function hex32(n: number): string {
  return '0x' + n.toString(16).padStart(8, '0');
}

/** What the fixed fields of a record header say, before its crc is checked. */
interface SlotHeader {
  valid: boolean;
  /** Why the header is invalid (when !valid). */
  why: string;
  block: number;
  batch: number;
}

function parseSlotHeader(h: Buffer, at: number, blockCount: number): SlotHeader {
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
function recordCrc(hdr: Buffer, hdrAt: number, data: Buffer): number {
  return crc32(data, crc32(hdr.subarray(hdrAt + RO_BLOCK, hdrAt + RECORD_HEADER_SIZE)));
}

export class ChangeLog {
  readonly path: string;
  readonly header: ChangeLogHeader;
  readonly headerCrc: number;
  readonly readOnly: boolean;

  private fh: FileHandle | undefined;
  private readonly index: BlockIndex;
  private readonly recordSize: number;
  private readonly blockCount: number;
  private length: number;
  private nextBatch: number;
  /** Tail of the append queue: each batch starts after the previous one settled. */
  private queue: Promise<unknown> = Promise.resolve();
  /** Set when an append failed: the file's tail is unknown until a reopen recovers it. */
  private failure: Error | undefined;

  private constructor(args: {
    path: string;
    fh: FileHandle;
    header: ChangeLogHeader;
    headerCrc: number;
    index: BlockIndex;
    blockCount: number;
    length: number;
    nextBatch: number;
    readOnly: boolean;
  }) {
    this.path = args.path;
    this.fh = args.fh;
    this.header = args.header;
    this.headerCrc = args.headerCrc;
    this.index = args.index;
    this.blockCount = args.blockCount;
    this.length = args.length;
    this.nextBatch = args.nextBatch;
    this.readOnly = args.readOnly;
    this.recordSize = RECORD_HEADER_SIZE + args.header.blockSize;
  }

  /**
   * Create a new, empty log (the file must not exist), write its header and
   * fdatasync. The caller fsyncs the directory. `o.blockCount` (an addition to
   * the minimal API) lets appendBatch refuse blocks outside the partition at
   * once instead of producing a log that a later open rejects.
   */
  static async create(path: string, h: ChangeLogHeader, o: { blockCount?: number } = {}): Promise<ChangeLog> {
    const { bytes, crc } = encodeChangeLogHeader(h);
    const fh = await open(path, 'wx+', 0o644);
    try {
      await writeAll(fh, [bytes], 0);
      await fh.datasync();
    } catch (e) {
      await fh.close().catch(() => undefined);
      // O_EXCL made the file ours; a half-written log must not be left behind.
      await unlink(path).catch(() => undefined);
      throw e;
    }
    return new ChangeLog({
      path,
      fh,
      header: { ...h },
      headerCrc: crc,
      index: new BlockIndex(),
      blockCount: o.blockCount ?? Number.MAX_SAFE_INTEGER,
      length: CLOG_HEADER_SIZE,
      nextBatch: 1,
      readOnly: false,
    });
  }

  /** Open an existing log, check its header against `o.expect`, index it and, after an unclean close, recover its tail. */
  static async open(path: string, o: ChangeLogOpenOptions): Promise<ChangeLog> {
    const readOnly = o.readOnly ?? false;
    if (!Number.isSafeInteger(o.blockCount) || o.blockCount < 0) throw new Error(`ChangeLog.open: invalid blockCount ${o.blockCount}`);
    const fh = await open(path, readOnly ? 'r' : 'r+');
    try {
      const size = (await fh.stat()).size;
      const hb = Buffer.alloc(CLOG_HEADER_SIZE);
      const { bytesRead } = await fh.read(hb, 0, CLOG_HEADER_SIZE, 0);
      const { header, crc } = decodeChangeLogHeader(hb.subarray(0, bytesRead), path);
      checkExpect(header, o.expect, path);
      const scan = await scanRecords(fh, path, header.blockSize, size, o);
      const finalLength = CLOG_HEADER_SIZE + scan.index.size * (RECORD_HEADER_SIZE + header.blockSize);
      if (finalLength < size && !readOnly) {
        await fh.truncate(finalLength);
        await fh.datasync();
      }
      return new ChangeLog({
        path,
        fh,
        header,
        headerCrc: crc,
        index: scan.index,
        blockCount: o.blockCount,
        length: finalLength,
        nextBatch: scan.lastBatch + 1,
        readOnly,
      });
    } catch (e) {
      await fh.close().catch(() => undefined);
      throw e;
    }
  }

  /** Number of records. */
  get count(): number {
    return this.index.size;
  }

  /** File length in bytes (after recovery; for a read-only recovered log, the length it would be trimmed to). */
  get byteLength(): number {
    return this.length;
  }

  has(block: number): boolean {
    return this.index.has(block);
  }

  /** Logged blocks, in record order. */
  blocks(): IterableIterator<number> {
    return this.index[Symbol.iterator]();
  }

  /**
   * The logged (old) content of `block`, crc-checked. With `into`, the data is
   * read straight into into[intoOffset, intoOffset + blockSize) and that view
   * is returned; otherwise a new Buffer. Asking for a block that is not logged
   * is a bug (check has() first).
   */
  async readBlock(block: number, into?: Buffer, intoOffset = 0): Promise<Buffer> {
    const bs = this.header.blockSize;
    let target: Buffer;
    if (into) {
      if (!(Number.isInteger(intoOffset) && intoOffset >= 0 && intoOffset + bs <= into.length)) {
        throw new RangeError(`readBlock: ${bs} bytes do not fit at offset ${intoOffset} of a ${into.length}-byte buffer`);
      }
      target = into.subarray(intoOffset, intoOffset + bs);
    } else {
      target = Buffer.allocUnsafe(bs);
    }
    const slot = this.slotOf(block);
    const hdr = Buffer.allocUnsafe(RECORD_HEADER_SIZE);
    const off = this.offsetOf(slot);
    // readv: header and data in one syscall, data landing in the caller's buffer (no copy).
    const n = await readvAll(this.handle(), [hdr, target], off);
    if (n < this.recordSize) throw new IntegrityError(`${this.path} at offset ${off + n}: record of block ${block} is cut short (file truncated after open?)`);
    this.checkRecord(hdr, 0, target, off, block);
    return target;
  }

  /** Bytes [within, within+length) of the logged block into into[intoOffset...]; the whole record is read to check its crc. */
  async readRange(block: number, within: number, length: number, into: Buffer, intoOffset: number): Promise<void> {
    const bs = this.header.blockSize;
    if (!(Number.isInteger(within) && Number.isInteger(length) && within >= 0 && length >= 0 && within + length <= bs)) {
      throw new RangeError(`readRange: [${within}, ${within + length}) is not inside a ${bs}-byte block`);
    }
    if (!(Number.isInteger(intoOffset) && intoOffset >= 0 && intoOffset + length <= into.length)) {
      throw new RangeError(`readRange: ${length} bytes do not fit at offset ${intoOffset} of a ${into.length}-byte buffer`);
    }
    const data = await this.readBlock(block);
    data.copy(into, intoOffset, within, within + length);
  }

  /**
   * Append records as one batch: one positional write, then fdatasync. Calls
   * queue behind each other, so a batch never starts before the previous
   * batch's fdatasync completed. A block already in the log (or twice in the
   * batch), a wrong data length or a block outside the partition is a bug and
   * rejects without writing. After an I/O failure the log refuses further
   * appends: what reached the file is unknown until a reopen recovers it.
   */
  appendBatch(records: ChangeLogRecord[]): Promise<void> {
    return this.enqueue(records, false).then(() => undefined);
  }

  /**
   * Append every record of `src` whose block `dst` lacks, in batches of about
   * 8 MiB; returns how many were appended. Idempotent: after a crash mid-merge,
   * running it again (on the recovered dst) appends only what is still missing.
   * Records read from src are crc-checked, so a damaged src fails the merge
   * with an IntegrityError instead of spreading bad data.
   */
  static async mergeFrom(dst: ChangeLog, src: ChangeLog): Promise<number> {
    if (dst === src) throw new Error('mergeFrom: source and destination are the same log');
    const a = dst.header;
    const b = src.header;
    if (a.blockSize !== b.blockSize || a.partitionId !== b.partitionId || a.fingerprint !== b.fingerprint) {
      throw new Error(`mergeFrom: ${src.path} and ${dst.path} belong to different partitions or volumes`);
    }
    const rs = src.recordSize;
    const perBatch = Math.max(1, Math.floor(CHUNK_BYTES / rs));
    const srcCount = src.count;
    let moved = 0;
    let slot = 0;
    while (slot < srcCount) {
      // Gather up to perBatch missing records as runs of consecutive slots, one read per run.
      const runs: { first: number; n: number }[] = [];
      let gathered = 0;
      for (; slot < srcCount && gathered < perBatch; slot++) {
        if (dst.has(src.index.blockAt(slot))) continue;
        const last = runs[runs.length - 1];
        if (last && last.first + last.n === slot) last.n++;
        else runs.push({ first: slot, n: 1 });
        gathered++;
      }
      if (gathered === 0) break;
      const records: ChangeLogRecord[] = [];
      for (const run of runs) {
        const buf = Buffer.allocUnsafe(run.n * rs);
        const off = src.offsetOf(run.first);
        const got = await readAll(src.handle(), buf, off);
        for (let i = 0; i < run.n; i++) {
          const at = i * rs;
          const recOff = off + at;
          if (got < at + rs) throw new IntegrityError(`${src.path} at offset ${off + got}: record cut short (file truncated after open?)`);
          const block = src.index.blockAt(run.first + i);
          const data = buf.subarray(at + RECORD_HEADER_SIZE, at + rs);
          src.checkRecord(buf, at, data, recOff, block);
          records.push({ block, data });
        }
      }
      // skipPresent: a block dst gained meanwhile keeps dst's copy (the older view wins).
      moved += await dst.enqueue(records, true);
    }
    return moved;
  }

  /** Full scan: re-check the file header, the length and every record's header and crc. Never throws for damage; I/O errors pass through. */
  async verify(): Promise<VerifyResult> {
    const fh = this.handle();
    const problems: { offset: number; message: string }[] = [];
    let bytesRead = 0;
    const hb = Buffer.alloc(CLOG_HEADER_SIZE);
    const hn = (await fh.read(hb, 0, CLOG_HEADER_SIZE, 0)).bytesRead;
    bytesRead += hn;
    try {
      const { header, crc } = decodeChangeLogHeader(hb.subarray(0, hn), this.path);
      if (crc !== this.headerCrc || !sameHeader(header, this.header)) {
        problems.push({ offset: 0, message: `${this.path} at offset 0: change log header changed since the log was opened` });
      }
    } catch (e) {
      if (!(e instanceof IntegrityError)) throw e;
      problems.push({ offset: 0, message: e.message });
    }
    const count = this.count;
    const expectedEnd = this.offsetOf(count);
    const size = (await fh.stat()).size;
    if (size !== this.length) {
      problems.push({ offset: Math.min(size, this.length), message: `${this.path} at offset ${Math.min(size, this.length)}: file is ${size} bytes, expected ${this.length}` });
    }
    const rs = this.recordSize;
    const perChunk = Math.max(1, Math.floor(CHUNK_BYTES / rs));
    const buf = Buffer.allocUnsafe(perChunk * rs);
    let prevBatch = 0;
    for (let first = 0; first < count; first += perChunk) {
      const n = Math.min(perChunk, count - first);
      const off = this.offsetOf(first);
      const got = await readAll(fh, buf.subarray(0, n * rs), off);
      bytesRead += got;
      for (let i = 0; i < n; i++) {
        const at = i * rs;
        const recOff = off + at;
        if (got < at + rs) {
          problems.push({ offset: recOff, message: `${this.path} at offset ${recOff}: record cut short (file ends at ${off + got}, records end at ${expectedEnd})` });
          return { bytesRead, problems };
        }
        const sh = parseSlotHeader(buf, at, this.blockCount);
        const expected = this.index.blockAt(first + i);
        const fail = (m: string) => problems.push({ offset: recOff, message: `${this.path} at offset ${recOff}: ${m}` });
        if (!sh.valid) {
          fail(sh.why);
          continue;
        }
        if (sh.block !== expected) fail(`record holds block ${sh.block}, index says ${expected}`);
        if (sh.batch !== prevBatch && sh.batch !== prevBatch + 1) fail(`batch ${sh.batch} follows batch ${prevBatch}`);
        prevBatch = sh.batch;
        const data = buf.subarray(at + RECORD_HEADER_SIZE, at + rs);
        const stored = buf.readUInt32LE(at + RO_CRC);
        const computed = recordCrc(buf, at, data);
        if (stored !== computed) fail(`record crc mismatch (stored ${hex32(stored)}, computed ${hex32(computed)})`);
      }
    }
    return { bytesRead, problems };
  }

  /** Wait for queued appends to settle, then close. Idempotent. */
  async close(): Promise<void> {
    await this.queue;
    const fh = this.fh;
    this.fh = undefined;
    if (fh) await fh.close();
  }

  // --- internals -------------------------------------------------------------

  private handle(): FileHandle {
    if (!this.fh) throw new Error(`change log ${this.path} is closed`);
    return this.fh;
  }

  private offsetOf(slot: number): number {
    return CLOG_HEADER_SIZE + slot * this.recordSize;
  }

  private slotOf(block: number): number {
    const slot = this.index.get(block);
    if (slot < 0) throw new Error(`block ${block} is not in change log ${this.path}`);
    return slot;
  }

  /** Check a record read from disk (header at hdr[hdrAt..], data separate) against its crc and the expected block. */
  private checkRecord(hdr: Buffer, hdrAt: number, data: Buffer, off: number, block: number): void {
    const bad = (m: string) => new IntegrityError(`${this.path} at offset ${off}: record of block ${block}: ${m}`);
    if (hdr.readUInt32LE(hdrAt + RO_MAGIC) !== RECORD_MAGIC) throw bad('bad record magic');
    const stored = hdr.readUInt32LE(hdrAt + RO_CRC);
    const computed = recordCrc(hdr, hdrAt, data);
    if (stored !== computed) throw bad(`crc mismatch (stored ${hex32(stored)}, computed ${hex32(computed)})`);
    const onDisk = readU64(hdr, hdrAt + RO_BLOCK);
    if (onDisk !== block) throw bad(`record holds block ${onDisk}`);
  }

  /** Queue one batch; returns the number of records written. */
  private enqueue(records: ChangeLogRecord[], skipPresent: boolean): Promise<number> {
    const run = this.queue.then(() => this.writeBatch(records, skipPresent));
    this.queue = run.catch(() => undefined);
    return run;
  }

  private async writeBatch(input: ChangeLogRecord[], skipPresent: boolean): Promise<number> {
    const fh = this.handle();
    if (this.readOnly) throw new Error(`change log ${this.path} is open read-only`);
    if (this.failure) {
      throw new OperationError(`change log ${this.path} is unusable after an earlier write failure (${this.failure.message}); reopen it to recover`);
    }
    const bs = this.header.blockSize;
    const seen = new Set<number>();
    const records: ChangeLogRecord[] = [];
    for (const r of input) {
      if (!Number.isSafeInteger(r.block) || r.block < 0 || r.block >= this.blockCount) {
        throw new Error(`appendBatch(${this.path}): block ${r.block} is outside the partition`);
      }
      if (!Buffer.isBuffer(r.data) || r.data.length !== bs) {
        throw new Error(`appendBatch(${this.path}): block ${r.block}: data must be exactly ${bs} bytes (got ${r.data?.length})`);
      }
      if (seen.has(r.block)) throw new Error(`appendBatch(${this.path}): block ${r.block} appears twice in one batch`);
      seen.add(r.block);
      if (this.index.has(r.block)) {
        if (skipPresent) continue;
        throw new Error(`appendBatch(${this.path}): block ${r.block} is already logged`);
      }
      records.push(r);
    }
    if (records.length === 0) return 0;
    const batch = this.nextBatch;
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
    const pos = this.length;
    try {
      await writeAll(fh, iov, pos);
      await fh.datasync();
    } catch (e) {
      this.failure = e as Error;
      throw e;
    }
    for (const r of records) this.index.add(r.block);
    this.length = pos + records.length * this.recordSize;
    this.nextBatch = batch + 1;
    return records.length;
  }
}

function checkExpect(h: ChangeLogHeader, e: ChangeLogExpect, file: string): void {
  const bad = (off: number, what: string, got: unknown, want: unknown) =>
    new IntegrityError(`${file} at offset ${off}: change log ${what} is ${JSON.stringify(got)}, expected ${JSON.stringify(want)}`);
  if (h.snapshotId !== e.snapshotId) throw bad(HO_SNAPSHOT_ID, 'snapshot id', h.snapshotId, e.snapshotId);
  if (h.blockSize !== e.blockSize) throw bad(HO_BLOCK_SIZE, 'block size', h.blockSize, e.blockSize);
  if (h.fingerprint !== e.fingerprint.toLowerCase()) throw bad(HO_FINGERPRINT, 'volume fingerprint', h.fingerprint, e.fingerprint);
  if (h.partitionId !== e.partitionId) throw bad(HO_ID, 'partition id', h.partitionId, e.partitionId);
}

function sameHeader(a: ChangeLogHeader, b: ChangeLogHeader): boolean {
  return (
    a.snapshotId === b.snapshotId &&
    a.partitionId === b.partitionId &&
    a.blockSize === b.blockSize &&
    a.fingerprint === b.fingerprint &&
    a.createdAtMs === b.createdAtMs
  );
}

/**
 * Read every record header, decide where the valid log ends and build the
 * index. See docs/formats.md "Recovery" for the rules implemented here.
 */
async function scanRecords(
  fh: FileHandle,
  path: string,
  blockSize: number,
  size: number,
  o: ChangeLogOpenOptions,
): Promise<{ index: BlockIndex; lastBatch: number }> {
  const rs = RECORD_HEADER_SIZE + blockSize;
  const body = size - CLOG_HEADER_SIZE;
  const nSlots = Math.floor(body / rs);
  const partial = body % rs;
  const at = (slot: number) => CLOG_HEADER_SIZE + slot * rs;
  const err = (off: number, m: string) => new IntegrityError(`${path} at offset ${off}: ${m}`);

  if (o.cleanClose) {
    if (o.expectedLength !== undefined && size !== o.expectedLength) {
      throw err(Math.min(size, o.expectedLength), `file is ${size} bytes, but ${o.expectedLength} were recorded when it was last closed cleanly`);
    }
    if (partial !== 0) throw err(at(nSlots), `partial record of ${partial} bytes at the end of a cleanly closed log`);
  }

  const index = new BlockIndex(nSlots);
  // Prefix state: slots [0, damage) are header-valid and form the log.
  let damage = -1; // first invalid slot, -1 while none
  let damageWhy = '';
  let prevBatch = 0;
  let batchStart = 0; // first slot of batch prevBatch: records of a batch are contiguous
  // Tail state after the damage: every header-valid slot must carry one batch number.
  let tailBatch = 0;
  let tailSlot = -1;

  await forEachSlotHeader(fh, nSlots, rs, (slot, buf, bufAt) => {
    const sh = parseSlotHeader(buf, bufAt, o.blockCount);
    if (damage < 0) {
      if (!sh.valid) {
        if (o.cleanClose) throw err(at(slot), `${sh.why} in a cleanly closed log`);
        damage = slot;
        damageWhy = sh.why;
        return;
      }
      if (sh.batch !== prevBatch && sh.batch !== prevBatch + 1) {
        throw err(at(slot), `batch ${sh.batch} follows batch ${prevBatch} (batches are consecutive from 1)`);
      }
      if (sh.batch !== prevBatch) batchStart = slot;
      prevBatch = sh.batch;
      if (index.has(sh.block)) throw err(at(slot), `block ${sh.block} is logged twice (first at offset ${at(index.get(sh.block))})`);
      index.add(sh.block);
      return;
    }
    if (!sh.valid) return;
    if (tailSlot < 0) {
      tailBatch = sh.batch;
      tailSlot = slot;
    } else if (sh.batch !== tailBatch) {
      throw err(at(damage), `${damageWhy}, followed by records of batches ${tailBatch} (offset ${at(tailSlot)}) and ${sh.batch} (offset ${at(slot)}): damage before the newest batch, not a torn append`);
    }
  });

  if (damage >= 0 && tailSlot >= 0 && (tailBatch < prevBatch || tailBatch > prevBatch + 1)) {
    // Valid records of an older batch (or a batch after a missing one) behind
    // the damage: the damaged slot held data that was already durable.
    throw err(at(damage), `${damageWhy}, followed by a record of batch ${tailBatch} at offset ${at(tailSlot)} while the log before it reached batch ${prevBatch}: damage inside synced data, not a torn append`);
  }

  let lastBatch = prevBatch;
  if (!o.cleanClose) {
    // The newest batch B may be torn inside its data even where its headers
    // landed: check the data crc of B's records that survived the header scan.
    const newest = Math.max(prevBatch, tailBatch);
    if (newest === prevBatch && index.size > 0) {
      // Batches ascend, so B's surviving records are the last ones of the prefix.
      const keep = await firstTornRecord(fh, batchStart, index.size, rs, index);
      if (keep < index.size) {
        index.truncate(keep);
        // Dropping all of B leaves the previous batch (consecutive numbering) as the last one.
        lastBatch = keep > batchStart ? prevBatch : prevBatch - 1;
      }
    }
    const finalLength = at(index.size);
    if (o.expectedLength !== undefined && finalLength < o.expectedLength) {
      throw err(finalLength, `after dropping a torn tail the log is ${finalLength} bytes, shorter than the ${o.expectedLength} recorded at its last clean close`);
    }
  }
  return { index, lastBatch };
}

/**
 * Call visit(slot, buf, at) with each slot's 32-byte header at buf[at..].
 * Small records are read in large contiguous chunks (headers are close
 * together); large ones with a window of parallel 32-byte positional reads
 * (reading their data too would multiply the I/O by blockSize/32).
 */
async function forEachSlotHeader(fh: FileHandle, nSlots: number, rs: number, visit: (slot: number, buf: Buffer, at: number) => void): Promise<void> {
  if (nSlots === 0) return;
  if (rs <= 16 * 1024 + RECORD_HEADER_SIZE) {
    const per = Math.max(1, Math.floor(CHUNK_BYTES / rs));
    const buf = Buffer.allocUnsafe(Math.min(per, nSlots) * rs);
    for (let first = 0; first < nSlots; first += per) {
      const n = Math.min(per, nSlots - first);
      // The last slot needs only its header, not its data.
      const want = (n - 1) * rs + RECORD_HEADER_SIZE;
      const got = await readAll(fh, buf.subarray(0, want), CLOG_HEADER_SIZE + first * rs);
      if (got < want) throw new Error(`change log shrank while being opened`);
      for (let i = 0; i < n; i++) visit(first + i, buf, i * rs);
    }
    return;
  }
  const buf = Buffer.allocUnsafe(HEADER_READ_WINDOW * RECORD_HEADER_SIZE);
  for (let first = 0; first < nSlots; first += HEADER_READ_WINDOW) {
    const n = Math.min(HEADER_READ_WINDOW, nSlots - first);
    const reads: Promise<{ bytesRead: number }>[] = [];
    for (let i = 0; i < n; i++) {
      reads.push(fh.read(buf, i * RECORD_HEADER_SIZE, RECORD_HEADER_SIZE, CLOG_HEADER_SIZE + (first + i) * rs));
    }
    const results = await Promise.all(reads);
    for (let i = 0; i < n; i++) {
      if (results[i].bytesRead < RECORD_HEADER_SIZE) throw new Error(`change log shrank while being opened`);
      visit(first + i, buf, i * RECORD_HEADER_SIZE);
    }
  }
}

/** First slot in [first, count) whose data crc fails, or count. */
async function firstTornRecord(fh: FileHandle, first: number, count: number, rs: number, index: BlockIndex): Promise<number> {
  const per = Math.max(1, Math.floor(CHUNK_BYTES / rs));
  const buf = Buffer.allocUnsafe(Math.min(per, count - first) * rs);
  for (let s = first; s < count; s += per) {
    const n = Math.min(per, count - s);
    const got = await readAll(fh, buf.subarray(0, n * rs), CLOG_HEADER_SIZE + s * rs);
    for (let i = 0; i < n; i++) {
      const at = i * rs;
      if (got < at + rs) return s + i;
      const data = buf.subarray(at + RECORD_HEADER_SIZE, at + rs);
      if (buf.readUInt32LE(at + RO_CRC) !== recordCrc(buf, at, data)) return s + i;
      if (readU64(buf, at + RO_BLOCK) !== index.blockAt(s + i)) return s + i;
    }
  }
  return count;
}

/** Positional read until `buf` is full or end of file; returns bytes read. */
async function readAll(fh: FileHandle, buf: Buffer, pos: number): Promise<number> {
  let done = 0;
  while (done < buf.length) {
    const { bytesRead } = await fh.read(buf, done, buf.length - done, pos + done);
    if (bytesRead === 0) break;
    done += bytesRead;
  }
  return done;
}

/** readv until all buffers are full or end of file; returns bytes read. */
async function readvAll(fh: FileHandle, bufs: Buffer[], pos: number): Promise<number> {
  const total = bufs.reduce((s, b) => s + b.length, 0);
  const { bytesRead } = await fh.readv(bufs, pos);
  if (bytesRead === total || bytesRead === 0) return bytesRead;
  // Short read (rare on regular files): fall back to finishing buffer by buffer.
  let done = bytesRead;
  let skip = bytesRead;
  for (const b of bufs) {
    if (skip >= b.length) {
      skip -= b.length;
      continue;
    }
    const got = await readAll(fh, b.subarray(skip), pos + done);
    done += got;
    if (got < b.length - skip) break;
    skip = 0;
  }
  return done;
}

/** Positional gather-write of all buffers (retrying short writes). */
async function writeAll(fh: FileHandle, bufs: Buffer[], pos: number): Promise<void> {
  let rest = bufs;
  let at = pos;
  while (rest.length > 0) {
    const { bytesWritten } = await fh.writev(rest, at);
    at += bytesWritten;
    let skip = bytesWritten;
    const next: Buffer[] = [];
    for (const b of rest) {
      if (skip >= b.length) {
        skip -= b.length;
        continue;
      }
      next.push(skip > 0 ? b.subarray(skip) : b);
      skip = 0;
    }
    if (next.length > 0 && bytesWritten === 0) throw new Error('writev made no progress');
    rest = next;
  }
}
