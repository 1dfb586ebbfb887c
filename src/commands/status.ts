// vsnap status: the volume, its store, who holds it, and each partition's health.
import { readLock } from '../store/lock.js';
import type { Cluster } from '../coordinator/cluster.js';
import { callServer } from '../serve/control.js';
import { withCluster, servedBy } from '../session.js';

export interface StatusReport {
  name: string;
  size: number;
  blockSize: number;
  store: string;
  snapshots: number;
  latest: { id: number; name: string; createdAt: string } | null;
  heldBy: { pid: number; command: string; socket?: string } | null;
  partitions: { id: string; worker: number; pid: number; clean: boolean; stale: number[]; staleReason: string | null; loggedBlocks: number }[];
  workers: { worker: number; pid: number; rss: number }[];
  /** The first failed sync of a backing file while serving: every FLUSH fails until the server restarts. */
  syncFailure: string | null;
}

export async function status(manifest: string): Promise<StatusReport> {
  const remote = servedBy(manifest);
  if (remote) return (await callServer(remote, { cmd: 'status' })) as StatusReport;
  return withCluster(manifest, 'status', { create: false }, (cluster) => statusOn(cluster));
}

export async function statusOn(cluster: Cluster): Promise<StatusReport> {
  const volume = cluster.volume;
  const holder = readLock(volume.storeDir);
  {
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
        return { id: p.id, worker: p.worker, pid: w.pid, clean: ps.clean, stale: stale?.snapshots ?? [], staleReason: stale?.reason ?? null, loggedBlocks: ps.loggedBlocks };
      }),
      workers: [...cluster.workers.values()].map((h) => ({ worker: h.index, pid: h.pid, rss: st.find((s) => s.pid === h.pid)?.rss ?? 0 })),
      syncFailure: cluster.syncFailure?.message ?? null,
    };
  }
}
