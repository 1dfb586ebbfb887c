// vsnap restore: make the live volume read as a snapshot again, writing only
// the blocks changed since it, through the copy-on-write path so that newer
// snapshots still read exactly as before (design.md §5).
import { UsageError } from '../errors.js';
import { resolveRef } from '../store/names.js';
import { withCluster } from '../session.js';

export interface RestoreResult {
  snapshot: { id: number; name: string };
  restoredBytes: number;
  partitions: string[];
}

export async function restore(
  manifest: string,
  ref: string,
  o: { partitions?: string[]; force?: boolean; onProgress?: (bytes: number) => void },
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
    const restoredBytes = await cluster.restore(snap.id, chosen.map((p) => p.index), o.onProgress);
    return { snapshot: { id: snap.id, name: snap.name }, restoredBytes, partitions: chosen.map((p) => p.id) };
  });
}
