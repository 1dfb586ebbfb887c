// Noticing writers that bypass vsnap (design.md §5 "stale"). Copy-on-write
// only sees writes that come through vsnap; a program that writes a backing
// file directly changes what old snapshots read, silently. So after every
// orderly close the coordinator records each backing file's identity (device,
// inode, size, mtime, ctime), and the next open compares device, inode, size
// and mtime: a difference means a foreign write, and every existing snapshot
// of every partition on that file is reported stale from then on (until
// `vsnap accept` clears it, for an admin who checked the data is unchanged).
//
// ctime is recorded but not compared: chmod, chown, touch -a, a hard link or
// an xattr change it without touching a byte, and comparing it made every
// snapshot stale for good after a `chmod 600`. The price is that a writer
// that keeps the size and then puts the old mtime back (touch -d/-r, rsync
// -t, cp -p over the file) goes unnoticed (docs/reliability.md).
//
// The record is marked unclean before a command that may write starts its
// workers; after a crash the last writes were vsnap's own and cannot be told
// apart from a foreign writer's, so no staleness is inferred then.
//
// What is recorded at a close is the identity vsnap left each file in, not
// the identity at the close: for a file vsnap wrote, as its last own write
// left it (each worker keeps that, see io/own-writes.ts); for the others, as
// the store's open found it. So a foreign write while vsnap runs, after
// vsnap's last write to that file, also shows at the next open.
import fs from 'node:fs';
import { readRecord, writeRecord } from '../formats/record-json.js';
import { backingFile } from './layout.js';
import type { Volume } from '../manifest/layout.js';
import { readState } from './partition-state.js';

export const BACKING_KIND = 'vsnap-backing-state';

// A backing file's identity is defined beside the partition state that records it.
import type { BackingIdentity } from './partition-state.js';
export type { BackingIdentity } from './partition-state.js';

export interface StaleEntry {
  partition: string;
  /** The backing file whose change made them stale; absent in entries of older versions (see staleFiles). */
  file?: string;
  snapshots: number[];
  reason: string;
}

export interface BackingRecord {
  clean: boolean;
  files: BackingIdentity[];
  stale: StaleEntry[];
}

export function backingPath(storeDir: string): string {
  return backingFile(storeDir);
}

export function volumeFiles(volume: Volume): string[] {
  return [...new Set(volume.partitions.flatMap((p) => p.extents.map((e) => e.path)))];
}

export function identities(paths: string[]): BackingIdentity[] {
  return [...new Set(paths)].map((p) => {
    const st = fs.statSync(p);
    return { path: p, dev: st.dev, ino: st.ino, size: st.size, mtimeMs: st.mtimeMs, ctimeMs: st.ctimeMs };
  });
}

/** Like identities(), leaving out files that cannot be stat'ed (reported where they are opened). */
export function identitiesIfPresent(paths: string[]): BackingIdentity[] {
  return [...new Set(paths)].flatMap((p) => {
    try {
      return identities([p]);
    } catch {
      return [];
    }
  });
}

/** The later of two identities of one file: by ctime, then mtime; b on a tie (b is the later observation). */
function newer(a: BackingIdentity, b: BackingIdentity): BackingIdentity {
  if (a.ctimeMs !== b.ctimeMs) return a.ctimeMs > b.ctimeMs ? a : b;
  return a.mtimeMs > b.mtimeMs ? a : b;
}

/**
 * At an orderly close: each file as vsnap left it. Candidates are the
 * identity seen when the store was opened and what every partition's worker
 * vouched for at its close (its own last write); the newest wins. Entries
 * left by earlier sessions predate the open, so they never win.
 */
export async function leftByVsnap(storeDir: string, volume: Volume, atOpen: BackingIdentity[]): Promise<BackingIdentity[]> {
  const best = new Map<string, BackingIdentity>();
  const offer = (id: BackingIdentity) => {
    const cur = best.get(id.path);
    best.set(id.path, cur ? newer(cur, id) : id);
  };
  for (const id of atOpen) offer(id);
  const unaccounted: string[] = [];
  for (const p of volume.partitions) {
    const st = await readState(storeDir, p.id);
    // Left unclean: its worker died this session (the others still closed in
    // order) after it had started writing; its last writes are unknown, so
    // its files count as they are now, as they did before this check existed.
    if (st && !st.clean) unaccounted.push(...p.extents.map((e) => e.path));
    for (const id of st?.backing ?? []) if (p.extents.some((e) => e.path === id.path)) offer(id);
  }
  for (const id of identitiesIfPresent(unaccounted)) offer(id);
  const files = volumeFiles(volume);
  // A file neither seen at open nor written (it appeared since): as it is now.
  const missing = files.filter((f) => !best.has(f));
  for (const id of identitiesIfPresent(missing)) best.set(id.path, id);
  return files.flatMap((f) => best.get(f) ?? []);
}

export function describeChange(before: BackingIdentity, now: BackingIdentity): string | undefined {
  if (now.dev !== before.dev || now.ino !== before.ino) return `${before.path} was replaced by another file`;
  if (now.size !== before.size) return `${before.path} changed size from ${before.size} to ${now.size}`;
  // Not ctime: a change of mode, owner or atime alone is not a write (see the header).
  if (now.mtimeMs !== before.mtimeMs) return `${before.path} was modified outside vsnap at ${new Date(now.mtimeMs).toISOString()}`;
  return undefined;
}

/**
 * The backing files an entry is attributed to: its `file`; for an entry of an
 * older version, the partition's file whose path begins its reason (every
 * reason describeChange gives does), else every file of the partition.
 */
export function staleFiles(volume: Volume, entry: StaleEntry): string[] {
  if (entry.file !== undefined) return [entry.file];
  const files = [...new Set(volume.partitions.find((p) => p.id === entry.partition)?.extents.map((e) => e.path) ?? [])];
  const named = files.filter((f) => entry.reason.startsWith(`${f} `));
  return named.length ? named : files;
}

/** One entry per partition (what status, verify and the workers use): the union of its snapshots, every reason. */
export function stalePerPartition(entries: readonly StaleEntry[]): StaleEntry[] {
  const out = new Map<string, StaleEntry>();
  for (const e of entries) {
    const cur = out.get(e.partition);
    if (!cur) out.set(e.partition, { partition: e.partition, snapshots: [...e.snapshots], reason: e.reason });
    else {
      cur.snapshots = [...new Set([...cur.snapshots, ...e.snapshots])].sort((a, b) => a - b);
      if (!cur.reason.split('; ').includes(e.reason)) cur.reason = `${cur.reason}; ${e.reason}`;
    }
  }
  return [...out.values()];
}

/** Pure: which partitions' snapshots a set of changed files makes stale. */
export function planStale(volume: Volume, prev: BackingRecord, now: BackingIdentity[], snapshotIds: number[]): StaleEntry[] {
  const stale = prev.stale.map((s) => ({ ...s, snapshots: s.snapshots.filter((id) => snapshotIds.includes(id)) })).filter((s) => s.snapshots.length);
  if (!prev.clean || snapshotIds.length === 0) return stale;
  for (const b of prev.files) {
    const n = now.find((x) => x.path === b.path);
    const why = n ? describeChange(b, n) : undefined;
    if (!why) continue;
    for (const p of volume.partitions) {
      if (!p.extents.some((e) => e.path === b.path)) continue;
      // One entry per partition and file, so `accept` of one file leaves another file's marks.
      const entry = stale.find((s) => s.partition === p.id && staleFiles(volume, s).length === 1 && staleFiles(volume, s)[0] === b.path);
      if (entry) entry.snapshots = [...new Set([...entry.snapshots, ...snapshotIds])].sort((a, c) => a - c);
      else stale.push({ partition: p.id, file: b.path, snapshots: [...snapshotIds], reason: why });
    }
  }
  return stale;
}

export interface AcceptPlan {
  record: BackingRecord;
  /** The marks removed: which snapshots of which partition, and the file they were on. */
  cleared: { partition: string; file: string; snapshots: number[]; reason: string }[];
}

/**
 * Pure: `vsnap accept` of `files` (absolute paths of the volume) as they are
 * now (`now`). Every mark attributed to one of them goes (an entry of an
 * older version attributed to several files goes once all are accepted), and
 * their identities as they are now become the recorded ones, so the next open
 * does not mark them again.
 */
export function planAccept(volume: Volume, prev: BackingRecord, files: readonly string[], now: readonly BackingIdentity[]): AcceptPlan {
  const accepted = new Set(files);
  const cleared: AcceptPlan['cleared'] = [];
  const stale = prev.stale.filter((e) => {
    const on = staleFiles(volume, e);
    if (!on.every((f) => accepted.has(f))) return true;
    cleared.push({ partition: e.partition, file: on.join(', '), snapshots: [...e.snapshots], reason: e.reason });
    return false;
  });
  const fresh = new Map(now.filter((n) => accepted.has(n.path)).map((n) => [n.path, n]));
  const recorded = prev.files.map((f) => fresh.get(f.path) ?? f);
  for (const [p, id] of fresh) if (!recorded.some((f) => f.path === p)) recorded.push(id);
  return { record: { clean: prev.clean, files: recorded, stale }, cleared };
}

export async function readBacking(storeDir: string): Promise<BackingRecord | undefined> {
  const p = backingPath(storeDir);
  if (!fs.existsSync(p)) return undefined;
  return readRecord<BackingRecord>(p, BACKING_KIND);
}

export async function writeBacking(storeDir: string, r: BackingRecord): Promise<void> {
  await writeRecord(backingPath(storeDir), BACKING_KIND, { ...r });
}
