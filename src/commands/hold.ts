// vsnap hold / release: protect snapshots from prune and delete, and free
// them again (ZFS's words). Through the catalogue, so they run here under the
// store lock or inside the server that holds the volume.
import { withCatalogue } from '../session.js';
import type { HoldResult, ReleaseResult } from '../catalogue/catalogue.js';

export type { HoldResult, ReleaseResult } from '../catalogue/catalogue.js';

export async function hold(manifest: string, refs: string[]): Promise<HoldResult> {
  return withCatalogue(manifest, 'hold', (c) => c.hold({ refs }));
}

export async function release(manifest: string, refs: string[]): Promise<ReleaseResult> {
  return withCatalogue(manifest, 'release', (c) => c.release({ refs }));
}
