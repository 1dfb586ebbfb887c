// The change log (<partition>.clog): one per partition per snapshot, holding
// the OLD contents of blocks written after that snapshot. Byte layout,
// invariants and recovery rules are in docs/formats.md; codec.ts encodes and
// checks the bytes, recovery.ts decides where a log ends when it is opened,
// and this class is the open log: reads, appends, merge and verify.
//
// Records are fixed size so slot k's position is computed, never searched, and
// a torn append can only damage whole slots at the end of the file. Appends
// come in batches (one positional write, then fdatasync); the caller writes a
// block in place only after the batch logging its old content is durable, so
// on recovery after a crash the newest, possibly unsynced batch may be dropped
// without losing any snapshot's data.
// The descriptor comes from the process's pool (../fd-pool.ts), held per I/O.
import { unlink } from 'node:fs/promises';
import { IntegrityError, OperationError, errnoOf, fileError, namingFile } from '../../errors.js';
import { PRIVATE_FILE_MODE } from '../private-file.js';
import { readFully, readvFully, writevFully } from '../../positional-io.js';
import { BlockIndex } from '../block-index.js';
import { changeLogFds, type PooledFile } from '../fd-pool.js';
import {
  CHUNK_BYTES,
  CLOG_HEADER_SIZE,
  RECORD_HEADER_SIZE,
  checkExpect,
  checkRecord,
  decodeChangeLogHeader,
  encodeBatch,
  encodeChangeLogHeader,
  type ChangeLogHeader,
  type ChangeLogOpenOptions,
  type ChangeLogRecord,
  type VerifyResult,
} from './codec.js';
import { scanRecords, verifyLog } from './recovery.js';
import { mergeLogs } from './merge.js';
import { maybeFault } from '../../faults.js';

export class ChangeLog {
  readonly path: string;
  readonly header: ChangeLogHeader;
  readonly headerCrc: number;
  readonly readOnly: boolean;

  /** The pooled descriptor: acquired around every I/O, never closed while one is in flight. */
  private readonly file: PooledFile;
  private index: BlockIndex;
  readonly recordSize: number;
  private readonly blockCount: number;
  private length: number;
  private nextBatch: number;
  /** Tail of the append queue: each batch starts after the previous one settled. */
  private queue: Promise<unknown> = Promise.resolve();
  /** Set while a failed append is not yet undone: the file may hold bytes beyond `length`. */
  private failure: Error | undefined;
  /** Bytes beyond the recorded clean length that a read-only open ignored (left on disk). */
  private readonly ignoredTail: number;

  private constructor(args: {
    path: string;
    file: PooledFile;
    header: ChangeLogHeader;
    headerCrc: number;
    index: BlockIndex;
    blockCount: number;
    length: number;
    nextBatch: number;
    readOnly: boolean;
    ignoredTail?: number;
  }) {
    this.path = args.path;
    this.file = args.file;
    this.header = args.header;
    this.headerCrc = args.headerCrc;
    this.index = args.index;
    this.blockCount = args.blockCount;
    this.length = args.length;
    this.nextBatch = args.nextBatch;
    this.readOnly = args.readOnly;
    this.ignoredTail = args.ignoredTail ?? 0;
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
    const fh = await changeLogFds().openFile(path, 'wx+', PRIVATE_FILE_MODE);
    let id: { dev: number; ino: number };
    try {
      // The mode given to open is masked by the umask: the log is private whatever it is.
      await fh.chmod(PRIVATE_FILE_MODE);
      await writevFully(fh, [bytes], 0);
      await fh.datasync();
      id = await fh.stat();
    } catch (e) {
      await fh.close().catch(() => undefined);
      // O_EXCL made the file ours; a half-written log must not be left behind.
      await unlink(path).catch(() => undefined);
      throw fileError(path, e);
    }
    return new ChangeLog({
      path,
      file: changeLogFds().adopt(path, 'r+', fh, id, 'change log'),
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
    const fh = await changeLogFds().openFile(path, readOnly ? 'r' : 'r+');
    try {
      const st = await fh.stat();
      const hb = Buffer.alloc(CLOG_HEADER_SIZE);
      const bytesRead = await readFully(fh, hb, 0, CLOG_HEADER_SIZE, 0);
      const { header, crc } = decodeChangeLogHeader(hb.subarray(0, bytesRead), path);
      checkExpect(header, o.expect, path);
      const scan = await scanRecords(fh, path, header.blockSize, st.size, o);
      const finalLength = CLOG_HEADER_SIZE + scan.index.size * (RECORD_HEADER_SIZE + header.blockSize);
      if (finalLength < st.size && !readOnly) {
        await fh.truncate(finalLength);
        await fh.datasync();
      }
      // Scanned: the descriptor goes to the pool, which may close it at once (opening N logs holds at most the bound).
      return new ChangeLog({
        path,
        file: changeLogFds().adopt(path, readOnly ? 'r' : 'r+', fh, st, 'change log'),
        header,
        headerCrc: crc,
        index: scan.index,
        blockCount: o.blockCount,
        length: finalLength,
        nextBatch: scan.lastBatch + 1,
        readOnly,
        ignoredTail: readOnly ? scan.ignoredTail : 0,
      });
    } catch (e) {
      await fh.close().catch(() => undefined);
      throw fileError(path, e);
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
    const n = await namingFile(this.path, this.file.use((fh) => readvFully(fh, [hdr, target], off)));
    if (n < this.recordSize) throw new IntegrityError(`${this.path} at offset ${off + n}: record of block ${block} is cut short (file truncated after open?)`);
    checkRecord(this.path, hdr, 0, target, off, block);
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
   * rejects without writing. A batch whose write or fdatasync fails is undone
   * (the file is cut back to the last durable batch) and rejects with an
   * OperationError carrying the errno (ENOSPC or EIO); appends resume once
   * the cut is durable (docs/formats.md "Appends").
   */
  appendBatch(records: ChangeLogRecord[]): Promise<void> {
    return this.enqueue(records, false).then(() => undefined);
  }

  /** Append every record of `src` whose block `dst` lacks (merge.ts); returns how many. */
  static mergeFrom(dst: ChangeLog, src: ChangeLog): Promise<number> {
    return mergeLogs(dst, src);
  }

  /** For merge.ts: block of record slot `slot`; `n` whole records from slot `first` into buf (bytes read). */
  blockAtSlot(slot: number): number {
    return this.index.blockAt(slot);
  }

  readSlots(buf: Buffer, first: number): Promise<number> {
    return namingFile(this.path, this.file.use((fh) => readFully(fh, buf, 0, buf.length, this.offsetOf(first))));
  }

  /** For merge.ts: append as one batch, skipping blocks already logged (the older view wins). */
  appendMissing(records: ChangeLogRecord[]): Promise<number> {
    return this.enqueue(records, true);
  }

  /** Full scan: re-check the file header, the length and every record's header and crc. Never throws for damage; I/O errors pass through. */
  async verify(): Promise<VerifyResult> {
    return namingFile(this.path, this.file.use((fh) => verifyLog(fh, {
      path: this.path,
      header: this.header,
      headerCrc: this.headerCrc,
      // A read-only open leaves an undone append's tail on disk (docs/formats.md "Recovery rules on open").
      fileLength: this.length + this.ignoredTail,
      blockCount: this.blockCount,
      index: this.index,
    })));
  }

  /**
   * Whether the file may hold bytes beyond byteLength: an append failed and
   * cutting it back has not succeeded yet (close tries once more). The
   * partition state records such logs, so the next open drops the tail.
   */
  get tailPending(): boolean {
    return this.failure !== undefined;
  }

  /**
   * Empty the log down to its header (docs/formats.md "The cut"): the caller
   * made every logged block durable in place with the logged bytes (restore
   * of the newest snapshot). Runs after queued appends; the index empties
   * first, so reads started later take the source; `drained` resolves when
   * the reads started before have ended. If the truncate or its fdatasync
   * fails, appends wait for a cut that succeeds (tailPending).
   */
  cut(drained?: () => Promise<unknown>): Promise<void> {
    const run = this.queue.then(async () => {
      if (this.file.closed || this.readOnly) throw new Error(`change log ${this.path} is closed or read-only`);
      if (this.length === CLOG_HEADER_SIZE && !this.failure) return;
      this.index = new BlockIndex();
      this.length = CLOG_HEADER_SIZE;
      this.nextBatch = 1;
      // Reads that looked a block up in the old index may still be reading its record.
      await drained?.();
      try {
        await this.file.use(async (fh) => {
          await fh.truncate(CLOG_HEADER_SIZE);
          maybeFault('restore-mid-cut'); // test-only: truncated, not yet fdatasynced
          await fh.datasync();
        });
        this.failure = undefined;
      } catch (e) {
        this.failure = e as Error;
        throw new OperationError(`${this.path}: cutting the log to its ${CLOG_HEADER_SIZE}-byte header failed: ${(e as Error).message}`, errnoOf(e));
      }
    });
    this.queue = run.catch(() => undefined);
    return run;
  }

  /** Wait for queued appends to settle, then close. Idempotent. */
  async close(): Promise<void> {
    await this.queue;
    if (this.failure && !this.file.closed) await this.undoFailedAppend().catch(() => undefined);
    await namingFile(this.path, this.file.close());
  }

  /** Keep the descriptor open whatever the pool's bound (the partition's newest log, which takes the appends). */
  pin(on = true): void {
    this.file.pin(on);
  }

  // --- internals -------------------------------------------------------------

  offsetOf(slot: number): number {
    return CLOG_HEADER_SIZE + slot * this.recordSize;
  }

  private slotOf(block: number): number {
    const slot = this.index.get(block);
    if (slot < 0) throw new Error(`block ${block} is not in change log ${this.path}`);
    return slot;
  }

  /**
   * Cut the file back to the end of the last durable batch and make that
   * durable, after an append failed. Nothing of the failed batch is kept:
   * which of its pages reached the disk is unknown, and nothing was written
   * in place on the strength of it. Until this succeeds, appends are refused.
   */
  private async undoFailedAppend(): Promise<void> {
    const first = this.failure as Error;
    try {
      await this.file.use(async (fh) => {
        await fh.truncate(this.length);
        await fh.datasync();
      });
      this.failure = undefined;
    } catch (e) {
      throw new OperationError(
        `${this.path}: an append failed (${first.message}) and cutting the log back to its last good length ${this.length} failed too (${(e as Error).message}); ` +
          `appends resume once that succeeds, and the next open drops the tail`,
        errnoOf(first),
      );
    }
  }

  /** Queue one batch; returns the number of records written. */
  private enqueue(records: ChangeLogRecord[], skipPresent: boolean): Promise<number> {
    const run = this.queue.then(() => this.writeBatch(records, skipPresent));
    this.queue = run.catch(() => undefined);
    return run;
  }

  private async writeBatch(input: ChangeLogRecord[], skipPresent: boolean): Promise<number> {
    if (this.file.closed) throw new Error(`change log ${this.path} is closed`);
    if (this.readOnly) throw new Error(`change log ${this.path} is open read-only`);
    if (this.failure) await this.undoFailedAppend();
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
    const iov = encodeBatch(records, batch);
    const pos = this.length;
    try {
      await this.file.use(async (fh) => {
        await writevFully(fh, iov, pos);
        await fh.datasync();
      });
    } catch (e) {
      this.failure = e as Error;
      // Undo at once, so that a write after the failure (space freed) works;
      // if undoing fails, the next append retries it first.
      await this.undoFailedAppend().catch(() => undefined);
      throw new OperationError(`${this.path}: appending ${records.length} record(s) at offset ${pos} failed: ${(e as Error).message}`, errnoOf(e));
    }
    for (const r of records) this.index.add(r.block);
    this.length = pos + records.length * this.recordSize;
    this.nextBatch = batch + 1;
    return records.length;
  }
}
