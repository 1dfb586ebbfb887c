// Pure address arithmetic: volume offsets -> partitions -> backing-file
// extents, and partition-relative block numbers. No I/O here; the worker and
// the coordinator both build on these functions, and they are property-tested
// against a byte-by-byte model (test/volume-map.test.ts).

export interface MapExtent {
  path: string;
  offset: number;
  length: number;
}

export interface MapPartition {
  index: number;
  worker: number;
  volumeOffset: number;
  length: number;
  extents: MapExtent[];
}

/** A piece of a volume range that falls in one partition. */
export interface PartitionSegment {
  partition: number;
  worker: number;
  /** Offset inside the partition. */
  partOffset: number;
  length: number;
  /** Offset of this piece inside the requested range. */
  rangeOffset: number;
}

/** A piece of a partition range that falls in one backing-file extent. */
export interface FileSegment {
  extent: number;
  path: string;
  fileOffset: number;
  length: number;
  rangeOffset: number;
}

/** Index of the last element whose start is <= x (starts sorted ascending, starts[0] = 0). */
function locate(starts: readonly number[], x: number): number {
  let lo = 0;
  let hi = starts.length - 1;
  while (lo < hi) {
    const mid = (lo + hi + 1) >> 1;
    if (starts[mid] <= x) lo = mid;
    else hi = mid - 1;
  }
  return lo;
}

export function volumeSize(parts: readonly MapPartition[]): number {
  const last = parts[parts.length - 1];
  return last ? last.volumeOffset + last.length : 0;
}

/** Split a volume range into per-partition pieces, in order. Throws on out-of-range. */
export function mapVolumeRange(parts: readonly MapPartition[], offset: number, length: number): PartitionSegment[] {
  const size = volumeSize(parts);
  if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length < 0 || offset + length > size) {
    throw new RangeError(`range ${offset}+${length} is outside the volume (size ${size})`);
  }
  const out: PartitionSegment[] = [];
  if (length === 0) return out;
  const starts = parts.map((p) => p.volumeOffset);
  let i = locate(starts, offset);
  let pos = offset;
  const end = offset + length;
  while (pos < end) {
    const p = parts[i];
    const partOffset = pos - p.volumeOffset;
    const n = Math.min(end - pos, p.length - partOffset);
    if (n > 0) out.push({ partition: p.index, worker: p.worker, partOffset, length: n, rangeOffset: pos - offset });
    pos += n;
    i++;
  }
  return out;
}

/** Cumulative extent starts of a partition (cache it; extents never change while open). */
export function extentStarts(extents: readonly MapExtent[]): number[] {
  const starts: number[] = [];
  let acc = 0;
  for (const e of extents) {
    starts.push(acc);
    acc += e.length;
  }
  return starts;
}

/** Split a partition range into per-extent pieces, in order. */
export function mapPartitionRange(
  extents: readonly MapExtent[],
  partOffset: number,
  length: number,
  starts: readonly number[] = extentStarts(extents),
): FileSegment[] {
  const total = extents.length ? starts[starts.length - 1] + extents[extents.length - 1].length : 0;
  if (!Number.isSafeInteger(partOffset) || !Number.isSafeInteger(length) || partOffset < 0 || length < 0 || partOffset + length > total) {
    throw new RangeError(`range ${partOffset}+${length} is outside the partition (size ${total})`);
  }
  const out: FileSegment[] = [];
  if (length === 0) return out;
  let i = locate(starts, partOffset);
  let pos = partOffset;
  const end = partOffset + length;
  while (pos < end) {
    const e = extents[i];
    const within = pos - starts[i];
    const n = Math.min(end - pos, e.length - within);
    if (n > 0) out.push({ extent: i, path: e.path, fileOffset: e.offset + within, length: n, rangeOffset: pos - partOffset });
    pos += n;
    i++;
  }
  return out;
}

/** Blocks [first, last] touched by a partition range (length > 0). */
export function blockSpan(partOffset: number, length: number, blockSize: number): { first: number; last: number } {
  return { first: Math.floor(partOffset / blockSize), last: Math.floor((partOffset + length - 1) / blockSize) };
}

/** Merge sorted-or-not byte ranges into sorted, non-overlapping, non-adjacent ranges. */
export function mergeRanges(ranges: { offset: number; length: number }[]): { offset: number; length: number }[] {
  const sorted = ranges.filter((r) => r.length > 0).sort((a, b) => a.offset - b.offset);
  const out: { offset: number; length: number }[] = [];
  for (const r of sorted) {
    const last = out[out.length - 1];
    if (last && r.offset <= last.offset + last.length) {
      last.length = Math.max(last.length, r.offset + r.length - last.offset);
    } else out.push({ offset: r.offset, length: r.length });
  }
  return out;
}

export interface Range {
  offset: number;
  length: number;
}

export interface FileRange extends Range {
  file: string;
}

/**
 * Changed blocks per partition (partition-relative block numbers) as merged
 * volume ranges and, per backing file (named as the manifest names it),
 * merged file ranges: what `diff` reports.
 */
export function changedRanges(
  partitions: (MapPartition & { extents: (MapExtent & { file: string })[] })[],
  blockSize: number,
  changed: { index: number; blocks: number[] }[],
): { ranges: Range[]; fileRanges: FileRange[] } {
  const ranges: Range[] = [];
  const files = new Map<string, Range[]>();
  for (const p of changed) {
    const part = partitions[p.index];
    for (const l of mergeRanges(p.blocks.map((b) => ({ offset: b * blockSize, length: blockSize })))) {
      ranges.push({ offset: part.volumeOffset + l.offset, length: l.length });
      for (const s of mapPartitionRange(part.extents, l.offset, l.length)) {
        const file = part.extents[s.extent].file;
        files.set(file, [...(files.get(file) ?? []), { offset: s.fileOffset, length: s.length }]);
      }
    }
  }
  const fileRanges: FileRange[] = [];
  for (const [file, rs] of [...files].sort((a, b) => a[0].localeCompare(b[0]))) {
    for (const r of mergeRanges(rs)) fileRanges.push({ file, ...r });
  }
  return { ranges: mergeRanges(ranges), fileRanges };
}
