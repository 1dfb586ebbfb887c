// vsnap prune: apply the retention rules and expiries; deletion goes through
// the same merge path as vsnap delete, oldest first (cheapest: a snapshot
// with no predecessor just drops its logs).
import { planPrune, type KeepRules, type PrunePlan } from '../prune/plan.js';
import type { Cluster } from '../coordinator/cluster.js';
import { callServer } from '../serve/control.js';
import { withCluster, servedBy } from '../session.js';

export type PruneResult = PrunePlan & { dryRun: boolean };

export async function pruneOn(cluster: Cluster, rules: KeepRules, o: { dryRun?: boolean; now?: Date }): Promise<PruneResult> {
  const plan = planPrune(cluster.store.snapshots, rules, o.now ?? new Date());
  if (!o.dryRun) for (const d of [...plan.delete].sort((a, b) => a.id - b.id)) await cluster.deleteSnapshot(d.id);
  return { ...plan, dryRun: o.dryRun === true };
}

export async function prune(manifest: string, rules: KeepRules, o: { dryRun?: boolean }): Promise<PruneResult> {
  const remote = servedBy(manifest);
  if (remote) return (await callServer(remote, { cmd: 'prune', rules, dryRun: o.dryRun === true })) as PruneResult;
  return withCluster(manifest, 'prune', { create: false }, (cluster) => pruneOn(cluster, rules, o));
}
