// The clone pass of `vsnap verify` (docs/formats.md "Writable clones"): each
// clone's clone.json, its base snapshot, and per partition the headers of
// its .ovl and .ovm and every map record. Read-only: a torn tail of a map is
// left where it is (the next open cuts it, docs/formats.md "Open and
// recovery") and is not a problem, since recovery accepts it; what is
// reported is what would make the clone unreadable (a bad header, a bad
// record followed by valid ones, a whole bad record with the record magic,
// which the open refuses) or wrong (a mapped block whose slot lies
// past the end of the .ovl, so it would read as zeros). Block data has no
// checksum (it is live), so the .ovl is not read beyond its header.
import fs from 'node:fs';
import type { Volume } from '../manifest/layout.js';
import { describeErrnoError, isErrnoError } from '../errors.js';
import { MAP_DAMAGE_HINT, OVERLAY_HEADER_SIZE, checkOverlayHeader, describeMapDamage, scanMapRecords, type OverlayHeader } from '../formats/overlay.js';
import { cloneNames, readClone, type CloneRecord } from '../store/clones.js';
import { cloneDir, cloneRecordFile, overlayFiles } from '../store/layout.js';
import { requireRegularFileSync } from '../io/regular-file.js';

export interface CloneProblem {
  clone: string;
  /** The clone's base snapshot, when its clone.json could be read. */
  snapshot: number | null;
  partition: string | null;
  file: string | null;
  message: string;
}

export interface CloneCheck {
  /** Clones checked. */
  clones: number;
  bytesRead: number;
  problems: CloneProblem[];
}

/**
 * Pure: the problem of a map's record area under the rule recovery applies
 * (overlay.ts scanMapRecords): a torn tail is none; a bad record followed by
 * a valid one, or a whole one with the record magic, is.
 */
export function mapRecordsProblem(records: Buffer, blockCount: number): { blocks: { block: number; offset: number }[]; problem?: string } {
  const scan = scanMapRecords(records, blockCount);
  if (!scan.damage) return { blocks: scan.blocks };
  const d = describeMapDamage(scan.damage);
  return { blocks: scan.blocks, problem: `map record at offset ${d.offset}: ${d.text}; the clone cannot be opened: ${MAP_DAMAGE_HINT}` };
}

/** An overlay file's failure in the project's words: "missing", or the call, file and errno (never Node's raw text). */
function fileProblem(file: string, err: unknown): string {
  if (!isErrnoError(err)) return (err as Error).message;
  if (err.code === 'ENOENT') return `${file}: missing (an overlay file of the clone; vsnap clone reset makes it again, which empties the clone)`;
  return describeErrnoError(err, file);
}

/** A whole file, or its failure in words. */
function readWhole(file: string): Buffer {
  try {
    requireRegularFileSync(file);
    return fs.readFileSync(file);
  } catch (err) {
    throw new Error(fileProblem(file, err));
  }
}

/** Bytes the clone pass will read (for the progress line): every map, and each data file's header. */
export function cloneBytesToRead(storeDir: string, volume: Volume, only?: number): number {
  let total = 0;
  for (const name of cloneNames(storeDir)) {
    if (only !== undefined && baseOf(storeDir, name) !== only) continue;
    for (const p of volume.partitions) {
      const f = overlayFiles(cloneDir(storeDir, name), p.id);
      try {
        total += fs.statSync(f.map).size + OVERLAY_HEADER_SIZE;
      } catch {
        /* a missing file is a problem the pass reports */
      }
    }
  }
  return total;
}

/** The clone's snapshot id, or undefined when its record cannot be read (the pass reports that). */
function baseOf(storeDir: string, name: string): number | undefined {
  try {
    return readClone(storeDir, name).snapshot.id;
  } catch {
    return undefined;
  }
}

/**
 * Check every clone (or only those of snapshot `only`). `snapshots` are the
 * store's committed snapshots: a clone's base must be one of them.
 */
export function verifyClones(
  storeDir: string,
  volume: Volume,
  snapshots: readonly { id: number }[],
  o: { only?: number; onProgress?: (bytes: number) => void } = {},
): CloneCheck {
  const problems: CloneProblem[] = [];
  let bytesRead = 0;
  let clones = 0;
  for (const name of cloneNames(storeDir)) {
    const dir = cloneDir(storeDir, name);
    let rec: CloneRecord;
    try {
      rec = readClone(storeDir, name);
    } catch (err) {
      if (o.only === undefined) {
        clones++;
        problems.push({ clone: name, snapshot: null, partition: null, file: cloneRecordFile(dir), message: (err as Error).message });
      }
      continue;
    }
    if (o.only !== undefined && rec.snapshot.id !== o.only) continue;
    clones++;
    const problem = (partition: string | null, file: string | null, message: string) => problems.push({ clone: name, snapshot: rec.snapshot.id, partition, file, message });
    if (!snapshots.some((s) => s.id === rec.snapshot.id)) {
      problem(null, cloneRecordFile(dir), `the clone's snapshot ${rec.snapshot.id} "${rec.snapshot.name}" is not in the store (removed behind vsnap): the clone has no base to read`);
    }
    if (rec.fingerprint !== volume.fingerprint) {
      problem(null, cloneRecordFile(dir), `clone.json records mapping ${rec.fingerprint}, the volume has ${volume.fingerprint}`);
    }
    for (const p of volume.partitions) {
      const files = overlayFiles(dir, p.id);
      const want: OverlayHeader = {
        partitionId: p.id,
        blockSize: volume.blockSize,
        blockCount: p.length / volume.blockSize,
        snapshotId: rec.snapshot.id,
        fingerprint: volume.fingerprint,
      };
      // The data file: its header, and its size (a mapped slot past the end reads as zeros).
      let dataSize: number | undefined;
      try {
        requireRegularFileSync(files.data);
        const fd = fs.openSync(files.data, 'r');
        try {
          const hdr = Buffer.alloc(OVERLAY_HEADER_SIZE);
          const n = fs.readSync(fd, hdr, 0, hdr.length, 0);
          bytesRead += n;
          o.onProgress?.(n);
          dataSize = fs.fstatSync(fd).size;
          checkOverlayHeader('data', hdr.subarray(0, n), files.data, want);
        } finally {
          fs.closeSync(fd);
        }
      } catch (err) {
        problem(p.id, files.data, fileProblem(files.data, err));
      }
      let map: Buffer;
      try {
        map = readWhole(files.map);
      } catch (err) {
        problem(p.id, files.map, (err as Error).message);
        continue;
      }
      bytesRead += map.length;
      o.onProgress?.(map.length);
      try {
        checkOverlayHeader('map', map.subarray(0, OVERLAY_HEADER_SIZE), files.map, want);
      } catch (err) {
        // Records under a header that is not this clone's cannot be trusted: no record checks.
        problem(p.id, files.map, (err as Error).message);
        continue;
      }
      const { blocks, problem: bad } = mapRecordsProblem(map.subarray(OVERLAY_HEADER_SIZE), want.blockCount);
      if (bad) problem(p.id, files.map, `${files.map}: ${bad}`);
      if (dataSize === undefined) continue;
      const past = blocks.filter((b) => OVERLAY_HEADER_SIZE + (b.block + 1) * volume.blockSize > dataSize);
      if (past.length) {
        const first = past[0];
        problem(
          p.id,
          files.data,
          `${past.length} mapped block(s) lie past the end of the data file (${dataSize} bytes), first block ${first.block} (map record at offset ${first.offset} of ${files.map}): their data is gone (the file was cut behind vsnap)`,
        );
      }
    }
  }
  return { clones, bytesRead, problems };
}
