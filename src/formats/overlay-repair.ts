// `vsnap clone repair` on one overlay map (docs/decisions.md "Accepting the
// loss of a damaged clone map record"): a map the open refuses as damaged
// (docs/formats.md "Open and recovery") is rewritten with its valid records
// only. Every record it drops is returned first, so the command can say what
// is lost: the blocks they named read as the clone's snapshot again.
//
// The rewrite is in place: the valid records after the first bad one are
// written over it, then the file is cut and fdatasynced. A crash midway
// leaves each 512-byte sector old or new, and a new sector only holds valid
// records (copies of later ones, a repeat being tolerated), so the map is
// never worse than before and a second repair finishes the job.
import fs from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import { IntegrityError, namingFile, operationErrorFrom } from '../errors.js';
import { readFully, writeFully } from '../positional-io.js';
import { MAP_RECORD_SIZE, OVERLAY_HEADER_SIZE, checkOverlayHeader, mapRecordFault, scanMapRecords, type BadMapRecord, type OverlayHeader } from './overlay.js';

export interface MapRepair {
  file: string;
  /** Whole records dropped (invalid), in file order. */
  dropped: BadMapRecord[];
  /** Valid records after the first bad one, kept (moved up). */
  kept: number;
  /** Bytes of a partial last record, dropped (a torn append never acknowledged). */
  tornBytes: number;
  /** Size of the map before and after. */
  sizeBefore: number;
  sizeAfter: number;
}

/** Read a map, check its header; undefined when the map needs no repair (no damage; a torn tail is the open's to cut). */
async function plan(fh: FileHandle, file: string, want: OverlayHeader): Promise<{ repair: MapRepair; records: Buffer; from: number } | undefined> {
  const size = (await namingFile(file, fh.stat())).size;
  const hdr = Buffer.alloc(OVERLAY_HEADER_SIZE);
  const n = await namingFile(file, readFully(fh, hdr, 0, hdr.length, 0));
  try {
    checkOverlayHeader('map', hdr.subarray(0, n), file, want);
  } catch (err) {
    throw new IntegrityError(`${(err as Error).message}; the records under a damaged header cannot be trusted: vsnap clone reset is the repair (it empties the clone)`);
  }
  const records = Buffer.alloc(size - OVERLAY_HEADER_SIZE);
  await namingFile(file, readFully(fh, records, 0, records.length, OVERLAY_HEADER_SIZE));
  const scan = scanMapRecords(records, want.blockCount);
  if (!scan.damage) return undefined;
  const whole = Math.floor(records.length / MAP_RECORD_SIZE);
  const dropped: BadMapRecord[] = [];
  let kept = 0;
  for (let k = scan.validBytes / MAP_RECORD_SIZE; k < whole; k++) {
    const fault = mapRecordFault(records, k * MAP_RECORD_SIZE, want.blockCount);
    if (fault === undefined) kept++;
    else dropped.push({ offset: OVERLAY_HEADER_SIZE + k * MAP_RECORD_SIZE, fault, block: records.readBigUInt64LE(k * MAP_RECORD_SIZE + 8) });
  }
  const tornBytes = records.length - whole * MAP_RECORD_SIZE;
  const sizeAfter = OVERLAY_HEADER_SIZE + scan.validBytes + kept * MAP_RECORD_SIZE;
  return { repair: { file, dropped, kept, tornBytes, sizeBefore: size, sizeAfter }, records, from: scan.validBytes };
}

/**
 * What repairing one map drops (dryRun), or drop it: undefined when the map
 * has no damage. A damaged header is an IntegrityError (reset is its repair).
 */
export async function repairMap(file: string, want: OverlayHeader, o: { dryRun: boolean }): Promise<MapRepair | undefined> {
  let st: fs.Stats;
  try {
    st = await fs.promises.stat(file);
  } catch (err) {
    throw operationErrorFrom(err as NodeJS.ErrnoException, file);
  }
  if (!st.isFile()) throw new IntegrityError(`${file}: not a regular file; vsnap clone reset (after moving it out of the store) is the repair`);
  const fh = await namingFile(file, fs.promises.open(file, o.dryRun ? 'r' : 'r+'));
  try {
    const p = await plan(fh, file, want);
    if (!p || o.dryRun) return p?.repair;
    const keep: Buffer[] = [];
    for (let at = p.from; at + MAP_RECORD_SIZE <= p.records.length; at += MAP_RECORD_SIZE) {
      if (mapRecordFault(p.records, at, want.blockCount) === undefined) keep.push(p.records.subarray(at, at + MAP_RECORD_SIZE));
    }
    const tail = Buffer.concat(keep);
    if (tail.length) await namingFile(file, writeFully(fh, tail, 0, tail.length, OVERLAY_HEADER_SIZE + p.from));
    await namingFile(file, fh.truncate(p.repair.sizeAfter));
    await namingFile(file, fh.datasync());
    return p.repair;
  } finally {
    await fh.close();
  }
}
