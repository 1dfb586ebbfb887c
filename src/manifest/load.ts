// Loading a manifest from disk: JSON parse, schema, layout, then the rules
// that need the file system. Reads only; never writes.
import fs from 'node:fs';
import path from 'node:path';
import { UsageError } from '../errors.js';
import { manifestSchema, formatPath, valueAt } from './schema.js';
import { planLayout, type LayoutIssue, type Volume } from './layout.js';

function show(v: unknown): string {
  if (v === undefined) return 'nothing';
  const s = JSON.stringify(v);
  return s.length > 80 ? `${s.slice(0, 77)}...` : s;
}

export function formatIssues(manifestPath: string, issues: LayoutIssue[]): string {
  const lines = issues.map((i) => `  ${i.path}: ${i.message} (got ${show(i.value)})`);
  return `invalid manifest ${manifestPath}:\n${lines.join('\n')}`;
}

/** Size of a regular file or a block device. */
function backingSize(p: string, st: fs.Stats): number {
  if (st.isBlockDevice()) {
    // The kernel exposes a block device's size in 512-byte sectors.
    const major = Math.floor(Number(st.rdev) / 256);
    const minor = Number(st.rdev) % 256;
    try {
      return Number(fs.readFileSync(`/sys/dev/block/${major}:${minor}/size`, 'utf8').trim()) * 512;
    } catch {
      return 0;
    }
  }
  return st.size;
}

function inside(child: string, parent: string): boolean {
  const rel = path.relative(parent, child);
  return rel === '' || (!rel.startsWith('..') && !path.isAbsolute(rel));
}

/** Checks needing the file system. Pure apart from stat/realpath. */
export function checkFiles(volume: Volume): LayoutIssue[] {
  const issues: LayoutIssue[] = [];
  const byInode = new Map<string, { where: string; offset: number; end: number }[]>();
  let storeReal = volume.storeDir;
  try {
    storeReal = fs.realpathSync(volume.storeDir);
  } catch {
    /* store not created yet: compare against the resolved path */
  }
  volume.partitions.forEach((p, pi) =>
    p.extents.forEach((e, ei) => {
      const where = `partitions[${pi}].extents[${ei}]`;
      let st: fs.Stats;
      try {
        st = fs.statSync(e.path);
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code;
        issues.push({ path: `${where}.file`, message: code === 'ENOENT' ? 'no such file' : `cannot stat (${code})`, value: e.file });
        return;
      }
      if (!st.isFile() && !st.isBlockDevice()) {
        issues.push({ path: `${where}.file`, message: 'must be a regular file or a block device', value: e.file });
        return;
      }
      const size = backingSize(e.path, st);
      if (size < e.offset + e.length) {
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
      const key = `${st.dev}:${st.ino}`;
      const list = byInode.get(key) ?? [];
      for (const o of list) {
        if (e.offset < o.end && o.offset < e.offset + e.length) {
          issues.push({
            path: where,
            message: `overlaps ${o.where} in the same file (bytes ${Math.max(e.offset, o.offset)}-${Math.min(e.offset + e.length, o.end) - 1})`,
            value: e.file,
          });
        }
      }
      list.push({ where, offset: e.offset, end: e.offset + e.length });
      byInode.set(key, list);
    }),
  );
  return issues;
}

/** Parse and validate a manifest; throws UsageError (exit 2) listing every problem. */
export function loadManifest(manifestPath: string): Volume {
  let text: string;
  try {
    text = fs.readFileSync(manifestPath, 'utf8');
  } catch (err) {
    throw new UsageError(`cannot read manifest ${manifestPath}: ${(err as NodeJS.ErrnoException).code ?? err}`);
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    throw new UsageError(`invalid manifest ${manifestPath}: not valid JSON (${(err as Error).message})`);
  }
  const parsed = manifestSchema.safeParse(json);
  if (!parsed.success) {
    const issues: LayoutIssue[] = [];
    for (const iss of parsed.error.issues) {
      if (iss.code === 'unrecognized_keys') {
        for (const k of iss.keys) {
          const p = [...iss.path, k];
          issues.push({ path: formatPath(p), message: 'unknown key', value: valueAt(json, p) });
        }
      } else if (iss.code === 'invalid_type' && valueAt(json, iss.path) === undefined) {
        issues.push({ path: formatPath(iss.path), message: 'is required', value: undefined });
      } else if (iss.code === 'invalid_union') {
        issues.push({ path: formatPath(iss.path), message: 'must be a number of bytes or a string such as "64KiB"', value: valueAt(json, iss.path) });
      } else {
        issues.push({ path: formatPath(iss.path), message: iss.message, value: valueAt(json, iss.path) });
      }
    }
    throw new UsageError(formatIssues(manifestPath, issues));
  }
  const { volume, issues } = planLayout(parsed.data, manifestPath);
  if (!volume) throw new UsageError(formatIssues(manifestPath, issues));
  const fileIssues = checkFiles(volume);
  if (fileIssues.length) throw new UsageError(formatIssues(manifestPath, fileIssues));
  return volume;
}
