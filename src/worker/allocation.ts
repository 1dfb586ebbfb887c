// Block status of one partition (NBD base:allocation, design.md §9), run in
// the worker that owns it, without reading any data:
//   - the live view: the backing files' holes (lseek SEEK_DATA/SEEK_HOLE,
//     src/io/sparse.ts), mapped from file to partition coordinates across the
//     partition's extents; a hole, or bytes beyond a file's end, read as zeroes.
//   - snapshot S_i: a block held by one of L_i..L_n is data (its old content
//     is in a log); any other block reads from the live source, so it follows
//     the source's allocation.
// Everything here is synchronous, on purpose: the source map and the logs are
// looked at in one event-loop turn, so no write can come between them. A
// block absent from every log has not been written in place since S_n (a
// write logs it first), so the source still holds what the snapshot reads.
import { mapPartitionRange, type MapExtent } from '../volume-map.js';
import { UsageError } from '../errors.js';
import { dataRuns, type DataRun } from '../io/sparse.js';
import type { HandleCache } from './extent-io.js';
import type { PartitionEngine } from './partition.js';

/** base:allocation flags: a hole that reads as zeroes. */
export const HOLE_ZERO = 3;

/** Runs per answer: the NBD layer sends at most 65536 extents, so a longer map is cut short (allowed). */
const MAX_RUNS = 65536;

export interface AllocationExtent {
  length: number;
  flags: number;
}

/** Append [start, end) to ascending runs, merging with the last one when they touch. */
function pushRun(runs: DataRun[], start: number, end: number): void {
  if (end <= start) return;
  const last = runs[runs.length - 1];
  if (last && start <= last.end) last.end = Math.max(last.end, end);
  else runs.push({ start, end });
}

/**
 * Data runs of the partition's source in [off, off + len), in partition
 * coordinates; `end` is how far the answer reaches (short of off + len only
 * when a very fragmented file gave MAX_RUNS runs).
 */
export function sourceDataRuns(extents: readonly MapExtent[], handles: HandleCache, off: number, len: number): { runs: DataRun[]; end: number } {
  const runs: DataRun[] = [];
  for (const s of mapPartitionRange(extents, off, len)) {
    const shift = off + s.rangeOffset - s.fileOffset; // file offset + shift = partition offset
    const room = MAX_RUNS - runs.length;
    const got = dataRuns(handles.get(s.path), s.path, s.fileOffset, s.fileOffset + s.length, room);
    for (const r of got) pushRun(runs, r.start + shift, r.end + shift);
    if (got.length >= room) return { runs, end: got[got.length - 1].end + shift };
  }
  return { runs, end: off + len };
}

/** Blocks in [first, last] held by any of these logs, ascending. */
function loggedBlocks(engine: PartitionEngine, from: number, first: number, last: number): number[] {
  const logs = engine.logs.slice(from).map((l) => l.log);
  const total = logs.reduce((a, l) => a + l.count, 0);
  // Walk whichever is smaller: the logs' entries or the blocks of the range.
  if (total < last - first + 1) {
    const set = new Set<number>();
    for (const l of logs) for (const b of l.blocks()) if (b >= first && b <= last) set.add(b);
    return [...set].sort((a, b) => a - b);
  }
  const out: number[] = [];
  for (let b = first; b <= last; b++) if (logs.some((l) => l.has(b))) out.push(b);
  return out;
}

/** The union of two ascending run lists. */
function union(a: DataRun[], b: DataRun[]): DataRun[] {
  const out: DataRun[] = [];
  let i = 0;
  let j = 0;
  while (i < a.length || j < b.length) {
    const r = j >= b.length || (i < a.length && a[i].start <= b[j].start) ? a[i++] : b[j++];
    pushRun(out, r.start, r.end);
  }
  return out;
}

/** The allocation map of [off, off + len) of a view (0 = live), consecutive from off; may end short. */
export function allocation(engine: PartitionEngine, handles: HandleCache, view: number, off: number, len: number): AllocationExtent[] {
  if (len === 0) return [];
  let from = -1;
  if (view !== 0) {
    from = engine.logs.findIndex((l) => l.id === view);
    if (from < 0) throw new UsageError(`snapshot ${view} does not exist`);
    engine.checkFresh(view);
  }
  const src = sourceDataRuns(engine.io.extents, handles, off, len);
  let runs = src.runs;
  const end = src.end;
  if (from >= 0 && runs.length < MAX_RUNS) {
    const bs = engine.blockSize;
    const logged: DataRun[] = [];
    for (const b of loggedBlocks(engine, from, Math.floor(off / bs), Math.floor((end - 1) / bs))) {
      pushRun(logged, Math.max(off, b * bs), Math.min(end, (b + 1) * bs));
    }
    runs = union(runs, logged);
  }
  const out: AllocationExtent[] = [];
  let pos = off;
  for (const r of runs) {
    if (r.start > pos) out.push({ length: r.start - pos, flags: HOLE_ZERO });
    out.push({ length: r.end - r.start, flags: 0 });
    pos = r.end;
  }
  if (pos < end) out.push({ length: end - pos, flags: HOLE_ZERO });
  return out;
}

/** Blocks of [first, last] that lie wholly in holes of the source (read as zeroes, hold no data). */
export function holeBlocks(engine: PartitionEngine, handles: HandleCache, first: number, last: number): (b: number) => boolean {
  const bs = engine.blockSize;
  const off = first * bs;
  const len = Math.min(engine.spec.length, (last + 1) * bs) - off;
  const { runs, end } = sourceDataRuns(engine.io.extents, handles, off, len);
  return (b: number) => {
    const s = b * bs;
    const e = s + bs;
    if (e > end) return false; // not looked at: assume data
    // Binary search for the first run ending after s.
    let lo = 0;
    let hi = runs.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (runs[mid].end <= s) lo = mid + 1;
      else hi = mid;
    }
    return lo >= runs.length || runs[lo].start >= e;
  };
}
