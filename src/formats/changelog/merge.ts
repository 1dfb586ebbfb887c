// Merging one change log into another (delete of a snapshot, design §5):
// every record of `src` whose block `dst` lacks is appended to `dst`.
import { IntegrityError } from '../../errors.js';
import { CHUNK_BYTES, RECORD_HEADER_SIZE, checkRecord, type ChangeLogHeader, type ChangeLogRecord } from './codec.js';

/** What a merge uses of an open log (log.ts's ChangeLog; an interface here, so the two modules form no cycle). */
export interface MergeableLog {
  readonly path: string;
  readonly header: ChangeLogHeader;
  readonly recordSize: number;
  readonly count: number;
  has(block: number): boolean;
  offsetOf(slot: number): number;
  blockAtSlot(slot: number): number;
  readSlots(buf: Buffer, first: number): Promise<number>;
  appendMissing(records: ChangeLogRecord[]): Promise<number>;
}

/**
 * Append every record of `src` whose block `dst` lacks, in batches of about
 * 8 MiB; returns how many were appended. Idempotent: after a crash mid-merge,
 * running it again (on the recovered dst) appends only what is still missing.
 * Records read from src are crc-checked, so a damaged src fails the merge
 * with an IntegrityError instead of spreading bad data.
 */
export async function mergeLogs(dst: MergeableLog, src: MergeableLog): Promise<number> {
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
      if (dst.has(src.blockAtSlot(slot))) continue;
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
      const got = await src.readSlots(buf, run.first);
      for (let i = 0; i < run.n; i++) {
        const at = i * rs;
        const recOff = off + at;
        if (got < at + rs) throw new IntegrityError(`${src.path} at offset ${off + got}: record cut short (file truncated after open?)`);
        const block = src.blockAtSlot(run.first + i);
        const data = buf.subarray(at + RECORD_HEADER_SIZE, at + rs);
        checkRecord(src.path, buf, at, data, recOff, block);
        records.push({ block, data });
      }
    }
    // skipPresent: a block dst gained meanwhile keeps dst's copy (the older view wins).
    moved += await dst.appendMissing(records);
  }
  return moved;
}
