// The changed blocks of a volume range, as block-status extents (flag 1 =
// changed): what an NBD qemu:dirty-bitmap context answers (design.md §9). The
// range is cut by partition, each worker answers for its own pieces with a
// bounded ranged query (worker/changed-range.ts), and the pieces are joined
// back in order. A worker that answers only a prefix of its piece ends the
// answer there: block-status extents must be consecutive from the offset.
import type { BlockExtent } from '../block.js';
import { mapVolumeRange } from '../volume-map.js';
import type { Cluster } from './cluster.js';

/** The dirty flag of qemu:dirty-bitmap contexts (QEMU's NBD_STATE_DIRTY). */
export const STATE_DIRTY = 1;

/**
 * Hash lookups a worker may spend on one piece (log entries walked count a
 * quarter each): at the 30-120 ns a lookup into a large index costs when it
 * misses the cache, 8-30 ms of work. A 4 GiB request over 4 KiB blocks would
 * probe a million blocks per log, so with big logs the answer comes back
 * short (the client asks again from where it ends) instead of slow.
 */
export const MAX_PROBES_PER_PIECE = 1 << 18;

/**
 * Blocks changed from snapshot `from` to snapshot `to` (null: the live
 * volume) in [offset, offset + length): consecutive extents from offset,
 * possibly covering less than length, never more.
 */
export async function changedExtents(cluster: Cluster, from: number, to: number | null, offset: number, length: number): Promise<BlockExtent[]> {
  // A snapshot removed behind vsnap takes its log with it: the changes would be incomplete.
  cluster.store.checkChain(from);
  const bs = cluster.volume.blockSize;
  const segs = mapVolumeRange(cluster.volume.partitions, offset, length);
  const answers = await Promise.all(
    segs.map((s) => {
      const firstBlock = Math.floor(s.partOffset / bs);
      const endBlock = Math.ceil((s.partOffset + s.length) / bs);
      const worker = cluster.workers.get(s.worker);
      if (!worker) throw new Error(`no worker ${s.worker} for partition ${s.partition}`);
      return worker.control({ t: 'changedRange', partition: s.partition, from, to, firstBlock, blockCount: endBlock - firstBlock, maxProbes: MAX_PROBES_PER_PIECE });
    }),
  );
  const out: BlockExtent[] = [];
  const push = (len: number, flags: number) => {
    if (len <= 0) return;
    const last = out[out.length - 1];
    if (last && last.flags === flags) last.length += len;
    else out.push({ length: len, flags });
  };
  for (let n = 0; n < segs.length; n++) {
    const s = segs[n];
    const { scanned, runs } = answers[n];
    const firstBlock = Math.floor(s.partOffset / bs);
    // Partition-relative bytes this piece's answer covers.
    const end = Math.min(s.partOffset + s.length, (firstBlock + scanned) * bs);
    let at = s.partOffset;
    for (let r = 0; r < runs.length; r += 2) {
      const a = Math.max(at, runs[r] * bs);
      const z = Math.min(end, runs[r + 1] * bs);
      if (z <= a) continue;
      push(a - at, 0);
      push(z - a, STATE_DIRTY);
      at = z;
    }
    push(end - at, 0);
    if (end < s.partOffset + s.length) break;
  }
  return out;
}
