// Loading a manifest from disk: JSON parse, schema, layout, then the rules
// that need the file system. Reads only; never writes.
import fs from 'node:fs';
import path from 'node:path';
import { UsageError, isErrnoError, operationErrorFrom } from '../errors.js';
import { manifestSchema, formatPath, valueAt } from './schema.js';
import { planLayout, type LayoutIssue, type Volume } from './layout.js';

function show(v: unknown): string {
  if (v === undefined) return 'nothing';
  // JSON.stringify would print 1e400 (parsed as Infinity) as "null".
  if (typeof v === 'number' && !Number.isFinite(v)) return String(v);
  const s = JSON.stringify(v);
  return s.length > 80 ? `${s.slice(0, 77)}...` : s;
}

/** ["partitions", 1, "extents", 0, "length"] from "partitions[1].extents[0].length". */
function parsePath(p: string): (string | number)[] {
  const out: (string | number)[] = [];
  for (const m of p.matchAll(/([^.[\]]+)|\[(\d+)\]/g)) out.push(m[2] !== undefined ? Number(m[2]) : m[1]);
  return out;
}

/**
 * Layout rules see sizes already converted to bytes; show what the user
 * wrote as well, so `"3KiB"` is recognisable in `got "3KiB" = 3072`.
 */
function withRaw(json: unknown, issues: LayoutIssue[]): LayoutIssue[] {
  return issues.map((i) => {
    const raw = valueAt(json, parsePath(i.path));
    return typeof raw === 'string' && typeof i.value === 'number' && raw !== String(i.value) ? { ...i, raw } : i;
  });
}

export function formatIssues(manifestPath: string, issues: (LayoutIssue & { raw?: string })[]): string {
  const lines = issues.map((i) => `  ${i.path}: ${i.message} (got ${i.raw !== undefined ? `${show(i.raw)} = ${i.value}` : show(i.value)})`);
  return `invalid manifest ${manifestPath}:\n${lines.join('\n')}`;
}

/**
 * /sys/dev/block/<major>:<minor> for a device number as Linux encodes it in
 * st_rdev: minor bits 0-7 and 20-31, major bits 8-19 (plus the high glibc bits).
 */
export function sysfsBlockPath(rdev: number | bigint): string {
  const d = BigInt(rdev);
  const major = ((d >> 8n) & 0xfffn) | ((d >> 32n) & ~0xfffn);
  const minor = (d & 0xffn) | ((d >> 12n) & ~0xffn & 0xffffffffn);
  return `/sys/dev/block/${major}:${minor}`;
}

/** Size of a regular file or a block device; undefined when a device's size cannot be read. */
function backingSize(st: fs.Stats): number | undefined {
  if (st.isBlockDevice()) {
    // Node has no BLKGETSIZE64 ioctl and a device's st_size is 0; the kernel
    // also exposes the size, in 512-byte sectors, under /sys.
    try {
      const sectors = Number(fs.readFileSync(`${sysfsBlockPath(st.rdev)}/size`, 'utf8').trim());
      return Number.isSafeInteger(sectors) ? sectors * 512 : undefined;
    } catch {
      return undefined;
    }
  }
  return st.size;
}

function inside(child: string, parent: string): boolean {
  const rel = path.relative(parent, child);
  return rel === '' || (!rel.startsWith('..') && !path.isAbsolute(rel));
}

/** Far above any real manifest (thousands of partitions fit in a few MiB). */
const MAX_MANIFEST_BYTES = 64 * 1024 * 1024;

/** stat errors that say the path names nothing usable (bad input), as opposed to I/O failures. */
const NAME_ERRORS = new Set(['ENOENT', 'ENOTDIR', 'ELOOP', 'ENAMETOOLONG']);

/** Checks needing the file system. Pure apart from stat/realpath. */
export function checkFiles(volume: Volume): LayoutIssue[] {
  const issues: LayoutIssue[] = [];
  const byInode = new Map<string, { where: string; file: string; offset: number; end: number }[]>();
  let storeReal = volume.storeDir;
  try {
    storeReal = fs.realpathSync(volume.storeDir);
  } catch {
    // No store yet, so no backing file can be inside it; compare paths only.
  }
  volume.partitions.forEach((p, pi) =>
    p.extents.forEach((e, ei) => {
      const where = `partitions[${pi}].extents[${ei}]`;
      let st: fs.Stats;
      try {
        st = fs.statSync(e.path);
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code;
        // A name that leads nowhere is bad input (exit 2); a disk that fails
        // to answer is an I/O failure (exit 1), not the manifest's fault.
        if (code && !NAME_ERRORS.has(code) && isErrnoError(err)) throw operationErrorFrom(err);
        issues.push({ path: `${where}.file`, message: code === 'ENOENT' ? 'no such file' : `cannot stat (${code})`, value: e.file });
        return;
      }
      if (!st.isFile() && !st.isBlockDevice()) {
        issues.push({ path: `${where}.file`, message: 'must be a regular file or a block device', value: e.file });
        return;
      }
      const size = backingSize(st);
      if (size === undefined) {
        issues.push({ path: `${where}.file`, message: `cannot read the size of block device from ${sysfsBlockPath(st.rdev)}/size`, value: e.file });
      } else if (size < e.offset + e.length) {
        issues.push({
          path: `${where}.length`,
          message: `offset + length = ${e.offset + e.length} is past the end of ${e.file} (${size} bytes)`,
          value: e.length,
        });
      }
      const real = fs.realpathSync(e.path);
      if (inside(real, storeReal) || inside(e.path, volume.storeDir)) {
        issues.push({ path: `${where}.file`, message: `must not be inside the store ${volume.storeDir}`, value: e.file });
      }
      // Links share device and inode; two device nodes of one disk share rdev.
      const key = st.isBlockDevice() ? `rdev:${st.rdev}` : `${st.dev}:${st.ino}`;
      const list = byInode.get(key) ?? [];
      for (const o of list) {
        if (e.offset < o.end && o.offset < e.offset + e.length) {
          issues.push({
            path: where,
            message: `overlaps ${o.where} (${o.file === e.file ? 'the same file' : `${o.file}, the same file`}) at bytes ${Math.max(e.offset, o.offset)}-${Math.min(e.offset + e.length, o.end) - 1}`,
            value: e.file,
          });
        }
      }
      list.push({ where, file: e.file, offset: e.offset, end: e.offset + e.length });
      byInode.set(key, list);
    }),
  );
  return issues;
}

/** " at line 3 column 7" from V8's "... at position 42", or "" when it gives none. */
function lineCol(text: string, message: string): string {
  const m = /position (\d+)/.exec(message);
  if (!m) return '';
  const before = text.slice(0, Number(m[1]));
  const line = before.split('\n').length;
  return ` at line ${line} column ${before.length - before.lastIndexOf('\n')}`;
}

/** Parse and validate a manifest; throws UsageError (exit 2) listing every problem. */
export function loadManifest(manifestPath: string): Volume {
  let text: string;
  try {
    // A manifest is a small regular file: /dev/zero or a FIFO would be read for ever.
    const st = fs.statSync(manifestPath);
    if (!st.isFile()) throw new UsageError(`cannot read manifest ${manifestPath}: not a regular file`);
    if (st.size > MAX_MANIFEST_BYTES) throw new UsageError(`cannot read manifest ${manifestPath}: ${st.size} bytes, more than the ${MAX_MANIFEST_BYTES} a manifest may have`);
    text = fs.readFileSync(manifestPath, 'utf8');
  } catch (err) {
    if (err instanceof UsageError) throw err;
    const code = (err as NodeJS.ErrnoException).code;
    if (code && !NAME_ERRORS.has(code) && code !== 'EISDIR' && isErrnoError(err)) throw operationErrorFrom(err);
    throw new UsageError(`cannot read manifest ${manifestPath}: ${code ?? err}`);
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    throw new UsageError(`invalid manifest ${manifestPath}: not valid JSON${lineCol(text, (err as Error).message)} (${(err as Error).message})`);
  }
  const parsed = manifestSchema.safeParse(json);
  if (!parsed.success) {
    const issues: LayoutIssue[] = [];
    const reported = new Set<string>();
    for (const iss of parsed.error.issues) {
      // zod may report a wrong type and then a failed check on the same value
      // ("must be an array" and "must list at least one"); the first says it.
      const at = formatPath(iss.path);
      if (iss.code !== 'unrecognized_keys' && reported.has(at)) continue;
      reported.add(at);
      if (iss.code === 'unrecognized_keys') {
        for (const k of iss.keys) {
          const p = [...iss.path, k];
          issues.push({ path: formatPath(p), message: 'unknown key', value: valueAt(json, p) });
        }
      } else if (valueAt(json, iss.path) === undefined) {
        // Whatever the check (type or size), a missing value is best reported as missing.
        issues.push({ path: formatPath(iss.path), message: 'is required', value: undefined });
      } else {
        issues.push({ path: formatPath(iss.path), message: iss.message, value: valueAt(json, iss.path) });
      }
    }
    throw new UsageError(formatIssues(manifestPath, issues));
  }
  const { volume, issues } = planLayout(parsed.data, manifestPath);
  if (!volume) throw new UsageError(formatIssues(manifestPath, withRaw(json, issues)));
  const fileIssues = checkFiles(volume);
  if (fileIssues.length) throw new UsageError(formatIssues(manifestPath, withRaw(json, fileIssues)));
  return volume;
}
