// Reads of a volume view through the workers that own its partitions. The
// data comes back as the chunks the worker's reply arrived in: a read inside
// one partition (the common case) reaches the NBD socket without a copy in
// the coordinator; one spanning partitions is assembled into one buffer.
import type { Volume } from '../manifest/layout.js';
import { mapVolumeRange } from '../volume-map.js';
import { OperationError } from '../errors.js';
import { DataOp } from '../worker/protocol.js';
import type { WorkerHandle } from './worker-handle.js';
import { chunksLength, copyChunks } from '../transport/chunks.js';

/** view: 0 for the live volume, else a snapshot id (its chain already checked); clone: a clone's handle (its base snapshot is `view`), or 0. */
export async function readVolume(volume: Volume, worker: (w: number) => WorkerHandle, view: number, offset: number, length: number, clone = 0): Promise<Buffer[]> {
  const segs = mapVolumeRange(volume.partitions, offset, length);
  const replies = await Promise.all(
    segs.map((s) => worker(s.worker).requestParts({ op: DataOp.Read, flags: 0, partition: s.partition, view, clone, offset: s.partOffset, length: s.length })),
  );
  segs.forEach((s, i) => {
    const n = chunksLength(replies[i]);
    if (n !== s.length) throw new OperationError(`worker ${s.worker} returned ${n} bytes for a ${s.length}-byte read`);
  });
  if (segs.length === 1) return replies[0];
  const out = Buffer.allocUnsafe(length);
  segs.forEach((s, i) => copyChunks(replies[i], out, s.rangeOffset));
  return [out];
}
