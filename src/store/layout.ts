// Where everything lives in a store directory (design.md §4, docs/formats.md
// "Store directory"). The one module that builds store paths: the coordinator,
// the workers and the commands all ask here, so a layout change is made once.
// Pure (string arithmetic only) and on the ground floor: a worker loads it
// without the store's metadata code.
//
//   <store>/volume.json              the volume record
//   <store>/ids.json                 a second copy of the next snapshot id
//   <store>/lock                     the store lock (one writer at a time)
//   <store>/backing.json             backing-file identities (stale detection)
//   <store>/holds.json               held snapshots (vsnap hold/release)
//   <store>/state/<partition>.json   per-partition clean/unclean state
//   <store>/snapshots/<id>/          a committed snapshot (id: 8+ digits)
//       snapshot.json                the commit record
//       <partition>.psnap            partition snapshot
//       <partition>.clog             change log
//   <store>/snapshots/<id>.tmp/      a create in progress (removed at open)
//   <store>/snapshots/<id>.deleting/ a delete past its merge (removed at open)
//   <store>/nbd.sock                 vsnap serve's default NBD socket
//   <store>/control.sock             vsnap serve's control socket (when it fits)
//   <store>/clones/<name>/           a writable clone
//       clone.json                   its record
//       <partition>.ovl / .ovm       its overlay per partition (data, map)
//   <store>/clones/<name>+new/ +del/ a clone create / delete in progress
import path from 'node:path';

export const VOLUME_FILE = 'volume.json';
export const LOCK_FILE = 'lock';
export const IDS_FILE = 'ids.json';
export const BACKING_FILE = 'backing.json';
export const HOLDS_FILE = 'holds.json';
export const STATE_DIR = 'state';
export const SNAPSHOTS_DIR = 'snapshots';
export const SNAPSHOT_RECORD_FILE = 'snapshot.json';
export const NBD_SOCKET = 'nbd.sock';
export const CONTROL_SOCKET = 'control.sock';
export const CLONES_DIR = 'clones';

/** Suffix of a snapshot directory whose create has not reached its commit point. */
export const PENDING_SUFFIX = '.tmp';
/** Suffix of a snapshot directory whose delete is past its merge. */
export const DELETING_SUFFIX = '.deleting';

export function volumeFile(storeDir: string): string {
  return path.join(storeDir, VOLUME_FILE);
}

/** The second copy of the id high-water mark; beside volume.json, so no partition id can collide with it. */
export function idsFile(storeDir: string): string {
  return path.join(storeDir, IDS_FILE);
}

export function lockFile(storeDir: string): string {
  return path.join(storeDir, LOCK_FILE);
}

/** Beside volume.json, not in state/, so no partition id can collide with it. */
export function backingFile(storeDir: string): string {
  return path.join(storeDir, BACKING_FILE);
}

/** The held snapshots; beside volume.json, so no partition id can collide with it. */
export function holdsFile(storeDir: string): string {
  return path.join(storeDir, HOLDS_FILE);
}

export function stateDir(storeDir: string): string {
  return path.join(storeDir, STATE_DIR);
}

export function partitionStateFile(storeDir: string, partitionId: string): string {
  return path.join(stateDir(storeDir), `${partitionId}.json`);
}

export function snapshotsDir(storeDir: string): string {
  return path.join(storeDir, SNAPSHOTS_DIR);
}

/** The directory name of snapshot `id`: zero-padded to 8 digits so names sort by id. */
export function snapshotDirName(id: number): string {
  return String(id).padStart(8, '0');
}

/** Whether an entry of snapshots/ names a committed snapshot (not .tmp, not .deleting). */
export function isSnapshotDirName(name: string): boolean {
  return /^\d{8,}$/.test(name);
}

/** Whether an entry of snapshots/ is the leftover of an interrupted create or delete. */
export function isLeftoverName(name: string): boolean {
  return name.endsWith(PENDING_SUFFIX) || name.endsWith(DELETING_SUFFIX);
}

/** An entry of snapshots/ by its name as readdir gives it (committed or a leftover). */
export function snapshotsEntry(storeDir: string, name: string): string {
  return path.join(snapshotsDir(storeDir), name);
}

export function snapshotDir(storeDir: string, id: number): string {
  return path.join(snapshotsDir(storeDir), snapshotDirName(id));
}

/** Where a create prepares snapshot `id` before the commit rename. */
export function pendingSnapshotDir(storeDir: string, id: number): string {
  return snapshotDir(storeDir, id) + PENDING_SUFFIX;
}

/** Where a delete renames snapshot `id` before removing it. */
export function deletingSnapshotDir(storeDir: string, id: number): string {
  return snapshotDir(storeDir, id) + DELETING_SUFFIX;
}

/** snapshot.json inside a snapshot directory (committed, pending or named by its entry). */
export function snapshotRecordFile(snapDir: string): string {
  return path.join(snapDir, SNAPSHOT_RECORD_FILE);
}

/** File name of a partition's change log inside a snapshot directory. */
export function changeLogName(partitionId: string): string {
  return `${partitionId}.clog`;
}

/** File name of a partition snapshot inside a snapshot directory. */
export function partitionSnapshotName(partitionId: string): string {
  return `${partitionId}.psnap`;
}

export function changeLogFile(snapDir: string, partitionId: string): string {
  return path.join(snapDir, changeLogName(partitionId));
}

export function partitionSnapshotFile(snapDir: string, partitionId: string): string {
  return path.join(snapDir, partitionSnapshotName(partitionId));
}

/**
 * A file a snapshot record names (snapshot.json's snapshotFile and
 * changeLogFile are names relative to the snapshot's directory).
 */
export function snapshotMember(storeDir: string, id: number, name: string): string {
  return path.join(snapshotDir(storeDir, id), name);
}

/** vsnap serve's NBD socket when --socket is not given. */
export function defaultNbdSocket(storeDir: string): string {
  return path.join(storeDir, NBD_SOCKET);
}

/** The control socket's place in the store (serve falls back elsewhere when the path is too long). */
export function controlSocketInStore(storeDir: string): string {
  return path.join(storeDir, CONTROL_SOCKET);
}

export function clonesDir(storeDir: string): string {
  return path.join(storeDir, CLONES_DIR);
}

/** A clone's directory (names follow the snapshot-name rules, which exclude '+'). */
export function cloneDir(storeDir: string, name: string): string {
  return path.join(storeDir, CLONES_DIR, name);
}

/** Suffixes of a clone directory being created / deleted ('+' never appears in a name). */
/** Every name vsnap itself puts at the top of a store (with temp names derived from them). */
const STORE_NAMES = new Set([VOLUME_FILE, LOCK_FILE, IDS_FILE, BACKING_FILE, HOLDS_FILE, STATE_DIR, SNAPSHOTS_DIR, NBD_SOCKET, CONTROL_SOCKET, CLONES_DIR]);

/**
 * Entries of an existing directory without volume.json that vsnap did not
 * put there: a manifest whose "store" names a directory of the user's (".",
 * a home or bin directory) must be refused before vsnap chmods its files
 * private or replaces a file called "lock" (atomic.ts and lock.ts temp names
 * count as vsnap's own).
 */
export function foreignStoreEntries(names: readonly string[]): string[] {
  return names.filter((n) => !STORE_NAMES.has(n) && !STORE_NAMES.has(n.replace(/\.tmp-\d+-[0-9a-f]+$/, '')) && !/^lock\.\d+\.[a-z0-9]+$/.test(n));
}

export const CLONE_NEW_SUFFIX = '+new';
export const CLONE_DEL_SUFFIX = '+del';

export function cloneRecordFile(dir: string): string {
  return path.join(dir, 'clone.json');
}

/** The overlay files of one partition inside a clone directory. */
export function overlayFiles(dir: string, partitionId: string): { data: string; map: string } {
  return { data: path.join(dir, `${partitionId}.ovl`), map: path.join(dir, `${partitionId}.ovm`) };
}
