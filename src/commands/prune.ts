// vsnap prune: apply the retention rules (src/prune/plan.ts) and expiries;
// deletion goes through the same merge path as vsnap delete, oldest first.
// Manual snapshots are left alone unless includeManual; held ones always.
import type { KeepRules } from '../prune/plan.js';
import { withCatalogue } from '../session.js';
import type { PruneResult } from '../catalogue/catalogue.js';

export type { PruneResult } from '../catalogue/catalogue.js';

export async function prune(manifest: string, rules: KeepRules, o: { dryRun?: boolean; includeManual?: boolean }): Promise<PruneResult> {
  return withCatalogue(manifest, 'prune', (c) => c.prune({ rules, dryRun: o.dryRun === true, includeManual: o.includeManual === true }));
}
