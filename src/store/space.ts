// Space the store takes and the room left for it (issue 10 item 8).
//
// Definitions (README "Space", docs/decisions.md):
// - a snapshot's used bytes: the allocated bytes (st_blocks x 512, what
//   `du -B1` counts) of the files in snapshots/<id>/: its record, partition
//   snapshots and change logs. Deleting it frees at most that much (its
//   change-log blocks move into the previous snapshot's log, so less).
// - the store's total: allocated bytes of every file under the store.
// - the clones' total: allocated bytes of every file under clones/.
// - free: what the store's file system gives an unprivileged writer
//   (statfs f_bavail x f_bsize, as `df` shows "Avail").
// - the recent rate: bytes the newest snapshot's change logs hold, over
//   the time since that snapshot was taken (at least a minute, so a fresh
//   snapshot's first burst is not taken for a rate). Writes only take store
//   space through the newest logs (design §5), so this is the store's growth.
//   The warning: free space is less than one more hour at that rate.
import fs from 'node:fs';
import path from 'node:path';
import { CLONES_DIR, snapshotDir, snapshotsDir } from './layout.js';

export interface SpaceReport {
  storeBytes: number;
  snapshotsBytes: number;
  clonesBytes: number;
  freeBytes: number;
  /** Bytes per hour the newest snapshot's change logs grew at; null without snapshots. */
  recentBytesPerHour: number | null;
  /** Set when freeBytes < recentBytesPerHour: the store may fill within the hour. */
  warning: string | null;
}

/** Allocated bytes of a file or of everything under a directory (not following links); 0 when absent. */
export function allocatedBytes(p: string): number {
  let st: fs.Stats;
  try {
    st = fs.lstatSync(p);
  } catch {
    return 0;
  }
  if (!st.isDirectory()) return st.blocks * 512;
  let total = st.blocks * 512;
  let names: string[];
  try {
    names = fs.readdirSync(p);
  } catch {
    return total;
  }
  for (const n of names) total += allocatedBytes(path.join(p, n));
  return total;
}

/** A snapshot's own bytes: its directory's files (the directory entry itself not counted). */
export function snapshotUsedBytes(storeDir: string, id: number): number {
  const dir = snapshotDir(storeDir, id);
  let names: string[];
  try {
    names = fs.readdirSync(dir);
  } catch {
    return 0;
  }
  return names.reduce((a, n) => a + allocatedBytes(path.join(dir, n)), 0);
}

/** Free bytes on the file system holding `dir` for a normal user (df's "Avail"). */
export function freeBytes(dir: string): number {
  // Test-only seam, for machines where a test cannot mount a small tmpfs
  // (test/space.test.ts mounts one when it can).
  const fake = process.env.VSNAP_TEST_FREE_BYTES;
  if (fake !== undefined && /^\d+$/.test(fake)) return Number(fake);
  // A store not made yet (no create so far) will be made on the file
  // system of its nearest existing ancestor: that is the space it will have.
  let at = dir;
  while (!fs.existsSync(at) && path.dirname(at) !== at) at = path.dirname(at);
  const s = fs.statfsSync(at);
  return s.bavail * s.bsize;
}

const MIN_WINDOW_MS = 60_000;
const HOUR_MS = 3_600_000;

/** Pure: the growth rate and the warning, from the figures (unit-tested). */
export function judgeSpace(free: number, newestLogBytes: number | null, sinceMs: number): { recentBytesPerHour: number | null; warning: string | null } {
  if (newestLogBytes === null) return { recentBytesPerHour: null, warning: null };
  const perHour = Math.round((newestLogBytes / Math.max(sinceMs, MIN_WINDOW_MS)) * HOUR_MS);
  if (perHour > 0 && free < perHour) {
    return { recentBytesPerHour: perHour, warning: `free space (${free} bytes) is less than one more hour of writes at the recent rate (${perHour} bytes/hour)` };
  }
  return { recentBytesPerHour: perHour, warning: null };
}

export function storeSpace(storeDir: string, snapshots: { id: number; createdAt: string; partitions: { changeLogFile: string }[] }[], now = Date.now()): SpaceReport {
  const storeBytes = allocatedBytes(storeDir);
  const snapshotsBytes = allocatedBytes(snapshotsDir(storeDir));
  const clonesBytes = allocatedBytes(path.join(storeDir, CLONES_DIR));
  const free = freeBytes(fs.existsSync(storeDir) ? storeDir : path.dirname(storeDir));
  const newest = snapshots[snapshots.length - 1];
  const logBytes = newest ? newest.partitions.reduce((a, p) => a + allocatedBytes(path.join(snapshotDir(storeDir, newest.id), p.changeLogFile)), 0) : null;
  const since = newest ? now - Date.parse(newest.createdAt) : 0;
  return { storeBytes, snapshotsBytes, clonesBytes, freeBytes: free, ...judgeSpace(free, logBytes, since) };
}
