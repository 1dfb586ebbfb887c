// The clone methods of the local catalogue (clone create, list, reset,
// delete), over the store's clone files (store/clones.ts) and, in a server,
// the workers that have a clone open (coordinator/clones.ts): a reset or a
// delete drains the clone's NBD I/O in the workers first.
import { StaleError, UsageError } from '../errors.js';
import { checkSnapshotName, resolveRef } from '../store/names.js';
import { cloneNames, cloneUsedBytes, createClone, readClone, readClones, removeClone, resetCloneFiles, type CloneRecord } from '../store/clones.js';
import type { PrunePlan } from '../prune/plan.js';
import type { Store } from '../store/store.js';
import type { Cluster } from '../coordinator/cluster.js';
import type { Catalogue, CloneInfo } from './catalogue.js';

/** What a server adds: the NBD URI of an export, so `clone create` can say where the clone is served. */
export interface CloneHost {
  exportUri?: (exportName: string) => string;
}

/** Pure: move the snapshots that have clones from a prune plan's deletions to its kept ones. */
export function keepCloned(plan: PrunePlan, clones: ReadonlyMap<number, string[]>): PrunePlan {
  const held = plan.delete.filter((d) => clones.get(d.id)?.length);
  if (!held.length) return plan;
  return {
    keep: [...plan.keep, ...held.map((d) => ({ ...d, reasons: [`has clones (${clones.get(d.id)!.join(', ')})`] }))].sort((a, b) => a.id - b.id),
    delete: plan.delete.filter((d) => !held.includes(d)),
  };
}

type CloneMethods = Pick<Catalogue, 'cloneCreate' | 'cloneList' | 'cloneReset' | 'cloneDelete'>;

export function cloneCalls(store: Store, cluster: Cluster | undefined, host: CloneHost): CloneMethods {
  const info = (rec: CloneRecord): CloneInfo => ({
    name: rec.name,
    snapshot: rec.snapshot,
    createdAt: rec.createdAt,
    usedBytes: cloneUsedBytes(store.dir, store.volume, rec.name),
    ...(host.exportUri ? { uri: host.exportUri(`clone/${rec.name}`) } : {}),
  });
  const existing = (name: string): CloneRecord => {
    checkSnapshotName(name, 'clone name');
    return readClone(store.dir, name);
  };
  return {
    async cloneCreate({ snap, name, force }) {
      checkSnapshotName(name, 'clone name');
      const s = resolveRef(store.snapshots, snap);
      store.checkChain(s.id);
      const stale = store.stale.find((x) => x.snapshots.includes(s.id));
      if (stale && !force) {
        throw new StaleError(`snapshot ${s.id} "${s.name}" is stale for partition ${stale.partition}: ${stale.reason} (a write that bypassed vsnap; use --force to clone it anyway)`);
      }
      if (cloneNames(store.dir).includes(name)) throw new UsageError(`clone name: a clone named ${JSON.stringify(name)} already exists`);
      const rec: CloneRecord = { name, snapshot: { id: s.id, name: s.name }, fingerprint: store.volume.fingerprint, createdAt: new Date().toISOString(), force: force === true };
      await createClone(store.dir, store.volume, rec);
      return info(rec);
    },

    async cloneList() {
      return readClones(store.dir).map(info);
    },

    async cloneReset({ name }) {
      const rec = existing(name);
      if (cluster) await cluster.clones.reset(name);
      else await resetCloneFiles(store.dir, store.volume, rec);
      return info(rec);
    },

    async cloneDelete({ names }) {
      // Every name is checked before anything goes: one typo deletes nothing.
      const recs = [...new Set(names)].map(existing);
      const deleted: string[] = [];
      for (const r of recs) {
        await cluster?.clones.close(r.name);
        await removeClone(store.dir, r.name);
        deleted.push(r.name);
      }
      return { deleted };
    },
  };
}
