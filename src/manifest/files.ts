// The manifest rules that need the file system (design.md §3): each extent's
// file exists, is a regular file or a block device, holds offset + length
// bytes, is not inside the store, does not start with an image format's
// header unless the extent says "format": "raw", and no two extents overlap in
// one file. Reads only: stat, realpath, and one read of the first
// HEADER_PROBE_BYTES of each distinct file.
import fs from 'node:fs';
import path from 'node:path';
import { isErrnoError, operationErrorFrom } from '../errors.js';
import type { LayoutIssue, PlannedExtent } from './layout.js';
import { HEADER_PROBE_BYTES, describeImageHeader, detectImageHeader, type ImageHeader } from './image-header.js';

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

/** stat errors that say the path names nothing usable (bad input), as opposed to I/O failures. */
export const NAME_ERRORS = new Set(['ENOENT', 'ENOTDIR', 'ELOOP', 'ENAMETOOLONG']);

export interface CheckFilesOptions {
  /**
   * The store directory, when the manifest names one that can be known
   * (backing files may not be inside it).
   */
  storeDir?: string;
  /**
   * validate: a file that cannot be opened to look for an image header is a
   * problem. The other commands skip the look: those that need the bytes
   * fail where they open the file, and `list` or `status` need no read access.
   */
  reportUnreadable?: boolean;
}

/**
 * Device:inode keys of the backing files the store's backing.json records
 * (docs/formats.md): read as plain JSON and only ever used to skip the
 * image-header look, so a missing or damaged file just means "none".
 */
function adoptedFiles(storeDir: string | undefined): Set<string> {
  const out = new Set<string>();
  if (storeDir === undefined) return out;
  try {
    // store/layout.ts names it BACKING_FILE; manifest/ may not import store/ (store imports manifest).
    const rec = JSON.parse(fs.readFileSync(path.join(storeDir, 'backing.json'), 'utf8')) as { format?: unknown; files?: { dev?: unknown; ino?: unknown }[] };
    if (rec.format !== 'vsnap-backing-state' || !Array.isArray(rec.files)) return out;
    for (const f of rec.files) if (typeof f?.dev === 'number' && typeof f?.ino === 'number') out.add(`${f.dev}:${f.ino}`);
  } catch {
    // No store yet, or nothing readable: every file gets the look.
  }
  return out;
}

/** The first bytes of one file, or the errno that kept them from being read. */
function readProbe(file: string): Buffer | string {
  let fd: number;
  try {
    fd = fs.openSync(file, 'r');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'EACCES' || code === 'EPERM') return code;
    if (isErrnoError(err)) throw operationErrorFrom(err, file);
    throw err;
  }
  try {
    const buf = Buffer.alloc(HEADER_PROBE_BYTES);
    const n = fs.readSync(fd, buf, 0, buf.length, 0);
    return buf.subarray(0, n);
  } catch (err) {
    if (isErrnoError(err)) throw operationErrorFrom(err, file);
    throw err;
  } finally {
    try {
      fs.closeSync(fd);
    } catch (err) {
      // An errno alone would not say which file.
      if (isErrnoError(err)) throw operationErrorFrom(err, file);
      throw err;
    }
  }
}

/** Checks needing the file system, over the extents whose own fields are valid. */
export function checkFiles(extents: readonly PlannedExtent[], opts: CheckFilesOptions = {}): LayoutIssue[] {
  const issues: LayoutIssue[] = [];
  const byInode = new Map<string, { where: string; file: string; offset: number; end: number }[]>();
  // One read per distinct file (device and inode), however many extents it holds.
  const headers = new Map<string, ImageHeader | string | undefined>();
  const adopted = adoptedFiles(opts.storeDir);
  let storeReal = opts.storeDir;
  try {
    if (opts.storeDir !== undefined) storeReal = fs.realpathSync(opts.storeDir);
  } catch {
    // No store yet, so no backing file can be inside it; compare paths only.
  }
  for (const e of extents) {
    const where = e.where;
    let st: fs.Stats;
    try {
      st = fs.statSync(e.path);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      // A name that leads nowhere is bad input (exit 2); a disk that fails
      // to answer is an I/O failure (exit 1), not the manifest's fault.
      if (code && !NAME_ERRORS.has(code) && isErrnoError(err)) throw operationErrorFrom(err);
      issues.push({ path: `${where}.file`, message: code === 'ENOENT' ? 'no such file' : `cannot stat (${code})`, value: e.file });
      continue;
    }
    if (!st.isFile() && !st.isBlockDevice()) {
      issues.push({ path: `${where}.file`, message: 'must be a regular file or a block device', value: e.file });
      continue;
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
    if (opts.storeDir !== undefined && storeReal !== undefined && (inside(real, storeReal) || inside(e.path, opts.storeDir))) {
      issues.push({ path: `${where}.file`, message: `must not be inside the store ${opts.storeDir}`, value: e.file });
    }
    // Links share device and inode; two device nodes of one disk share rdev.
    const key = st.isBlockDevice() ? `rdev:${st.rdev}` : `${st.dev}:${st.ino}`;
    // The header is at the file's offset 0 whatever the extent's offset: a
    // range cut out of a qcow2 file is its clusters and tables, not a disk.
    // A file the store already records (backing.json) has been vsnap's volume
    // since: a header at its start is one a guest wrote through vsnap (a LUKS
    // format of the whole disk, an image written by a test), not a sign that
    // the wrong file was listed, and refusing it would lock the volume out of
    // every command, restore included.
    if (e.format !== 'raw' && !adopted.has(key)) {
      if (!headers.has(key)) {
        const probe = readProbe(e.path);
        headers.set(key, typeof probe === 'string' ? probe : detectImageHeader(probe));
      }
      const h = headers.get(key);
      if (typeof h === 'string') {
        if (opts.reportUnreadable) issues.push({ path: `${where}.file`, message: `cannot be opened to look for an image header (${h})`, value: e.file });
      } else if (h) issues.push({ path: `${where}.file`, message: describeImageHeader(e.file, h), value: e.file });
    }
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
  }
  return issues;
}

