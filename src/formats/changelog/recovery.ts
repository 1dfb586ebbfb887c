// Change-log recovery: the scan that decides, when a log is opened, where its
// valid records end (docs/formats.md "Recovery rules on open": a torn tail
// of the newest batch is dropped, damage to synced data is an integrity
// error), and verify's full re-read of every record.
import type { FileHandle } from 'node:fs/promises';
import { IntegrityError } from '../../errors.js';
import { readFully } from '../../positional-io.js';
import { BlockIndex } from '../block-index.js';
import {
  CHUNK_BYTES,
  CLOG_HEADER_SIZE,
  HEADER_READ_WINDOW,
  RECORD_HEADER_SIZE,
  RO_CRC,
  RO_BLOCK,
  hex32,
  parseSlotHeader,
  readU64,
  recordCrc,
  decodeChangeLogHeader,
  sameHeader,
  type ChangeLogHeader,
  type ChangeLogOpenOptions,
  type VerifyResult,
} from './codec.js';

/**
 * Read every record header, decide where the valid log ends and build the
 * index. See docs/formats.md "Recovery" for the rules implemented here.
 */
export async function scanRecords(
  fh: FileHandle,
  path: string,
  blockSize: number,
  size: number,
  o: ChangeLogOpenOptions,
): Promise<{ index: BlockIndex; lastBatch: number; ignoredTail: number }> {
  const rs = RECORD_HEADER_SIZE + blockSize;
  // Bytes beyond the length recorded at a clean close, in a log the writer
  // said it could not cut back after a failed append: never acknowledged, so
  // not part of the log.
  let ignoredTail = 0;
  const recorded = o.expectedLength;
  if (o.cleanClose && o.dropTail && recorded !== undefined && size > recorded && recorded >= CLOG_HEADER_SIZE && (recorded - CLOG_HEADER_SIZE) % rs === 0) {
    ignoredTail = size - recorded;
    size = recorded;
  }
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
      const keep = await firstTornRecord(fh, batchStart, index.size, rs, index, (off, block) => err(off, `record of block ${block} in the newest batch fails its crc, and the block's live copy does not match it either: the record was durable (the block was written in place after it) and was damaged since; a torn append would have left the live block as the record holds it. The log is left as it is`), o.liveBlock);
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
  return { index, lastBatch, ignoredTail };
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
      const got = await readFully(fh, buf, 0, want, CLOG_HEADER_SIZE + first * rs);
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

/**
 * First slot in [first, count) whose data crc fails, or count. With
 * liveBlock, a failing record whose header crc matches the live block instead
 * is a torn append (cut there); one that matches neither is damage.
 */
async function firstTornRecord(
  fh: FileHandle,
  first: number,
  count: number,
  rs: number,
  index: BlockIndex,
  damaged: (offset: number, block: number) => Error,
  liveBlock?: (block: number, out: Buffer) => Promise<void>,
): Promise<number> {
  const per = Math.max(1, Math.floor(CHUNK_BYTES / rs));
  const buf = Buffer.allocUnsafe(Math.min(per, count - first) * rs);
  for (let s = first; s < count; s += per) {
    const n = Math.min(per, count - s);
    const got = await readFully(fh, buf, 0, n * rs, CLOG_HEADER_SIZE + s * rs);
    for (let i = 0; i < n; i++) {
      const at = i * rs;
      if (got < at + rs) return s + i;
      const data = buf.subarray(at + RECORD_HEADER_SIZE, at + rs);
      if (readU64(buf, at + RO_BLOCK) !== index.blockAt(s + i)) return s + i;
      if (buf.readUInt32LE(at + RO_CRC) !== recordCrc(buf, at, data)) {
        if (liveBlock) {
          const block = index.blockAt(s + i);
          const live = Buffer.allocUnsafe(rs - RECORD_HEADER_SIZE);
          await liveBlock(block, live);
          if (buf.readUInt32LE(at + RO_CRC) !== recordCrc(buf, at, live)) throw damaged(CLOG_HEADER_SIZE + (s + i) * rs, block);
        }
        return s + i;
      }
    }
  }
  return count;
}

/**
 * ChangeLog.verify(): re-read the file header (it must be the one the log was
 * opened with), the file length and every record. Damage becomes a problem,
 * never a throw; I/O errors pass through.
 */
export async function verifyLog(
  fh: FileHandle,
  log: { path: string; header: ChangeLogHeader; headerCrc: number; fileLength: number; blockCount: number; index: BlockIndex },
): Promise<VerifyResult> {
  const { path } = log;
  const problems: { offset: number; message: string }[] = [];
  const hb = Buffer.alloc(CLOG_HEADER_SIZE);
  const hn = await readFully(fh, hb, 0, CLOG_HEADER_SIZE, 0);
  try {
    const { header, crc } = decodeChangeLogHeader(hb.subarray(0, hn), path);
    if (crc !== log.headerCrc || !sameHeader(header, log.header)) {
      problems.push({ offset: 0, message: `${path} at offset 0: change log header changed since the log was opened` });
    }
  } catch (e) {
    if (!(e instanceof IntegrityError)) throw e;
    problems.push({ offset: 0, message: e.message });
  }
  const size = (await fh.stat()).size;
  if (size !== log.fileLength) {
    const at = Math.min(size, log.fileLength);
    problems.push({ offset: at, message: `${path} at offset ${at}: file is ${size} bytes, expected ${log.fileLength}` });
  }
  const bytesRead = hn + (await verifyRecords(fh, path, log.header.blockSize, log.blockCount, log.index, problems));
  return { bytesRead, problems };
}

/**
 * verify()'s record pass: re-read the `count` records of an open log in slot
 * order and check each header, its batch order, its crc and that the slot
 * holds the block the index says. Damage becomes a problem, never a throw.
 */
async function verifyRecords(
  fh: FileHandle,
  path: string,
  blockSize: number,
  blockCount: number,
  index: BlockIndex,
  problems: { offset: number; message: string }[],
): Promise<number> {
  const count = index.size;
  const rs = RECORD_HEADER_SIZE + blockSize;
  const offsetOf = (slot: number) => CLOG_HEADER_SIZE + slot * rs;
  const expectedEnd = offsetOf(count);
  let bytesRead = 0;
  const perChunk = Math.max(1, Math.floor(CHUNK_BYTES / rs));
  const buf = Buffer.allocUnsafe(perChunk * rs);
  let prevBatch = 0;
  for (let first = 0; first < count; first += perChunk) {
    const n = Math.min(perChunk, count - first);
    const off = offsetOf(first);
    const got = await readFully(fh, buf, 0, n * rs, off);
    bytesRead += got;
    for (let i = 0; i < n; i++) {
      const at = i * rs;
      const recOff = off + at;
      if (got < at + rs) {
        problems.push({ offset: recOff, message: `${path} at offset ${recOff}: record cut short (file ends at ${off + got}, records end at ${expectedEnd})` });
        return bytesRead;
      }
      const sh = parseSlotHeader(buf, at, blockCount);
      const expected = index.blockAt(first + i);
      const fail = (m: string) => problems.push({ offset: recOff, message: `${path} at offset ${recOff}: ${m}` });
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
  return bytesRead;
}
