// vsnap init: make a demo volume (sparse backing files and a manifest).
import fs from 'node:fs';
import path from 'node:path';
import { OperationError, UsageError } from '../errors.js';
import { formatExactSize, MAX_SIZE } from '../size.js';

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

/** The manifest as written to disk: sizes with units where exact ("64KiB"), like a hand-written one. */
export function manifestText(m: DemoPlan['manifest']): string {
  const out = {
    name: m.name,
    blockSize: formatExactSize(m.blockSize),
    partitions: m.partitions.map((p) => ({
      id: p.id,
      worker: p.worker,
      extents: p.extents.map((e) => ({ file: e.file, offset: formatExactSize(e.offset), length: formatExactSize(e.length) })),
    })),
  };
  return `${JSON.stringify(out, null, 2)}\n`;
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
  if (!Number.isSafeInteger(total)) {
    throw new UsageError(`--file-size: ${o.files} files of ${o.fileSize} bytes exceed the largest volume, 2^53-1 bytes (got ${o.fileSize})`);
  }
  if (o.fileSize > MAX_SIZE) throw new UsageError(`--file-size: must be at most 2^53-1 bytes (got ${o.fileSize})`);
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

/** Why `dir` cannot take a new volume, or undefined when it can (missing or empty). */
function unusableTarget(dir: string): string | undefined {
  let st: fs.Stats;
  try {
    st = fs.statSync(dir);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    return code === 'ENOENT' ? undefined : `cannot stat ${dir} (${code})`;
  }
  if (!st.isDirectory()) return `${dir} exists and is not a directory`;
  const entries = fs.readdirSync(dir);
  // Refuse any non-empty directory, not just one holding our own file names:
  // init must never mix a demo volume into someone's files.
  if (entries.length) return `${dir} is not empty (${entries.length} entries, e.g. ${entries.sort()[0]}); choose an empty or new directory`;
  return undefined;
}

export async function init(o: InitOptions): Promise<{ manifest: string; files: string[]; size: number }> {
  const plan = planDemo(o);
  const manifestPath = path.join(o.dir, 'volume.json');
  const why = unusableTarget(o.dir);
  if (why) throw new UsageError(`<dir>: ${why}`);
  const createdDir = !fs.existsSync(o.dir);
  const paths: string[] = [];
  try {
    mkdirParents(o.dir);
    for (const f of plan.files) {
      const p = path.join(o.dir, f.name);
      // Sparse: extending with truncate allocates no blocks.
      fs.closeSync(fs.openSync(p, 'wx'));
      paths.push(p);
      fs.truncateSync(p, f.size);
    }
    fs.writeFileSync(manifestPath, manifestText(plan.manifest), { flag: 'wx' });
  } catch (err) {
    // Leave the target as it was: a half-made volume would make the retry
    // fail with "not empty".
    for (const p of paths) fs.rmSync(p, { force: true });
    if (createdDir) fs.rmSync(o.dir, { recursive: true, force: true });
    const e = err as NodeJS.ErrnoException;
    throw new OperationError(`init ${o.dir}: ${e.message}`);
  }
  return { manifest: manifestPath, files: paths, size: plan.files.reduce((a, f) => a + f.size, 0) };
}

/**
 * mkdir -p without Node's recursive mkdir, which spins for ever on a path
 * under /proc (mkdir of the child says ENOENT, of the parent EEXIST): create
 * each missing component in turn, so such a path fails at once.
 */
function mkdirParents(dir: string): void {
  const missing: string[] = [];
  for (let d = path.resolve(dir); !fs.existsSync(d); d = path.dirname(d)) {
    missing.unshift(d);
    if (path.dirname(d) === d) break;
  }
  for (const d of missing) fs.mkdirSync(d);
}
