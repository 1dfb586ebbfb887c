// vsnap diff: what changed between two snapshots, or since one, as merged
// byte ranges in volume coordinates and, on request, in backing-file ones.
import { UsageError } from '../errors.js';
import { resolveRef } from '../store/names.js';
import { withCluster } from '../session.js';
import type { FileRange, Range } from '../coordinator/cluster.js';

export interface DiffResult {
  from: number;
  to: number | 'live';
  ranges: Range[];
  files?: FileRange[];
  changedBytes: number;
}

export async function diff(manifest: string, fromRef: string, toRef: string | undefined, o: { exact?: boolean; byFile?: boolean }): Promise<DiffResult> {
  return withCluster(manifest, 'diff', { create: false, force: true }, async (cluster) => {
    const from = resolveRef(cluster.store.snapshots, fromRef);
    const to = toRef === undefined || toRef === 'live' ? undefined : resolveRef(cluster.store.snapshots, toRef);
    if (to && to.id <= from.id) throw new UsageError(`<to>: snapshot ${to.id} (${to.name}) is not newer than <from> ${from.id} (${from.name})`);
    const { ranges, fileRanges } = await cluster.changed(from.id, to ? to.id : null, o.exact === true);
    return {
      from: from.id,
      to: to ? to.id : 'live',
      ranges,
      ...(o.byFile ? { files: fileRanges } : {}),
      changedBytes: ranges.reduce((a, r) => a + r.length, 0),
    };
  });
}
