// vsnap status: the volume, its store, who holds it, and each partition's health.
import { withCatalogue } from '../session.js';
import type { StatusReport } from '../catalogue/catalogue.js';

export type { StatusReport } from '../catalogue/catalogue.js';

export async function status(manifest: string): Promise<StatusReport> {
  return withCatalogue(manifest, 'status', (c) => c.status({}));
}
