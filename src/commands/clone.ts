// clone create, list, reset, delete: writable clones of snapshots (design.md
// §5, §8), through the catalogue, so they run here (store lock) or in the
// `vsnap serve` that holds the volume (its control socket).
import { checkSnapshotName } from '../store/names.js';
import { withCatalogue } from '../session.js';
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
