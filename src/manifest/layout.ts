// Pure planning: a structurally valid manifest -> the volume layout, with the
// rules that need no file system (alignment, block size, unique ids).
import path from 'node:path';
import { createHash } from 'node:crypto';
import type { RawManifest } from './schema.js';

export const DEFAULT_BLOCK_SIZE = 64 * 1024;
export const SECTOR = 512;

export interface ExtentLayout {
  /** The file as written in the manifest (relative to the manifest's directory). */
  file: string;
  /** Absolute path. */
  path: string;
  offset: number;
  length: number;
  /** "raw" when the manifest vouches for the file's first bytes being data (image-header.ts). */
  format?: 'raw';
}

/** An extent whose own fields are valid, with its JSON path: what the file checks look at. */
export interface PlannedExtent extends ExtentLayout {
  where: string;
}

/**
 * What planLayout reads: a schema-valid manifest, or what is usable of one
 * with problems (inspect.ts). A hole (undefined) is a part the schema stage
 * already refused; the checks that need it are skipped rather than repeated.
 */
export interface LayoutInput {
  name?: string;
  /** null: present but refused by the schema stage. */
  blockSize?: number | null;
  store?: string;
  partitions: (
    | undefined
    | {
        id?: string;
        worker?: number;
        extents: ({ file: string; offset?: number; length: number; format?: 'raw' } | undefined)[] | undefined;
      }
  )[];
}

export interface PartitionLayout {
  index: number;
  id: string;
  worker: number;
  extents: ExtentLayout[];
  /** Bytes in the partition (sum of its extents). */
  length: number;
  /** Where the partition starts in the volume. */
  volumeOffset: number;
}

export interface Volume {
  manifestPath: string;
  dir: string;
  name: string;
  blockSize: number;
  storeDir: string;
  partitions: PartitionLayout[];
  size: number;
  /** sha256 of the normalized mapping (see mappingOf). */
  fingerprint: string;
}

export interface LayoutIssue {
  path: string;
  message: string;
  value: unknown;
}

/**
 * The part of the manifest that decides where bytes live. Worker pinning, the
 * volume name and the store are left out: re-pinning a partition to another
 * worker moves no byte, so it is allowed while snapshots exist.
 */
export interface NormalizedMapping {
  blockSize: number;
  partitions: { id: string; extents: { file: string; offset: number; length: number }[] }[];
}

export function mappingOf(v: Pick<Volume, 'blockSize' | 'partitions'>): NormalizedMapping {
  return {
    blockSize: v.blockSize,
    partitions: v.partitions.map((p) => ({
      id: p.id,
      // "./disk.img" and "disk.img" name the same file; only a real change of
      // file should change the fingerprint.
      extents: p.extents.map((e) => ({ file: path.normalize(e.file), offset: e.offset, length: e.length })),
    })),
  };
}

export function fingerprintOf(m: NormalizedMapping): string {
  return createHash('sha256').update(JSON.stringify(m)).digest('hex');
}

/** Describe how two mappings differ, for the "mapping changed" refusal. */
export function describeMappingChange(before: NormalizedMapping, after: NormalizedMapping): string[] {
  const out: string[] = [];
  if (before.blockSize !== after.blockSize) out.push(`blockSize changed from ${before.blockSize} to ${after.blockSize}`);
  const b = new Map(before.partitions.map((p, i) => [p.id, { p, i }]));
  const a = new Map(after.partitions.map((p, i) => [p.id, { p, i }]));
  for (const [id] of b) if (!a.has(id)) out.push(`partition "${id}" was removed`);
  for (const [id] of a) if (!b.has(id)) out.push(`partition "${id}" was added`);
  for (const [id, { p, i }] of a) {
    const old = b.get(id);
    if (!old) continue;
    if (old.i !== i) out.push(`partition "${id}" moved from position ${old.i} to ${i}`);
    if (JSON.stringify(old.p.extents) !== JSON.stringify(p.extents)) {
      out.push(`partition "${id}" extents changed from ${JSON.stringify(old.p.extents)} to ${JSON.stringify(p.extents)}`);
    }
  }
  return out;
}

function isPowerOfTwo(n: number): boolean {
  return n > 0 && Number.isInteger(Math.log2(n)) && 2 ** Math.log2(n) === n;
}

/**
 * Build the layout. Returns issues instead of throwing so the caller can
 * report every problem at once; `extents` lists every extent whose own
 * fields passed, for the file checks, even when other parts have problems.
 * The volume exists only when the input is whole and has no problem.
 */
export function planLayout(raw: LayoutInput, manifestPath: string): { volume?: Volume; issues: LayoutIssue[]; extents: PlannedExtent[] } {
  const issues: LayoutIssue[] = [];
  const planned: PlannedExtent[] = [];
  const dir = path.dirname(path.resolve(manifestPath));
  let whole = raw.name !== undefined && raw.blockSize !== null;
  const blockSize = raw.blockSize ?? DEFAULT_BLOCK_SIZE;
  const blockSizeOk = raw.blockSize !== null && isPowerOfTwo(blockSize) && blockSize >= 4096 && blockSize <= 4 * 1024 * 1024;
  if (raw.blockSize !== null && !blockSizeOk) {
    issues.push({ path: 'blockSize', message: 'must be a power of two from 4KiB to 4MiB', value: blockSize });
  }
  const seen = new Map<string, number>();
  const partitions: PartitionLayout[] = [];
  let volumeOffset = 0;
  raw.partitions.forEach((p, pi) => {
    if (p === undefined) {
      whole = false;
      return;
    }
    if (p.id === undefined || p.worker === undefined || p.extents === undefined) whole = false;
    const prev = p.id === undefined ? undefined : seen.get(p.id);
    if (prev !== undefined) {
      issues.push({ path: `partitions[${pi}].id`, message: `duplicates partitions[${prev}].id`, value: p.id });
    } else if (p.id !== undefined) seen.set(p.id, pi);
    let length = 0;
    const before = issues.length;
    let extentsWhole = p.extents !== undefined;
    const extents: ExtentLayout[] = [];
    (p.extents ?? []).forEach((e, ei) => {
      if (e === undefined) {
        extentsWhole = false;
        return;
      }
      const offset = e.offset ?? 0;
      const where = `partitions[${pi}].extents[${ei}]`;
      const own = issues.length;
      if (offset % SECTOR !== 0) issues.push({ path: `${where}.offset`, message: 'must be a multiple of 512', value: offset });
      if (e.length <= 0) issues.push({ path: `${where}.length`, message: 'must be greater than 0', value: e.length });
      else if (e.length % SECTOR !== 0) issues.push({ path: `${where}.length`, message: 'must be a multiple of 512', value: e.length });
      if (offset + e.length > Number.MAX_SAFE_INTEGER) {
        issues.push({ path: `${where}.length`, message: 'offset + length must be at most 2^53-1', value: e.length });
      }
      length += e.length;
      const layout: ExtentLayout = { file: e.file, path: path.resolve(dir, e.file), offset, length: e.length, ...(e.format ? { format: e.format } : {}) };
      extents.push(layout);
      if (issues.length === own) planned.push({ ...layout, where });
    });
    // A partition total is only meaningful when its own extents and the block
    // size are valid; otherwise this would repeat a problem already reported.
    // Other partitions' problems must not hide this one.
    const extentsOk = issues.length === before && extentsWhole;
    if (!extentsWhole) whole = false;
    if (blockSizeOk && extentsOk && length % blockSize !== 0) {
      issues.push({
        path: `partitions[${pi}]`,
        message: `total length ${length} must be a multiple of blockSize ${blockSize}`,
        value: length,
      });
    }
    partitions.push({ index: pi, id: p.id ?? '', worker: p.worker ?? 0, extents, length, volumeOffset });
    volumeOffset += length;
  });
  if (volumeOffset > Number.MAX_SAFE_INTEGER) {
    issues.push({ path: 'partitions', message: 'volume size must be at most 2^53-1 bytes', value: volumeOffset });
  }
  if (issues.length || !whole) return { issues, extents: planned };
  const storeDir = raw.store ? path.resolve(dir, raw.store) : path.join(dir, '.vsnap', raw.name!);
  const volume: Volume = {
    manifestPath: path.resolve(manifestPath),
    dir,
    name: raw.name!,
    blockSize,
    storeDir,
    partitions,
    size: volumeOffset,
    fingerprint: '',
  };
  volume.fingerprint = fingerprintOf(mappingOf(volume));
  return { volume, issues, extents: planned };
}
