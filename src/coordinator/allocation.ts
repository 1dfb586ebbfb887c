// The allocation map (NBD base:allocation) of a volume range: the range is cut
// by partition, each owning worker answers for its piece from its backing
// files' holes and its logs (worker/allocation.ts), and the pieces are joined
// in order. A piece answered short ends the whole answer there, since
// block-status extents must be consecutive from the offset.
import type { Volume } from '../manifest/layout.js';
import { mapVolumeRange } from '../volume-map.js';
import { DataOp, decodeExtents } from '../worker/protocol.js';
import type { WorkerHandle } from './worker-handle.js';

export async function volumeBlockStatus(
  volume: Volume,
  worker: (index: number) => WorkerHandle,
  view: number,
  offset: number,
  length: number,
): Promise<{ length: number; flags: number }[]> {
  const segs = mapVolumeRange(volume.partitions, offset, length);
  const parts = await Promise.all(
    segs.map(async (s) => decodeExtents(await worker(s.worker).request({ op: DataOp.BlockStatus, flags: 0, partition: s.partition, view, offset: s.partOffset, length: s.length }))),
  );
  const out: { length: number; flags: number }[] = [];
  for (let k = 0; k < parts.length; k++) {
    for (const e of parts[k]) out.push(e);
    if (parts[k].reduce((a, e) => a + e.length, 0) < segs[k].length) break;
  }
  return out;
}
