// Writable clones on disk (docs/formats.md "Writable clones"): the clone
// directories, their clone.json records, creating one (empty overlays) and
// removing one, each decided by a directory rename. Metadata and empty
// overlays only: the blocks written to a clone are the workers' business.
//
// `snapshotClones` / `refuseCloned` are what every snapshot delete path asks
// (delete, prune, serve --every): a snapshot with clones is never deleted.
import fs from 'node:fs';
import type { Volume } from '../manifest/layout.js';
import { IntegrityError, UsageError } from '../errors.js';
import { readRecordSync, writeRecord } from '../formats/record-json.js';
import { fsyncDir } from '../formats/atomic.js';
import { createOverlay, overlayUsedBytes, resetOverlayFiles, type OverlayHeader } from '../formats/overlay.js';
import { repairMap, type MapRepair } from '../formats/overlay-repair.js';
import { mkdirPrivate, chmodPrivateDir } from './private.js';
import { CLONE_DEL_SUFFIX, CLONE_NEW_SUFFIX, cloneDir, cloneRecordFile, clonesDir, overlayFiles } from './layout.js';

export const CLONE_KIND = 'vsnap-clone';

export interface CloneRecord {
  name: string;
  snapshot: { id: number; name: string };
  fingerprint: string;
  createdAt: string;
  /** Made with --force from a snapshot reported stale: reads of its base are not refused. */
  force: boolean;
}

function isLeftover(n: string): boolean {
  return n.endsWith(CLONE_NEW_SUFFIX) || n.endsWith(CLONE_DEL_SUFFIX);
}

/** Names of the committed clones, sorted (no leftovers); none when clones/ does not exist. */
export function cloneNames(storeDir: string): string[] {
  try {
    return fs.readdirSync(clonesDir(storeDir)).filter((n) => !isLeftover(n)).sort();
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw err;
  }
}

export function readClone(storeDir: string, name: string): CloneRecord {
  const dir = cloneDir(storeDir, name);
  const file = cloneRecordFile(dir);
  let rec: CloneRecord;
  try {
    rec = readRecordSync<CloneRecord>(file, CLONE_KIND);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    if (!fs.existsSync(dir)) throw new UsageError(`unknown clone ${JSON.stringify(name)} (run vsnap clone list to see them)`);
    // The directory is there, its record is not: damage (or something put there behind vsnap).
    throw new IntegrityError(`${file}: the record of clone ${JSON.stringify(name)} is missing; move ${dir} out of the store`);
  }
  if (rec.name !== name) throw new IntegrityError(`${file}: name ${JSON.stringify(rec.name)} does not match its directory ${JSON.stringify(name)}`);
  return rec;
}

/** Every committed clone's record, by name order. */
export function readClones(storeDir: string): CloneRecord[] {
  return cloneNames(storeDir).map((n) => readClone(storeDir, n));
}

/** Snapshot id -> the names of its clones. */
export function snapshotClones(storeDir: string): Map<number, string[]> {
  const out = new Map<number, string[]>();
  for (const c of readClones(storeDir)) out.set(c.snapshot.id, [...(out.get(c.snapshot.id) ?? []), c.name]);
  return out;
}

/** Exit 2 naming the clones, when any of the snapshots has some (the prune planner skips such snapshots instead). */
export function refuseCloned(storeDir: string, snaps: { id: number; name: string }[]): void {
  const by = snapshotClones(storeDir);
  for (const s of snaps) {
    const names = by.get(s.id);
    if (names?.length) {
      throw new UsageError(`snapshot ${s.id} "${s.name}" has clones (${names.join(', ')}): delete them first (vsnap clone delete)`);
    }
  }
}

/** Allocated bytes of a clone's overlays. */
export function cloneUsedBytes(storeDir: string, volume: Volume, name: string): number {
  const dir = cloneDir(storeDir, name);
  return volume.partitions.reduce((a, p) => a + overlayUsedBytes(overlayFiles(dir, p.id)), 0);
}

/** Remove leftovers of interrupted clone creates and deletes (the caller holds the store lock). */
export async function cleanCloneLeftovers(storeDir: string): Promise<void> {
  let names: string[];
  try {
    names = await fs.promises.readdir(clonesDir(storeDir));
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw err;
  }
  const gone = names.filter(isLeftover);
  for (const n of gone) await fs.promises.rm(cloneDir(storeDir, n), { recursive: true, force: true });
  if (gone.length) await fsyncDir(clonesDir(storeDir));
}

/** Make the clone: record and empty overlays in `<name>+new`, then the rename (the commit point). */
export async function createClone(storeDir: string, volume: Volume, rec: CloneRecord): Promise<void> {
  await mkdirPrivate(clonesDir(storeDir));
  await cleanCloneLeftovers(storeDir);
  const final = cloneDir(storeDir, rec.name);
  const tmp = final + CLONE_NEW_SUFFIX;
  await fs.promises.mkdir(tmp);
  try {
    await chmodPrivateDir(tmp);
    await writeRecord(cloneRecordFile(tmp), CLONE_KIND, { ...rec });
    for (const p of volume.partitions) {
      await createOverlay(overlayFiles(tmp, p.id), {
        partitionId: p.id,
        blockSize: volume.blockSize,
        blockCount: p.length / volume.blockSize,
        snapshotId: rec.snapshot.id,
        fingerprint: volume.fingerprint,
      });
    }
    await fsyncDir(tmp);
    // rename(2) onto an existing directory that is empty would succeed: the caller checked the name is free.
    await fs.promises.rename(tmp, final);
  } catch (err) {
    await fs.promises.rm(tmp, { recursive: true, force: true }).catch(() => undefined);
    throw err;
  }
  await fsyncDir(clonesDir(storeDir));
}

/** Remove the clone: rename to `<name>+del` (the commit point), then delete it. No worker may have it open. */
export async function removeClone(storeDir: string, name: string): Promise<void> {
  await cleanCloneLeftovers(storeDir);
  const dir = cloneDir(storeDir, name);
  const del = dir + CLONE_DEL_SUFFIX;
  await fs.promises.rename(dir, del);
  await fsyncDir(clonesDir(storeDir));
  await fs.promises.rm(del, { recursive: true, force: true });
}

/** What the headers of a clone's overlay of one partition say. */
function overlayHeader(volume: Volume, rec: CloneRecord, p: Volume['partitions'][number]): OverlayHeader {
  return { partitionId: p.id, blockSize: volume.blockSize, blockCount: p.length / volume.blockSize, snapshotId: rec.snapshot.id, fingerprint: volume.fingerprint };
}

/** Empty a clone that no worker has open (offline reset), with fresh headers (a damaged one is replaced). */
export async function resetCloneFiles(storeDir: string, volume: Volume, rec: CloneRecord): Promise<void> {
  const dir = cloneDir(storeDir, rec.name);
  for (const p of volume.partitions) await resetOverlayFiles(overlayFiles(dir, p.id), overlayHeader(volume, rec, p));
}

/**
 * Drop the bad records of a clone's damaged maps (no worker may have them
 * open: the caller holds the store lock). Every map is checked before any is
 * changed, so a damaged header (reset is its repair) changes nothing.
 */
export async function repairCloneMaps(storeDir: string, volume: Volume, rec: CloneRecord, o: { dryRun: boolean }): Promise<{ partition: string; repair: MapRepair }[]> {
  const dir = cloneDir(storeDir, rec.name);
  const out: { partition: string; repair: MapRepair }[] = [];
  for (const p of volume.partitions) {
    const repair = await repairMap(overlayFiles(dir, p.id).map, overlayHeader(volume, rec, p), { dryRun: true });
    if (repair) out.push({ partition: p.id, repair });
  }
  if (o.dryRun) return out;
  for (const x of out) {
    const p = volume.partitions.find((q) => q.id === x.partition)!;
    x.repair = (await repairMap(x.repair.file, overlayHeader(volume, rec, p), { dryRun: false }))!;
  }
  return out;
}
