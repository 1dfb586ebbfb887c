// vsnap accept: clear the stale marks of the snapshots on some backing files,
// for an admin who has checked that what changed them left the data as it was
// (a touch, a copy back of the same bytes). The files' identities as they are
// now become the recorded ones, so the next open does not mark them again.
//
// Offline only, under the store lock: design §8 does not route it through a
// server's control socket (a server's workers hold the marks in memory), so
// while a server holds the volume the lock says "served by pid N" (exit 1).
import fs from 'node:fs';
import path from 'node:path';
import { UsageError } from '../errors.js';
import { loadManifest } from '../manifest/load.js';
import type { Volume } from '../manifest/layout.js';
import { identities, planAccept, readBacking, volumeFiles, writeBacking, type AcceptPlan } from '../store/backing.js';
import { withStore } from '../session.js';

export interface AcceptResult {
  /** The backing files accepted, as absolute paths of the manifest. */
  files: string[];
  /** The stale marks removed: snapshots of a partition, the file and why they were marked. */
  cleared: AcceptPlan['cleared'];
}

function real(p: string): string | undefined {
  try {
    return fs.realpathSync(p);
  } catch {
    return undefined;
  }
}

/** The manifest's backing file a command-line path names (relative to the working directory), or exit 2 naming it. */
export function volumeFileOf(volume: Volume, arg: string): string {
  const files = volumeFiles(volume);
  const abs = path.resolve(arg);
  const hit = files.find((f) => f === abs) ?? files.find((f) => real(f) !== undefined && real(f) === real(abs));
  if (hit) return hit;
  throw new UsageError(`${arg}: not a backing file of ${volume.manifestPath} (its files: ${files.join(', ')})`);
}

export async function accept(manifest: string, args: string[]): Promise<AcceptResult> {
  const volume = loadManifest(manifest);
  // Every file checked before the store is touched: one wrong name accepts nothing.
  const files = [...new Set(args.map((a) => volumeFileOf(volume, a)))];
  return withStore(manifest, 'accept', false, async (store) => {
    // The open has just compared the files and recorded any new marks.
    const prev = store.exists ? await readBacking(store.dir) : undefined;
    if (!prev) return { files, cleared: [] };
    const plan = planAccept(volume, prev, files, identities(files));
    await writeBacking(store.dir, plan.record);
    const live = new Set(store.snapshots.map((s) => s.id));
    const cleared = plan.cleared.map((c) => ({ ...c, snapshots: c.snapshots.filter((id) => live.has(id)) })).filter((c) => c.snapshots.length);
    return { files, cleared };
  });
}
