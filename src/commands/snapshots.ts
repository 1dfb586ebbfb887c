// create, list, show, delete: the snapshot catalogue.
import fs from 'node:fs';
import { UsageError } from '../errors.js';
import { checkSnapshotName, defaultName, resolveRef } from '../store/names.js';
import type { SnapshotRecord, SnapshotPartitionRecord } from '../store/store.js';
import { snapshotMember } from '../store/layout.js';
import { changeLogRecordCount } from '../formats/changelog.js';
import { withCluster, withStore, servedBy } from '../session.js';
import { callServer } from '../serve/control.js';
import type { Cluster } from '../coordinator/cluster.js';
import type { Store } from '../store/store.js';

/** What create/show print: the commit record's public part, with file paths made absolute. */
export interface SnapshotInfo extends Pick<SnapshotRecord, 'id' | 'name' | 'createdAt' | 'expiresAt' | 'size' | 'blockSize' | 'freezeMs'> {
  changedBytes: number;
  partitions: Pick<SnapshotPartitionRecord, 'id' | 'worker' | 'pid' | 'snapshotFile' | 'changeLogFile'>[];
}

function changedBytes(storeDir: string, rec: SnapshotRecord): number {
  let total = 0;
  for (const p of rec.partitions) {
    try {
      const size = fs.statSync(snapshotMember(storeDir, rec.id, p.changeLogFile)).size;
      // Counted from the file size (formats/changelog.ts owns the geometry): no worker needed.
      total += changeLogRecordCount(size, rec.blockSize) * rec.blockSize;
    } catch {
      /* a missing log is verify's business; list stays usable */
    }
  }
  return total;
}

export function toInfo(storeDir: string, rec: SnapshotRecord): SnapshotInfo {
  return {
    id: rec.id,
    name: rec.name,
    createdAt: rec.createdAt,
    expiresAt: rec.expiresAt,
    size: rec.size,
    blockSize: rec.blockSize,
    freezeMs: rec.freezeMs,
    changedBytes: changedBytes(storeDir, rec),
    partitions: rec.partitions.map((p) => ({
      id: p.id,
      worker: p.worker,
      pid: p.pid,
      snapshotFile: snapshotMember(storeDir, rec.id, p.snapshotFile),
      changeLogFile: snapshotMember(storeDir, rec.id, p.changeLogFile),
    })),
  };
}

export interface CreateOptions {
  name?: string;
  expiresInMs?: number;
}

/** Take a snapshot on an open cluster (the CLI's own or a server's). */
export async function createOn(cluster: Cluster, o: CreateOptions): Promise<SnapshotInfo> {
  if (o.name !== undefined) checkSnapshotName(o.name);
  const taken = new Set(cluster.store.snapshots.map((s) => s.name));
  if (o.name !== undefined && taken.has(o.name)) throw new UsageError(`--name: a snapshot named ${JSON.stringify(o.name)} already exists`);
  const now = new Date();
  const name = o.name ?? defaultName(now, taken);
  const expiresAt = o.expiresInMs ? new Date(now.getTime() + o.expiresInMs).toISOString() : null;
  const rec = await cluster.createSnapshot(name, expiresAt);
  return toInfo(cluster.store.dir, rec);
}

export function listOn(store: Store): SnapshotInfo[] {
  return store.snapshots.map((s) => toInfo(store.dir, s));
}

export function showOn(store: Store, ref: string): SnapshotInfo {
  return toInfo(store.dir, resolveRef(store.snapshots, ref));
}

export async function removeOn(cluster: Cluster, refs: string[]): Promise<{ deleted: { id: number; name: string }[] }> {
  // Resolve every reference before changing anything: one typo deletes nothing.
  const targets = [...new Map(refs.map((r) => resolveRef(cluster.store.snapshots, r)).map((s) => [s.id, s])).values()];
  const deleted: { id: number; name: string }[] = [];
  for (const t of targets) {
    await cluster.deleteSnapshot(t.id);
    deleted.push({ id: t.id, name: t.name });
  }
  return { deleted };
}

export async function create(manifest: string, o: CreateOptions): Promise<SnapshotInfo> {
  if (o.name !== undefined) checkSnapshotName(o.name);
  const remote = servedBy(manifest);
  if (remote) return (await callServer(remote, { cmd: 'create', ...o })) as SnapshotInfo;
  return withCluster(manifest, 'create', { create: true }, (cluster) => createOn(cluster, o));
}

export async function list(manifest: string): Promise<SnapshotInfo[]> {
  const remote = servedBy(manifest);
  if (remote) return (await callServer(remote, { cmd: 'list' })) as SnapshotInfo[];
  return withStore(manifest, 'list', false, async (store) => listOn(store));
}

export async function show(manifest: string, ref: string): Promise<SnapshotInfo> {
  const remote = servedBy(manifest);
  if (remote) return (await callServer(remote, { cmd: 'show', ref })) as SnapshotInfo;
  return withStore(manifest, 'show', false, async (store) => showOn(store, ref));
}

export async function remove(manifest: string, refs: string[]): Promise<{ deleted: { id: number; name: string }[] }> {
  const remote = servedBy(manifest);
  if (remote) return (await callServer(remote, { cmd: 'delete', refs })) as { deleted: { id: number; name: string }[] };
  return withCluster(manifest, 'delete', { create: false }, (cluster) => removeOn(cluster, refs));
}
