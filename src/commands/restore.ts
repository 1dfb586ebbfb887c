// vsnap restore: make the live volume read as a snapshot again, writing only
// the blocks changed since it, through the copy-on-write path so that newer
// snapshots still read exactly as before (design.md §5). Restoring the newest
// snapshot also empties its change logs once the blocks are durable in place,
// so a restore loop pays only for what changed since the last restore.
import { UsageError } from '../errors.js';
import { resolveRef } from '../store/names.js';
import { withCluster } from '../session.js';

export interface RestoredPartitionInfo {
  id: string;
  blocks: number;
  bytes: number;
  /** The partition's change log of the (newest) snapshot was emptied after the restore. */
  logCut: boolean;
}

export interface RestoreResult {
  snapshot: { id: number; name: string };
  /** Bytes written (with dryRun: that would be written). */
  restoredBytes: number;
  blocks: number;
  dryRun: boolean;
  partitions: string[];
  perPartition: RestoredPartitionInfo[];
}

export async function restore(
  manifest: string,
  ref: string,
  o: {
    partitions?: string[];
    force?: boolean;
    dryRun?: boolean;
    /** Called with the bytes the restore will write, before it writes (a progress bar's total). */
    onStart?: (totalBytes: number) => void;
    /** Bytes written and durable since the last call. */
    onProgress?: (bytes: number) => void;
  },
): Promise<RestoreResult> {
  return withCluster(manifest, 'restore', { create: false, force: o.force, interruptible: true }, async (cluster) => {
    const snap = resolveRef(cluster.store.snapshots, ref);
    const parts = cluster.volume.partitions;
    let chosen = parts;
    if (o.partitions && o.partitions.length) {
      for (const id of o.partitions) {
        if (!parts.some((p) => p.id === id)) throw new UsageError(`--partition: no partition ${JSON.stringify(id)} (have ${parts.map((p) => p.id).join(', ')})`);
      }
      chosen = parts.filter((p) => o.partitions!.includes(p.id));
    }
    const indexes = chosen.map((p) => p.index);
    // Planning only walks the in-memory log indexes: the bar gets a true total
    // for its cost. Sent with the restore, not awaited before it: each worker
    // answers requests in their order, and plans at once (no I/O), so every
    // plan is made before that worker's pre-check and in the reply before any
    // progress (the writes start only once every worker's check has answered).
    const plan = o.onStart && !o.dryRun ? cluster.restore(snap.id, indexes, { dryRun: true }).then((p) => o.onStart!(p.reduce((a, x) => a + x.bytes, 0))) : undefined;
    const [, done] = await Promise.all([plan, cluster.restore(snap.id, indexes, { dryRun: o.dryRun, onProgress: o.onProgress })]);
    const perPartition = done.map((p) => ({ id: p.partition, blocks: p.blocks, bytes: p.bytes, logCut: p.cut }));
    return {
      snapshot: { id: snap.id, name: snap.name },
      restoredBytes: perPartition.reduce((a, p) => a + p.bytes, 0),
      blocks: perPartition.reduce((a, p) => a + p.blocks, 0),
      dryRun: o.dryRun === true,
      partitions: chosen.map((p) => p.id),
      perPartition,
    };
  });
}
