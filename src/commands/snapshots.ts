// create, list, show, delete: the snapshot catalogue (src/catalogue/), here
// or in the server that holds the volume.
import { checkSnapshotName } from '../store/names.js';
import { withCatalogue } from '../session.js';
import type { CreateArgs, DeleteResult, SnapshotInfo } from '../catalogue/catalogue.js';

export type { SnapshotInfo } from '../catalogue/catalogue.js';
export type CreateOptions = CreateArgs;

export async function create(manifest: string, o: CreateOptions): Promise<SnapshotInfo> {
  // Before anything opens (or creates) the store: a bad name changes nothing.
  if (o.name !== undefined) checkSnapshotName(o.name);
  return withCatalogue(manifest, 'create', (c) => c.create(o));
}

export async function list(manifest: string): Promise<SnapshotInfo[]> {
  return withCatalogue(manifest, 'list', (c) => c.list({}));
}

export async function show(manifest: string, ref: string): Promise<SnapshotInfo> {
  return withCatalogue(manifest, 'show', (c) => c.show({ ref }));
}

export async function remove(manifest: string, refs: string[]): Promise<DeleteResult> {
  return withCatalogue(manifest, 'delete', (c) => c.delete({ refs }));
}
