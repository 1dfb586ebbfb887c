// Partition snapshot file (<partition>.psnap): the immutable state of one
// partition at the snapshot instant (design §5). A record-json document of kind
// "vsnap-psnap". It is written into snapshots/<id>.tmp/ during PREPARE and
// becomes visible only when the coordinator renames the whole directory at the
// commit point, so it is fsynced in place rather than atomically renamed.
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { IntegrityError, fileError, namingFile } from '../errors.js';
import { createPrivateFile } from './private-file.js';
import { decodeRecord, encodeRecord } from './record-json.js';

export const PSNAP_KIND = 'vsnap-psnap';

/** Identity of a backing file at the instant; a later mismatch makes the snapshot stale. */
export interface BackingIdentity {
  dev: number;
  ino: number;
  size: number;
  mtimeMs: number;
  ctimeMs: number;
}

export interface PartitionSnapshotExtent {
  /** The file as written in the volume manifest. */
  file: string;
  /** The resolved path that was opened. */
  path: string;
  offset: number;
  length: number;
  backing: BackingIdentity;
}

export interface PartitionSnapshotState {
  volumeFingerprint: string;
  snapshotId: number;
  partitionId: string;
  length: number;
  blockSize: number;
  extents: PartitionSnapshotExtent[];
  worker: number;
  pid: number;
  /** ISO 8601. */
  createdAt: string;
  /** Basename of the change log started with this snapshot. */
  changeLogFile: string;
  /** The change log's header crc32: binds this file to that log. */
  changeLogHeaderCrc: number;
}

/**
 * Write the file (must not exist), fsync it. Returns its size and
 * "sha256:<hex>" of its exact bytes: the manifest stores these as
 * snapshotBytes / snapshotChecksum so verify can prove the committed file is
 * the one that was written (a valid but different psnap would pass its own
 * internal checksum).
 */
export async function writePartitionSnapshot(path: string, state: PartitionSnapshotState): Promise<{ bytes: number; checksum: string }> {
  const problem = checkState(state);
  if (problem) throw new Error(`writePartitionSnapshot(${path}): ${problem}`);
  const data = Buffer.from(encodeRecord(PSNAP_KIND, pickState(state)), 'utf8');
  // 'wx': a partition snapshot is immutable; overwriting one is always a bug.
  const fh = await createPrivateFile(path, 'wx');
  try {
    await fh.writeFile(data);
    await fh.sync();
  } catch (e) {
    await fh.close().catch(() => undefined);
    throw fileError(path, e);
  }
  await namingFile(path, fh.close());
  return { bytes: data.length, checksum: 'sha256:' + createHash('sha256').update(data).digest('hex') };
}

export async function readPartitionSnapshot(path: string): Promise<PartitionSnapshotState> {
  const text = await namingFile(path, readFile(path, 'utf8'));
  const fields = decodeRecord<Record<string, unknown>>(PSNAP_KIND, text, path);
  const problem = checkState(fields);
  if (problem) throw new IntegrityError(`${path}: ${problem}`);
  return pickState(fields as unknown as PartitionSnapshotState);
}

/** Exactly the documented fields, in documented order (unknown keys are not carried). */
function pickState(s: PartitionSnapshotState): PartitionSnapshotState & Record<string, unknown> {
  return {
    volumeFingerprint: s.volumeFingerprint,
    snapshotId: s.snapshotId,
    partitionId: s.partitionId,
    length: s.length,
    blockSize: s.blockSize,
    extents: s.extents.map((e) => ({
      file: e.file,
      path: e.path,
      offset: e.offset,
      length: e.length,
      backing: { dev: e.backing.dev, ino: e.backing.ino, size: e.backing.size, mtimeMs: e.backing.mtimeMs, ctimeMs: e.backing.ctimeMs },
    })),
    worker: s.worker,
    pid: s.pid,
    createdAt: s.createdAt,
    changeLogFile: s.changeLogFile,
    changeLogHeaderCrc: s.changeLogHeaderCrc,
  };
}

const isUint = (v: unknown): v is number => typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;
const isNum = (v: unknown): v is number => typeof v === 'number' && Number.isFinite(v);
const isStr = (v: unknown): v is string => typeof v === 'string' && v.length > 0;

/** First shape problem as "<field>: <what>", or undefined. Used for writing (bug) and reading (integrity). */
function checkState(s: Record<string, unknown> | PartitionSnapshotState): string | undefined {
  const o = s as Record<string, unknown>;
  if (!isStr(o.volumeFingerprint)) return 'volumeFingerprint: expected a non-empty string';
  if (!isUint(o.snapshotId) || o.snapshotId < 1) return 'snapshotId: expected a positive integer';
  if (!isStr(o.partitionId)) return 'partitionId: expected a non-empty string';
  if (!isUint(o.length)) return 'length: expected a non-negative integer';
  if (!isUint(o.blockSize) || o.blockSize === 0 || (o.blockSize & (o.blockSize - 1)) !== 0) return 'blockSize: expected a power of two';
  if (o.length % o.blockSize !== 0) return `length: ${o.length} is not a multiple of blockSize ${o.blockSize}`;
  if (!Array.isArray(o.extents) || o.extents.length === 0) return 'extents: expected a non-empty array';
  let total = 0;
  for (let i = 0; i < o.extents.length; i++) {
    const e = o.extents[i] as Record<string, unknown> | null;
    const at = `extents[${i}]`;
    if (e === null || typeof e !== 'object') return `${at}: expected an object`;
    if (!isStr(e.file)) return `${at}.file: expected a non-empty string`;
    if (!isStr(e.path)) return `${at}.path: expected a non-empty string`;
    if (!isUint(e.offset)) return `${at}.offset: expected a non-negative integer`;
    if (!isUint(e.length) || e.length === 0) return `${at}.length: expected a positive integer`;
    const b = e.backing as Record<string, unknown> | null;
    if (b === null || typeof b !== 'object') return `${at}.backing: expected an object`;
    if (!isUint(b.size)) return `${at}.backing.size: expected a non-negative integer`;
    // dev and ino come from a non-bigint stat: above 2^53 they are rounded
    // (consistently), so only require a non-negative number.
    for (const k of ['dev', 'ino'] as const) if (!isNum(b[k]) || (b[k] as number) < 0) return `${at}.backing.${k}: expected a non-negative number`;
    for (const k of ['mtimeMs', 'ctimeMs'] as const) if (!isNum(b[k])) return `${at}.backing.${k}: expected a number`;
    total += e.length;
  }
  if (total !== o.length) return `extents: lengths add up to ${total}, not the partition length ${o.length}`;
  if (!isUint(o.worker)) return 'worker: expected a non-negative integer';
  if (!isUint(o.pid) || o.pid === 0) return 'pid: expected a positive integer';
  if (!isStr(o.createdAt) || Number.isNaN(Date.parse(o.createdAt))) return 'createdAt: expected an ISO 8601 time';
  if (!isStr(o.changeLogFile) || /[/\\]/.test(o.changeLogFile) || o.changeLogFile === '.' || o.changeLogFile === '..') {
    return 'changeLogFile: expected a file name without a directory';
  }
  if (!isUint(o.changeLogHeaderCrc) || o.changeLogHeaderCrc > 0xffffffff) return 'changeLogHeaderCrc: expected a u32';
  return undefined;
}
