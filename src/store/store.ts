// The store directory of one volume (design.md §4): volume.json, the lock,
// committed snapshots and their records. This module handles metadata only;
// partition data and change logs are the workers' business.
import fs from 'node:fs';
import path from 'node:path';
import type { Volume } from '../manifest/layout.js';
import { mappingOf, describeMappingChange, type NormalizedMapping } from '../manifest/layout.js';
import { UsageError, IntegrityError } from '../errors.js';
import { readRecord, readRecordSync, writeRecord } from '../formats/record-json.js';
import { fsyncDir } from '../formats/atomic.js';
import { StoreLock } from './lock.js';
import { mkdirPrivate, tightenStore } from './private.js';
import { DELETING_SUFFIX, foreignStoreEntries, idsFile, isLeftoverName, isSnapshotDirName, snapshotDir, snapshotRecordFile, snapshotsDir, snapshotsEntry, stateDir, volumeFile } from './layout.js';
import { identities, identitiesIfPresent, leftByVsnap, planStale, readBacking, stalePerPartition, volumeFiles, writeBacking, type BackingIdentity, type BackingRecord, type StaleEntry } from './backing.js';

export interface SnapshotPartitionRecord {
  id: string;
  worker: number;
  pid: number;
  snapshotFile: string;
  changeLogFile: string;
  snapshotBytes: number;
  snapshotChecksum: string;
  changeLogHeaderCrc: number;
}

export interface SnapshotRecord {
  id: number;
  name: string;
  createdAt: string;
  expiresAt: string | null;
  /** Created with --name; absent in records of older versions (store/names.ts isManual decides those). */
  manual?: boolean;
  size: number;
  blockSize: number;
  fingerprint: string;
  coordinatorPid: number;
  freezeMs: number;
  partitions: SnapshotPartitionRecord[];
}

export interface VolumeRecord {
  name: string;
  fingerprint: string;
  mapping: NormalizedMapping;
  createdAt: string;
  nextSnapshotId: number;
  /** Committed snapshot ids, ascending: the chain (docs/formats.md). Absent in older stores. */
  snapshots?: number[];
}

export const IDS_KIND = 'vsnap-ids';

/** What reconciling volume.json's chain with the directories found (docs/formats.md, "The chain of snapshots"). */
export interface ChainState {
  /** The chain to record: committed ids, plus the missing ones. */
  chain: number[];
  /** Listed ids whose directory was removed behind vsnap. */
  missing: number[];
}

/**
 * Pure: reconcile the recorded chain with the committed directories found
 * and the ids with a `.deleting` leftover. Throws for a directory that
 * cannot belong to the chain.
 */
export function reconcileChain(listed: number[] | undefined, present: number[], deleting: number[], dirOf: (id: number) => string): ChainState {
  if (listed === undefined) return { chain: [...present], missing: [] };
  const have = new Set(present);
  const gone = new Set(deleting);
  const top = listed.length ? Math.max(...listed) : 0;
  const listedSet = new Set(listed);
  for (const id of present) {
    if (!listedSet.has(id) && id < top) {
      throw new IntegrityError(`${dirOf(id)}: snapshot ${id} is not in the store's chain of snapshots (volume.json) and is older than snapshot ${top}: it was not made by this store's history; move it away`);
    }
  }
  const kept = listed.filter((id) => have.has(id) || !gone.has(id));
  const chain = [...new Set([...kept, ...present])].sort((a, b) => a - b);
  // A missing id with no older snapshot left breaks nothing any more.
  const firstPresent = chain.find((id) => have.has(id));
  const missing = chain.filter((id) => !have.has(id) && firstPresent !== undefined && id > firstPresent);
  return { chain: chain.filter((id) => have.has(id) || missing.includes(id)), missing };
}

export const VOLUME_KIND = 'vsnap-volume';
export const SNAPSHOT_KIND = 'vsnap-snapshot';

// Paths are store/layout.ts's; these two stay exported here for existing importers.
export { snapshotDir, snapshotsDir };

/** Committed snapshot records in id order; skips uncommitted (.tmp) and deleting directories. */
export async function readSnapshots(storeDir: string, onBad?: (dir: string, err: Error) => void): Promise<SnapshotRecord[]> {
  let names: string[];
  try {
    names = await fs.promises.readdir(snapshotsDir(storeDir));
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw err;
  }
  const out: SnapshotRecord[] = [];
  for (const n of names.filter(isSnapshotDirName).sort()) {
    try {
      const file = snapshotRecordFile(snapshotsEntry(storeDir, n));
      let rec: SnapshotRecord;
      try {
        rec = readRecordSync<SnapshotRecord>(file, SNAPSHOT_KIND);
      } catch (err) {
        // A committed directory without its commit record is damage (exit 3), not an I/O failure.
        if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
        throw new IntegrityError(`${file}: the commit record of snapshot ${Number(n)} is missing (removed behind vsnap); move the directory ${path.dirname(file)} out of the store to go on without that snapshot`);
      }
      if (rec.id !== Number(n)) throw new IntegrityError(`${file}: id ${rec.id} does not match its directory ${n}`);
      out.push(rec);
    } catch (err) {
      if (!onBad) throw err;
      onBad(n, err as Error);
    }
  }
  return out.sort((a, b) => a.id - b.id);
}

/**
 * Whether the store directory exists. Not existsSync: a store this user may
 * not reach (a private `.vsnap/` of another user) must fail with EACCES, not
 * look like no store at all.
 */
/** A directory that is not (the start of) a vsnap store is the user's: exit 2 before touching it. */
export function refuseForeignStore(dir: string, manifest?: string): void {
  if (manifest) {
    const rel = path.relative(dir, path.resolve(manifest));
    if (!rel.startsWith('..') && !path.isAbsolute(rel)) throw new UsageError(`store: ${dir} holds the manifest ${manifest} itself; set "store" to a directory of its own (default: .vsnap/<name> beside the manifest)`);
  }
  if (fs.existsSync(volumeFile(dir))) return;
  let names: string[];
  try {
    names = fs.readdirSync(dir);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOTDIR') throw new UsageError(`store: ${dir} is not a directory`);
    throw err;
  }
  const foreign = foreignStoreEntries(names);
  if (foreign.length) {
    const shown = foreign.slice(0, 3).map((n) => JSON.stringify(n)).join(', ');
    throw new UsageError(`store: ${dir} exists and is not a vsnap store (it holds ${shown}${foreign.length > 3 ? ` and ${foreign.length - 3} more` : ''}); set "store" in the manifest to a new or empty directory`);
  }
}

function storeExists(dir: string): boolean {
  try {
    fs.statSync(dir);
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw err;
  }
}

/** The second copy of the id high-water mark, if readable. */
function readIds(dir: string): number | undefined {
  try {
    return readRecordSync<{ nextSnapshotId: number }>(idsFile(dir), IDS_KIND).nextSnapshotId;
  } catch {
    return undefined;
  }
}

export interface OpenStoreOptions {
  command: string;
  /** Create the store directory when missing (commands that change things). */
  create: boolean;
  socket?: string;
  /** verify: collect unreadable snapshot records here instead of failing. */
  onBadSnapshot?: (dir: string, err: Error) => void;
}

/**
 * An opened, locked store. Opening checks the mapping fingerprint against
 * volume.json and removes leftovers of interrupted creates and deletes.
 */
export class Store {
  private constructor(
    readonly volume: Volume,
    readonly dir: string,
    private readonly lock: StoreLock | undefined,
    private record: VolumeRecord | undefined,
    public snapshots: SnapshotRecord[],
    private backing: BackingRecord | undefined,
    /** Backing files as this open found them (the baseline for files vsnap does not write). */
    private readonly filesAtOpen: BackingIdentity[] = [],
  ) {}

  static async open(volume: Volume, o: OpenStoreOptions): Promise<Store> {
    const dir = volume.storeDir;
    if (storeExists(dir)) refuseForeignStore(dir, volume.manifestPath);
    else {
      if (!o.create) return new Store(volume, dir, undefined, undefined, [], undefined);
      // Private whatever the umask: change logs hold old guest data (src/store/private.ts).
      await mkdirPrivate(dir);
      await mkdirPrivate(snapshotsDir(dir));
      await mkdirPrivate(stateDir(dir));
      await fsyncDir(dir);
      await fsyncDir(path.dirname(dir));
    }
    await mkdirPrivate(snapshotsDir(dir));
    await mkdirPrivate(stateDir(dir));
    const lock = await StoreLock.acquire(dir, o.command, { socket: o.socket });
    try {
      // A store an older vsnap made 0755/0644 becomes private at its owner's next open.
      await tightenStore(dir);
      const names = fs.readdirSync(snapshotsDir(dir));
      const deleting = names.filter((n) => n.endsWith(DELETING_SUFFIX) && isSnapshotDirName(n.slice(0, -DELETING_SUFFIX.length))).map((n) => parseInt(n, 10));
      const highest = Math.max(0, ...names.map((n) => parseInt(n, 10)).filter((n) => Number.isSafeInteger(n)));
      await Store.cleanLeftovers(dir);
      const snapshots = await readSnapshots(dir, o.onBadSnapshot);
      const volFile = volumeFile(dir);
      let record: VolumeRecord | undefined;
      if (fs.existsSync(volFile)) record = await readRecord<VolumeRecord>(volFile, VOLUME_KIND);
      const chain = reconcileChain(record?.snapshots, snapshots.map((s) => s.id), deleting, (id) => snapshotDir(dir, id));
      const mapping = mappingOf(volume);
      if (record && record.fingerprint !== volume.fingerprint) {
        if (snapshots.length > 0) {
          const changes = describeMappingChange(record.mapping, mapping);
          throw new UsageError(
            `the manifest's mapping changed while ${snapshots.length} snapshot(s) exist; restore the old mapping or delete the snapshots:\n  ${changes.join('\n  ')}`,
          );
        }
        // No snapshots: the new mapping simply replaces the old one.
        record = { ...record, fingerprint: volume.fingerprint, mapping };
        await writeRecord(volFile, VOLUME_KIND, { ...record });
      }
      // Ids are never reused: the next one is above both recorded copies and every directory name.
      const ids = readIds(dir);
      const next = Math.max(record?.nextSnapshotId ?? 1, ids ?? 1, highest + 1);
      if (!record) {
        record = { name: volume.name, fingerprint: volume.fingerprint, mapping, createdAt: new Date().toISOString(), nextSnapshotId: next, snapshots: chain.chain };
        await writeRecord(volFile, VOLUME_KIND, { ...record });
      } else if (record.nextSnapshotId !== next || JSON.stringify(record.snapshots) !== JSON.stringify(chain.chain)) {
        record = { ...record, nextSnapshotId: next, snapshots: chain.chain };
        await writeRecord(volFile, VOLUME_KIND, { ...record });
      }
      let backing = await readBacking(dir);
      // With a record, a missing file fails the open as before; without one, it is reported where it is opened.
      const filesAtOpen = backing ? identities(volumeFiles(volume)) : identitiesIfPresent(volumeFiles(volume));
      if (backing) {
        const stale = planStale(volume, backing, filesAtOpen, snapshots.map((s) => s.id));
        if (JSON.stringify(stale) !== JSON.stringify(backing.stale)) {
          // Remember a foreign write once seen: the next clean close records
          // the files' new identity, and the staleness must outlive that.
          backing = { ...backing, stale };
          await writeBacking(dir, backing);
        }
      }
      const store = new Store(volume, dir, lock, record, snapshots, backing, filesAtOpen);
      store.missing = chain.missing;
      return store;
    } catch (err) {
      lock.release();
      throw err;
    }
  }

  /** Uncommitted creates (.tmp) and half-removed deletes (.deleting) never count. */
  static async cleanLeftovers(dir: string): Promise<string[]> {
    const sdir = snapshotsDir(dir);
    const removed: string[] = [];
    for (const n of await fs.promises.readdir(sdir)) {
      if (isLeftoverName(n)) {
        await fs.promises.rm(snapshotsEntry(dir, n), { recursive: true, force: true });
        removed.push(n);
      }
    }
    if (removed.length) await fsyncDir(sdir);
    return removed;
  }

  get exists(): boolean {
    return this.record !== undefined;
  }

  /** Reserve the next snapshot id durably before it is used, so ids are never reused. */
  async reserveId(): Promise<number> {
    if (!this.record) throw new Error('store not created');
    const id = Math.max(this.record.nextSnapshotId, (this.snapshots[this.snapshots.length - 1]?.id ?? 0) + 1, ...this.missing.map((m) => m + 1));
    this.record = { ...this.record, nextSnapshotId: id + 1 };
    await writeRecord(idsFile(this.dir), IDS_KIND, { nextSnapshotId: id + 1 });
    await writeRecord(volumeFile(this.dir), VOLUME_KIND, { ...this.record });
    return id;
  }

  /** Snapshots removed behind vsnap (listed in the chain, directory gone). */
  missing: number[] = [];

  /** Why snapshot `id` cannot be read, if a newer snapshot of its chain is missing. */
  broken(id: number): string | undefined {
    const m = this.missing.find((x) => x > id);
    if (m === undefined) return undefined;
    return `snapshot ${id} cannot be read: snapshot ${m} (${snapshotDir(this.dir, m)}) was removed from the store behind vsnap, and this snapshot's view needs its change logs; delete the snapshots older than ${m} to clear this`;
  }

  /** Throw the integrity error for a broken snapshot (reads, exports, restores, diffs). */
  checkChain(id: number): void {
    const why = this.broken(id);
    if (why) throw new IntegrityError(why);
  }

  /** After a create's commit rename: the new id joins the chain. */
  async committed(rec: SnapshotRecord): Promise<void> {
    this.snapshots.push(rec);
    await this.writeChain();
  }

  /** After a delete's rename to `.deleting`: the id leaves the chain. */
  async removed(id: number): Promise<void> {
    this.snapshots = this.snapshots.filter((s) => s.id !== id);
    const first = this.snapshots[0]?.id;
    this.missing = this.missing.filter((m) => first !== undefined && m > first);
    await this.writeChain();
  }

  private async writeChain(): Promise<void> {
    if (!this.record) return;
    const chain = [...new Set([...this.snapshots.map((s) => s.id), ...this.missing])].sort((a, b) => a - b);
    this.record = { ...this.record, snapshots: chain };
    await writeRecord(volumeFile(this.dir), VOLUME_KIND, { ...this.record });
  }

  /** Snapshots reported stale, one entry per partition (a backing file changed behind vsnap). */
  get stale(): StaleEntry[] {
    return stalePerPartition(this.staleMarks);
  }

  /** The stale marks as recorded, per partition and file, for the snapshots that still exist. */
  get staleMarks(): StaleEntry[] {
    const ids = new Set(this.snapshots.map((s) => s.id));
    return (this.backing?.stale ?? []).map((s) => ({ ...s, snapshots: s.snapshots.filter((i) => ids.has(i)) })).filter((s) => s.snapshots.length);
  }

  private writing: Promise<void> | undefined;

  /**
   * Before the first change of this session (called by the coordinator on
   * its first mutating request): from now on file changes may be our own.
   */
  markWriting(): Promise<void> {
    if (!this.writing) {
      this.backing = { clean: false, files: this.backing?.files ?? [], stale: this.staleMarks };
      this.writing = writeBacking(this.dir, this.backing);
    }
    return this.writing;
  }

  get wrote(): boolean {
    return this.writing !== undefined;
  }

  /** After an orderly close of a session that changed something: record the files as vsnap left them. */
  async markClean(): Promise<void> {
    if (!this.writing) return;
    await this.writing;
    this.backing = { clean: true, files: await leftByVsnap(this.dir, this.volume, this.filesAtOpen), stale: this.staleMarks };
    await writeBacking(this.dir, this.backing);
    this.writing = undefined;
  }

  async reload(): Promise<void> {
    this.snapshots = await readSnapshots(this.dir);
  }

  release(): void {
    this.lock?.release();
  }
}
