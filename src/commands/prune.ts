// vsnap prune: apply the retention rules and expiries; deletion goes through
// the same merge path as vsnap delete, oldest first (cheapest: a snapshot
// with no predecessor just drops its logs).
import { planPrune, type KeepRules, type PrunePlan } from '../prune/plan.js';
import { withCluster } from './session.js';

export async function prune(manifest: string, rules: KeepRules, o: { dryRun?: boolean; now?: Date }): Promise<PrunePlan & { dryRun: boolean }> {
  return withCluster(manifest, 'prune', { create: false }, async (cluster) => {
    const plan = planPrune(cluster.store.snapshots, rules, o.now ?? new Date());
    if (!o.dryRun) for (const d of [...plan.delete].sort((a, b) => a.id - b.id)) await cluster.deleteSnapshot(d.id);
    return { ...plan, dryRun: o.dryRun === true };
  });
}
