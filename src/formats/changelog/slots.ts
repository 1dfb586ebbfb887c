// Reading a change log in record (slot) order, many records per read: for a
// pass over every record of a log (restore of the newest snapshot writes each
// logged block back in place), one large positional read replaces a read per
// block, and the data stays in the read buffer (views, no copy).
import { IntegrityError } from '../../errors.js';
import { RECORD_HEADER_SIZE, checkRecord } from './codec.js';

/** What reading slots needs of an open log (log.ts's ChangeLog; an interface, so the modules form no cycle). */
export interface SlotReadableLog {
  readonly path: string;
  readonly recordSize: number;
  readonly count: number;
  offsetOf(slot: number): number;
  blockAtSlot(slot: number): number;
  readSlots(buf: Buffer, first: number): Promise<number>;
}

export interface CheckedSlots {
  /** Block of each record read, in slot order. */
  blocks: number[];
  /** Each record's data: a view into the read buffer. */
  data: Buffer[];
}

/**
 * Records [first, first + n) read with one positional read into `buf` (at
 * least n * recordSize bytes), each checked (magic, crc, the block the index
 * expects there) before its data is handed out, so a damaged record fails
 * with an IntegrityError naming the file and offset instead of being used.
 */
export async function readCheckedSlots(log: SlotReadableLog, first: number, n: number, buf: Buffer): Promise<CheckedSlots> {
  const rs = log.recordSize;
  if (!(Number.isInteger(first) && Number.isInteger(n) && first >= 0 && n >= 0 && first + n <= log.count)) {
    throw new RangeError(`readCheckedSlots: slots [${first}, ${first + n}) are not inside ${log.path}'s ${log.count} records`);
  }
  if (buf.length < n * rs) throw new RangeError(`readCheckedSlots: ${n} records of ${rs} bytes do not fit a ${buf.length}-byte buffer`);
  const view = buf.subarray(0, n * rs);
  const off = log.offsetOf(first);
  const got = await log.readSlots(view, first);
  const blocks: number[] = [];
  const data: Buffer[] = [];
  for (let i = 0; i < n; i++) {
    const at = i * rs;
    const block = log.blockAtSlot(first + i);
    if (got < at + rs) throw new IntegrityError(`${log.path} at offset ${off + got}: record of block ${block} is cut short (file truncated after open?)`);
    const d = view.subarray(at + RECORD_HEADER_SIZE, at + rs);
    checkRecord(log.path, view, at, d, off + at, block);
    blocks.push(block);
    data.push(d);
  }
  return { blocks, data };
}
