// vsnap init: make a demo volume (sparse backing files and a manifest).
import fs from 'node:fs';
import path from 'node:path';
import { UsageError } from '../errors.js';

export interface InitOptions {
  dir: string;
  files: number;
  fileSize: number;
  partitions: number;
  workers: number;
  blockSize: number;
  name: string;
}

export interface DemoPlan {
  files: { name: string; size: number }[];
  manifest: {
    name: string;
    blockSize: number;
    partitions: { id: string; worker: number; extents: { file: string; offset: number; length: number }[] }[];
  };
}

/**
 * Pure: lay the partitions end to end over the files taken in order, so that
 * with the defaults (3 files, 4 partitions) partitions cross file boundaries.
 */
export function planDemo(o: Omit<InitOptions, 'dir'>): DemoPlan {
  if (o.fileSize % 512 !== 0 || o.fileSize <= 0) throw new UsageError(`--file-size: must be a positive multiple of 512 (got ${o.fileSize})`);
  const bs = o.blockSize;
  if (!(bs >= 4096 && bs <= 4 << 20 && (bs & (bs - 1)) === 0)) {
    throw new UsageError(`--block-size: must be a power of two from 4KiB to 4MiB (got ${bs})`);
  }
  const total = o.files * o.fileSize;
  const per = Math.floor(total / o.partitions / bs) * bs;
  if (per === 0) {
    throw new UsageError(`--file-size: ${o.files} files of ${o.fileSize} bytes are too small for ${o.partitions} partitions of at least one ${bs}-byte block`);
  }
  const files = Array.from({ length: o.files }, (_, i) => ({ name: `disk-${i}.img`, size: o.fileSize }));
  const partitions: DemoPlan['manifest']['partitions'] = [];
  let pos = 0; // position in the concatenation of all files
  for (let p = 0; p < o.partitions; p++) {
    const want = p === o.partitions - 1 ? Math.floor((total - pos) / bs) * bs : per;
    const extents: { file: string; offset: number; length: number }[] = [];
    let left = want;
    while (left > 0) {
      const fi = Math.floor(pos / o.fileSize);
      const off = pos % o.fileSize;
      const n = Math.min(left, o.fileSize - off);
      extents.push({ file: files[fi].name, offset: off, length: n });
      pos += n;
      left -= n;
    }
    partitions.push({ id: `part${p}`, worker: p % o.workers, extents });
  }
  return { files, manifest: { name: o.name, blockSize: bs, partitions } };
}

export async function init(o: InitOptions): Promise<{ manifest: string; files: string[]; size: number }> {
  const plan = planDemo(o);
  const manifestPath = path.join(o.dir, 'volume.json');
  if (fs.existsSync(manifestPath)) throw new UsageError(`<dir>: ${manifestPath} already exists; choose an empty directory`);
  for (const f of plan.files) {
    if (fs.existsSync(path.join(o.dir, f.name))) throw new UsageError(`<dir>: ${path.join(o.dir, f.name)} already exists; choose an empty directory`);
  }
  fs.mkdirSync(o.dir, { recursive: true });
  const paths: string[] = [];
  for (const f of plan.files) {
    const p = path.join(o.dir, f.name);
    // Sparse: truncate allocates nothing.
    fs.closeSync(fs.openSync(p, 'wx'));
    fs.truncateSync(p, f.size);
    paths.push(p);
  }
  const manifest = { ...plan.manifest, blockSize: plan.manifest.blockSize };
  fs.writeFileSync(manifestPath, `${JSON.stringify(manifest, null, 2)}\n`, { flag: 'wx' });
  return { manifest: manifestPath, files: paths, size: plan.files.reduce((a, f) => a + f.size, 0) };
}
