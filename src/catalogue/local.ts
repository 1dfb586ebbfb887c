// The catalogue in this process, over an open store and (for the methods
// that change snapshots or ask the workers) its running cluster. The CLI
// uses it when no server holds the volume; `vsnap serve` hosts it on its
// control socket.
import { storeSpace } from '../store/space.js';
import { UsageError } from '../errors.js';
import { checkSnapshotName, defaultName, isManual, resolveRef } from '../store/names.js';
import { readLock } from '../store/lock.js';
import { planPrune, protection } from '../prune/plan.js';
import { heldIds, planHold, planRelease, readHolds, writeHolds } from '../store/holds.js';
import type { Store } from '../store/store.js';
import type { Cluster } from '../coordinator/cluster.js';
import type { Catalogue, Method, StatusReport } from './catalogue.js';
import { toInfo } from './snapshot-info.js';
import { cloneCalls, type CloneHost } from './clones.js';
import { refuseCloned, snapshotClones } from '../store/clones.js';

/**
 * What each method needs opened when it runs without a server: whether the
 * store is created when missing (only commands that record something), and
 * whether the workers must run (list and show read the records only).
 */
export const LOCAL_OPEN: { readonly [M in Method]: { createStore: boolean; workers: boolean } } = {
  create: { createStore: true, workers: true },
  list: { createStore: false, workers: false },
  show: { createStore: false, workers: false },
  delete: { createStore: false, workers: true },
  prune: { createStore: false, workers: true },
  status: { createStore: false, workers: true },
  hold: { createStore: false, workers: false },
  release: { createStore: false, workers: false },
  // Clones offline: their files only (no worker has them open).
  cloneCreate: { createStore: false, workers: false },
  cloneList: { createStore: false, workers: false },
  cloneReset: { createStore: false, workers: false },
  cloneDelete: { createStore: false, workers: false },
};

export function localCatalogue(store: Store, cluster?: Cluster, host: CloneHost = {}): Catalogue {
  const workers = (m: Method): Cluster => {
    // A caller bug (LOCAL_OPEN says which methods need the workers), not a user's.
    if (!cluster) throw new Error(`catalogue: ${m} needs the workers, but none were started`);
    return cluster;
  };
  const held = async () => heldIds(await readHolds(store.dir), store.snapshots);
  const resolveAll = (refs: string[]) => [...new Map(refs.map((r) => resolveRef(store.snapshots, r)).map((s) => [s.id, s])).values()];
  return {
    async create(o) {
      const c = workers('create');
      if (o.name !== undefined) checkSnapshotName(o.name);
      const taken = new Set(store.snapshots.map((s) => s.name));
      if (o.name !== undefined && taken.has(o.name)) throw new UsageError(`--name: a snapshot named ${JSON.stringify(o.name)} already exists`);
      const now = new Date();
      const name = o.name ?? defaultName(now, taken);
      const expiresAt = o.expiresInMs ? new Date(now.getTime() + o.expiresInMs).toISOString() : null;
      // Automatic unless a person named it (design §5): retention then leaves it alone.
      const rec = await c.createSnapshot(name, expiresAt, o.name !== undefined);
      return toInfo(store.dir, rec, false);
    },

    async list() {
      const h = await held();
      return store.snapshots.map((s) => toInfo(store.dir, s, h.has(s.id)));
    },

    async show({ ref }) {
      const s = resolveRef(store.snapshots, ref);
      return toInfo(store.dir, s, (await held()).has(s.id));
    },

    async delete({ refs }) {
      const c = workers('delete');
      // Resolve every reference before changing anything: one typo, or one held snapshot, deletes nothing.
      const targets = resolveAll(refs);
      const h = await held();
      const blocked = targets.filter((t) => h.has(t.id));
      if (blocked.length) {
        const names = blocked.map((b) => `${b.id} ${JSON.stringify(b.name)}`).join(', ');
        const refsText = blocked.map((b) => b.name).join(' ');
        throw new UsageError(`snapshot${blocked.length > 1 ? 's' : ''} ${names} ${blocked.length > 1 ? 'are' : 'is'} held; \`vsnap release ${store.volume.manifestPath} ${refsText}\` frees ${blocked.length > 1 ? 'them' : 'it'} (nothing was deleted)`);
      }
      refuseCloned(store.dir, targets);
      const deleted: { id: number; name: string }[] = [];
      for (const t of targets) {
        await c.deleteSnapshot(t.id);
        deleted.push({ id: t.id, name: t.name });
      }
      return { deleted };
    },

    async prune({ rules, dryRun, includeManual }) {
      const c = workers('prune');
      // Held snapshots and snapshots with clones are protected: kept, never failed on.
      const cloned = new Map([...snapshotClones(store.dir)].map(([id, names]) => [id, [`has clones (${names.join(', ')})`]]));
      const protect = protection(new Map([...(await held())].map((id) => [id, ['held']])), cloned);
      const snaps = store.snapshots.map((s) => ({ ...s, manual: isManual(s) }));
      const plan = planPrune(snaps, rules, new Date(), { includeManual: includeManual === true, protect });
      // Oldest first: a snapshot with no predecessor just drops its logs.
      if (!dryRun) for (const d of [...plan.delete].sort((a, b) => a.id - b.id)) await c.deleteSnapshot(d.id);
      return { ...plan, dryRun };
    },

    async status() {
      return statusOf(workers('status'));
    },

    async hold({ refs }) {
      const targets = resolveAll(refs);
      const plan = planHold(await readHolds(store.dir), store.snapshots, targets, new Date());
      if (plan.changed.length) await writeHolds(store.dir, plan.next);
      return { held: plan.changed, alreadyHeld: plan.unchanged };
    },

    async release({ refs }) {
      const targets = resolveAll(refs);
      const plan = planRelease(await readHolds(store.dir), store.snapshots, targets);
      if (plan.changed.length) await writeHolds(store.dir, plan.next);
      return { released: plan.changed, notHeld: plan.unchanged };
    },

    ...cloneCalls(store, cluster, host),
  };
}

async function statusOf(cluster: Cluster): Promise<StatusReport> {
  const volume = cluster.volume;
  const holder = readLock(volume.storeDir);
  const st = await cluster.status();
  const snaps = cluster.store.snapshots;
  const last = snaps[snaps.length - 1];
  return {
    name: volume.name,
    size: volume.size,
    blockSize: volume.blockSize,
    store: volume.storeDir,
    snapshots: snaps.length,
    latest: last ? { id: last.id, name: last.name, createdAt: last.createdAt } : null,
    heldBy: holder && holder.socket ? { pid: holder.pid, command: holder.command, socket: holder.socket } : null,
    partitions: volume.partitions.map((p) => {
      const w = st.find((s) => s.partitions.some((x) => x.id === p.id))!;
      const ps = w.partitions.find((x) => x.id === p.id)!;
      const stale = cluster.store.stale.find((s) => s.partition === p.id);
      return { id: p.id, worker: p.worker, pid: w.pid, clean: !ps.recovered, writing: !ps.clean && !ps.recovered, stale: stale?.snapshots ?? [], staleReason: stale?.reason ?? null, loggedBlocks: ps.loggedBlocks };
    }),
    workers: [...cluster.workers.values()].sort((a, b) => a.index - b.index).map((h) => ({ worker: h.index, pid: h.pid, rss: st.find((s) => s.pid === h.pid)?.rss ?? 0 })),
    syncFailure: cluster.syncFailure?.message ?? null,
    space: storeSpace(volume.storeDir, snaps),
  };
}
