// The store directory of one volume (design.md §4): volume.json, the lock,
// committed snapshots and their records. This module handles metadata only;
// partition data and change logs are the workers' business.
import fs from 'node:fs';
import path from 'node:path';
import type { Volume } from '../manifest/layout.js';
import { mappingOf, describeMappingChange, type NormalizedMapping } from '../manifest/layout.js';
import { UsageError, IntegrityError } from '../errors.js';
import { readRecord, writeRecord } from '../formats/record-json.js';
import { fsyncDir } from '../formats/atomic.js';
import { StoreLock } from './lock.js';
import { isLeftoverName, isSnapshotDirName, snapshotDir, snapshotRecordFile, snapshotsDir, snapshotsEntry, stateDir, volumeFile } from './layout.js';
import { identities, planStale, readBacking, volumeFiles, writeBacking, type BackingRecord, type StaleEntry } from './backing.js';

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
      const rec = await readRecord<SnapshotRecord>(file, SNAPSHOT_KIND);
      if (rec.id !== Number(n)) throw new IntegrityError(`${file}: id ${rec.id} does not match its directory ${n}`);
      out.push(rec);
    } catch (err) {
      if (!onBad) throw err;
      onBad(n, err as Error);
    }
  }
  return out.sort((a, b) => a.id - b.id);
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
  ) {}

  static async open(volume: Volume, o: OpenStoreOptions): Promise<Store> {
    const dir = volume.storeDir;
    if (!fs.existsSync(dir)) {
      if (!o.create) return new Store(volume, dir, undefined, undefined, [], undefined);
      await fs.promises.mkdir(snapshotsDir(dir), { recursive: true });
      await fs.promises.mkdir(stateDir(dir), { recursive: true });
      await fsyncDir(dir);
      await fsyncDir(path.dirname(dir));
    }
    await fs.promises.mkdir(snapshotsDir(dir), { recursive: true });
    await fs.promises.mkdir(stateDir(dir), { recursive: true });
    const lock = await StoreLock.acquire(dir, o.command, { socket: o.socket });
    try {
      await Store.cleanLeftovers(dir);
      const snapshots = await readSnapshots(dir, o.onBadSnapshot);
      const volFile = volumeFile(dir);
      let record: VolumeRecord | undefined;
      if (fs.existsSync(volFile)) record = await readRecord<VolumeRecord>(volFile, VOLUME_KIND);
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
      if (!record) {
        const next = snapshots.length ? snapshots[snapshots.length - 1].id + 1 : 1;
        record = { name: volume.name, fingerprint: volume.fingerprint, mapping, createdAt: new Date().toISOString(), nextSnapshotId: next };
        await writeRecord(volFile, VOLUME_KIND, { ...record });
      }
      let backing = await readBacking(dir);
      if (backing) {
        const stale = planStale(volume, backing, identities(volumeFiles(volume)), snapshots.map((s) => s.id));
        if (JSON.stringify(stale) !== JSON.stringify(backing.stale)) {
          // Remember a foreign write once seen: the next clean close records
          // the files' new identity, and the staleness must outlive that.
          backing = { ...backing, stale };
          await writeBacking(dir, backing);
        }
      }
      return new Store(volume, dir, lock, record, snapshots, backing);
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
    const id = Math.max(this.record.nextSnapshotId, (this.snapshots[this.snapshots.length - 1]?.id ?? 0) + 1);
    this.record = { ...this.record, nextSnapshotId: id + 1 };
    await writeRecord(volumeFile(this.dir), VOLUME_KIND, { ...this.record });
    return id;
  }

  /** Snapshots reported stale, per partition (a backing file changed behind vsnap). */
  get stale(): StaleEntry[] {
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
      this.backing = { clean: false, files: this.backing?.files ?? [], stale: this.stale };
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
    this.backing = { clean: true, files: identities(volumeFiles(this.volume)), stale: this.stale };
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
