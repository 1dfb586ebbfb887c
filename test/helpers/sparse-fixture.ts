// Sparse test volumes and allocation models that never go through vsnap:
// each backing file's map comes from nbdkit's file plugin (the reference
// server, same lseek view of the same files), translated to volume
// coordinates through the manifest; a snapshot's map adds its logged blocks,
// computed from the writes the test made.
import fs from 'node:fs';
import path from 'node:path';
import type { Fixture } from './volume-fixture.js';
import { runOk } from '../nbd/harness.js';

export const KiB = 1024;
export const MiB = 1024 * 1024;
const SECTOR = 512;

/** One nbdinfo --map --json entry: type 0 data, 3 hole+zero (2 zero only). */
export interface MapEntry {
  offset: number;
  length: number;
  type: number;
}

/**
 * Awkward geometry over sparse files: partitions spanning files, extents not
 * block-aligned inside (512-byte multiples), extents in non-file order, gaps.
 * Files: a.img 8 MiB, b.img 6 MiB, all holes until putFile writes data. The
 * volume is named `model`, as test/crash/harness.ts's readers of the store expect.
 */
export function makeSparseFixture(dir: string, blockSize = 64 * KiB): Fixture & { volumeOffsets: number[] } {
  const files: Record<string, number> = { 'a.img': 8 * MiB, 'b.img': 6 * MiB };
  const partitions = [
    { id: 'p0', worker: 0, extents: [{ file: 'a.img', offset: 0, length: 2 * MiB }] },
    {
      id: 'p1',
      worker: 1,
      extents: [
        { file: 'b.img', offset: 1 * MiB, length: 2 * MiB - 1536 },
        { file: 'a.img', offset: 4 * MiB, length: 1 * MiB + 1536 },
      ],
    },
    {
      id: 'p2',
      worker: 0,
      extents: [
        { file: 'b.img', offset: 4 * MiB, length: 2 * MiB },
        { file: 'a.img', offset: 6 * MiB, length: 1 * MiB },
      ],
    },
  ];
  const initial = new Map<string, Buffer>();
  for (const [f, size] of Object.entries(files)) {
    fs.closeSync(fs.openSync(path.join(dir, f), 'w'));
    fs.truncateSync(path.join(dir, f), size);
    initial.set(f, Buffer.alloc(size));
  }
  const manifest = path.join(dir, 'volume.json');
  fs.writeFileSync(manifest, JSON.stringify({ name: 'model', blockSize, partitions }, null, 2));
  const lengths = partitions.map((p) => p.extents.reduce((a, e) => a + e.length, 0));
  const volumeOffsets = lengths.map((_, k) => lengths.slice(0, k).reduce((a, b) => a + b, 0));
  return { dir, manifest, blockSize, size: lengths.reduce((a, b) => a + b, 0), partitions, initial, volumeOffsets };
}

/** Write bytes straight into a backing file (before vsnap serves it); fx.initial follows. */
export function putFile(fx: Fixture, file: string, offset: number, data: Buffer): void {
  data.copy(fx.initial.get(file)!, offset);
  const fd = fs.openSync(path.join(fx.dir, file), 'r+');
  try {
    fs.writeSync(fd, data, 0, data.length, offset);
  } finally {
    fs.closeSync(fd);
  }
}

/** Per 512-byte sector of the volume: 0 data, 3 hole. */
function toSectors(entries: MapEntry[], size: number): Uint8Array {
  const s = new Uint8Array(size / SECTOR).fill(255);
  for (const e of entries) s.fill(e.type, Math.floor(e.offset / SECTOR), Math.ceil((e.offset + e.length) / SECTOR));
  return s;
}

function fromSectors(s: Uint8Array): MapEntry[] {
  const out: MapEntry[] = [];
  for (let k = 0; k < s.length; k++) {
    const last = out[out.length - 1];
    if (last && last.type === s[k]) last.length += SECTOR;
    else out.push({ offset: k * SECTOR, length: SECTOR, type: s[k] });
  }
  return out;
}

/** A map as merged runs (adjacent equal types joined), comparable with deepEqual. */
export function normalise(entries: MapEntry[], size: number): MapEntry[] {
  return fromSectors(toSectors(entries, size));
}

/** nbdinfo --map --json of a URI, merged. */
export async function nbdMap(uri: string, size: number): Promise<MapEntry[]> {
  const r = await runOk('nbdinfo', ['--map', '--json', uri]);
  const entries = (JSON.parse(r.stdout) as MapEntry[]).map((e) => ({ offset: e.offset, length: e.length, type: e.type }));
  return normalise(entries, size);
}

/** What nbdkit's file plugin says of one file. */
export async function nbdkitFileMap(file: string): Promise<MapEntry[]> {
  const r = await runOk('nbdkit', ['-U', '-', 'file', file, '--run', 'nbdinfo --map --json "$uri"']);
  return JSON.parse(r.stdout) as MapEntry[];
}

/** The live volume's map from nbdkit's per-file maps through the manifest. */
export async function referenceLiveMap(fx: Fixture): Promise<MapEntry[]> {
  const maps = new Map<string, MapEntry[]>();
  for (const f of fx.initial.keys()) maps.set(f, await nbdkitFileMap(path.join(fx.dir, f)));
  const out: MapEntry[] = [];
  let pos = 0;
  for (const p of fx.partitions) {
    for (const x of p.extents) {
      for (const e of maps.get(x.file)!) {
        const s = Math.max(e.offset, x.offset);
        const t = Math.min(e.offset + e.length, x.offset + x.length);
        if (t > s) out.push({ offset: pos + s - x.offset, length: t - s, type: e.type });
      }
      pos += x.length;
    }
  }
  return normalise(out, fx.size);
}

/** Volume ranges of the whole blocks (partition-relative blocks) a volume range touches. */
export function touchedBlocks(fx: Fixture & { volumeOffsets: number[] }, offset: number, length: number): { offset: number; length: number }[] {
  const out: { offset: number; length: number }[] = [];
  const bs = fx.blockSize;
  fx.partitions.forEach((p, k) => {
    const start = fx.volumeOffsets[k];
    const plen = p.extents.reduce((a, e) => a + e.length, 0);
    const s = Math.max(offset, start);
    const e = Math.min(offset + length, start + plen);
    if (e <= s) return;
    const first = Math.floor((s - start) / bs);
    const last = Math.floor((e - 1 - start) / bs);
    out.push({ offset: start + first * bs, length: (last - first + 1) * bs });
  });
  return out;
}

/** A snapshot's map: data where its logs hold a block, else the live allocation (design.md §9). */
export function snapshotMapModel(live: MapEntry[], logged: { offset: number; length: number }[], size: number): MapEntry[] {
  const s = toSectors(live, size);
  for (const r of logged) s.fill(0, r.offset / SECTOR, (r.offset + r.length) / SECTOR);
  return fromSectors(s);
}

/** Bytes the file system allocated to a file. */
export function allocatedBytes(file: string): number {
  return fs.statSync(file).blocks * 512;
}

/** A flat image file with `content`, allocated only where `map` says data (the reference for copies). */
export function writeSparseImage(file: string, content: Buffer, map: MapEntry[]): void {
  fs.closeSync(fs.openSync(file, 'w'));
  fs.truncateSync(file, content.length);
  const fd = fs.openSync(file, 'r+');
  try {
    for (const e of map) if (e.type === 0) fs.writeSync(fd, content, e.offset, e.length, e.offset);
  } finally {
    fs.closeSync(fd);
  }
}

/** Allocated bytes of `nbdcopy -S 0` from nbdkit's file plugin serving `image`: what a copy of that map costs. */
export async function referenceCopyAllocation(image: string, out: string): Promise<number> {
  await runOk('nbdkit', ['-U', '-', 'file', image, '--run', `nbdcopy -S 0 "$uri" ${JSON.stringify(out)}`]);
  return allocatedBytes(out);
}
