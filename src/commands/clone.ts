// clone create, list, reset, delete: writable clones of snapshots (design.md
// §5, §8), through the catalogue, so they run here (store lock) or in the
// `vsnap serve` that holds the volume (its control socket).
import { checkSnapshotName } from '../store/names.js';
import { withCatalogue, withStore } from '../session.js';
import { readClone, repairCloneMaps } from '../store/clones.js';
import type { MapRepair } from '../formats/overlay-repair.js';
import type { CloneInfo } from '../catalogue/catalogue.js';

export type { CloneInfo } from '../catalogue/catalogue.js';

export async function cloneCreate(manifest: string, snap: string, name: string, o: { force?: boolean } = {}): Promise<CloneInfo> {
  // Before anything opens the store: a bad name changes nothing.
  checkSnapshotName(name, 'clone name');
  return withCatalogue(manifest, 'cloneCreate', (c) => c.cloneCreate({ snap, name, ...(o.force ? { force: true } : {}) }));
}

export async function cloneList(manifest: string): Promise<CloneInfo[]> {
  return withCatalogue(manifest, 'cloneList', (c) => c.cloneList({}));
}

export async function cloneReset(manifest: string, name: string): Promise<CloneInfo> {
  return withCatalogue(manifest, 'cloneReset', (c) => c.cloneReset({ name }));
}

export async function cloneDelete(manifest: string, names: string[]): Promise<{ deleted: string[] }> {
  return withCatalogue(manifest, 'cloneDelete', (c) => c.cloneDelete({ names }));
}

export interface CloneRepair {
  name: string;
  snapshot: { id: number; name: string };
  /** The maps that had damage, with what was (or, with dryRun, would be) dropped. */
  maps: { partition: string; repair: MapRepair }[];
  dryRun: boolean;
}

/**
 * Accept the loss of a clone's damaged map records (docs/decisions.md):
 * offline only, with the store lock (a running server has the overlays open;
 * stop it first, or reset the clone through it).
 */
export async function cloneRepair(manifest: string, name: string, o: { dryRun?: boolean } = {}): Promise<CloneRepair> {
  checkSnapshotName(name, 'clone name');
  return withStore(manifest, 'clone repair', false, async (store) => {
    const rec = readClone(store.dir, name);
    const maps = await repairCloneMaps(store.dir, store.volume, rec, { dryRun: o.dryRun === true });
    return { name, snapshot: rec.snapshot, maps, dryRun: o.dryRun === true };
  });
}
