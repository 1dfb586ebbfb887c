// Which blocks of a partition range changed between two points in the chain:
// the ranged, bounded form of PartitionEngine.changedBlocks, answered for each
// NBD_CMD_BLOCK_STATUS on a qemu:dirty-bitmap context (design.md §9).
//
// A block changed between S_from and S_to (or live) iff it is in one of the
// logs L_from .. L_{to-1} (.. L_n for live). The logs are hash indexes with no
// order, so a range is answered the cheaper of two ways: probe each block of
// the range in each log (blocks × logs), or walk every entry of those logs and
// keep the ones inside the range (Σ|L_j|, sequential, so WALK_FACTOR times
// cheaper per step). Either cost is bounded by `maxProbes`: beyond it the
// probe walk stops early and the answer covers only
// a prefix of the range, which NBD allows (a short block-status reply), so no
// request ever scans whole logs of a big volume.
import { UsageError } from '../errors.js';
import type { LogEntry, PartitionEngine } from './partition.js';
import type { ChangedRangeQuery, ChangedRangeReply } from './protocol.js';

/** How many log entries walked cost about one hash probe (cache misses dominate probes). */
const WALK_FACTOR = 4;

function indexOf(logs: readonly LogEntry[], id: number): number {
  const i = logs.findIndex((l) => l.id === id);
  if (i < 0) throw new UsageError(`snapshot ${id} does not exist (deleted since the context was selected?)`);
  return i;
}

export function changedRuns(engine: Pick<PartitionEngine, 'logs' | 'checkFresh'>, q: ChangedRangeQuery): ChangedRangeReply {
  // A write that bypassed vsnap after S_from is in no log: the answer would
  // miss it, and a backup built on it would be silently wrong.
  engine.checkFresh(q.from);
  const logs = engine.logs;
  const i = indexOf(logs, q.from);
  const k = q.to === null ? logs.length : indexOf(logs, q.to);
  const sel = logs.slice(i, Math.max(i, k));
  const count = q.blockCount;
  if (sel.length === 0 || count <= 0) return { scanned: Math.max(0, count), runs: [] };
  const entries = sel.reduce((a, l) => a + l.log.count, 0);
  const probes = count * sel.length;
  const marks = new Uint8Array(count);
  let scanned = count;
  // A walk reads the logs' dense key arrays in order; a probe is a random
  // access into a hash table: measured 3-8x dearer per step (docs/decisions.md).
  if (entries <= WALK_FACTOR * Math.min(probes, q.maxProbes)) {
    const end = q.firstBlock + count;
    for (const l of sel) for (const b of l.log.blocks()) if (b >= q.firstBlock && b < end) marks[b - q.firstBlock] = 1;
  } else {
    scanned = Math.max(1, Math.min(count, Math.floor(q.maxProbes / sel.length)));
    for (let n = 0; n < scanned; n++) {
      const b = q.firstBlock + n;
      for (const l of sel) {
        if (l.log.has(b)) {
          marks[n] = 1;
          break;
        }
      }
    }
  }
  const runs: number[] = [];
  for (let n = 0; n < scanned; n++) {
    if (!marks[n]) continue;
    const start = n;
    while (n + 1 < scanned && marks[n + 1]) n++;
    runs.push(q.firstBlock + start, q.firstBlock + n + 1);
  }
  return { scanned, runs };
}
