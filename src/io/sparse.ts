// Holes in backing files (docs/decisions.md, "Sparse backing files"): where a
// file holds data (lseek SEEK_DATA/SEEK_HOLE) and making a range read as
// zeroes without writing it (fallocate PUNCH_HOLE or ZERO_RANGE, keeping the
// size). Both come from the project's own small addon, native/sparse.c.
import os from 'node:os';
import { addonLoader } from './native-addon.js';
import { OperationError } from '../errors.js';

interface Native {
  /** [s0, e0, s1, e1, ...] or an errno. */
  dataRuns(fd: number, start: number, end: number, maxRuns: number): number[] | number;
  fallocate(fd: number, mode: number, offset: number, length: number, cb: (errno: number) => void): void;
}

const load = addonLoader<Native>('vsnap_sparse', 'sparse files');

function errnoName(n: number): string {
  const entry = Object.entries(os.constants.errno).find(([, v]) => v === n);
  return entry ? entry[0] : `errno ${n}`;
}

/** A run of file bytes [start, end) that holds data; everything else reads as zeroes. */
export interface DataRun {
  start: number;
  end: number;
}

/**
 * The data runs of `file` (open as `fd`) overlapping [start, end), clipped to
 * it, ascending. At most `maxRuns`: when the answer has that many, only the
 * bytes up to the last run's end are described. Synchronous on purpose
 * (native/sparse.c): the caller combines it with in-memory state in one turn.
 */
export function dataRuns(fd: number, file: string, start: number, end: number, maxRuns = 1 << 20): DataRun[] {
  if (end <= start) return [];
  const r = load().dataRuns(fd, start, end, maxRuns);
  if (typeof r === 'number') throw new OperationError(`${file}: lseek SEEK_DATA/SEEK_HOLE at ${start} failed (${errnoName(r)})`, errnoName(r) === 'ENOSPC' ? 'ENOSPC' : 'EIO');
  const out: DataRun[] = [];
  for (let k = 0; k + 1 < r.length; k += 2) out.push({ start: r[k], end: r[k + 1] });
  return out;
}

export type DeallocateMode = 'punch' | 'zero-range';

/**
 * Make [offset, offset + length) of the file read as zeroes without writing
 * them: 'punch' frees the blocks (a hole), 'zero-range' keeps them allocated.
 * The file size never changes. Resolves true when done, false when the file
 * system cannot do it (EOPNOTSUPP: the caller writes zeroes instead); any
 * other failure is an OperationError naming the file and the errno.
 */
export function deallocate(fd: number, file: string, mode: DeallocateMode, offset: number, length: number): Promise<boolean> {
  const n = load();
  return new Promise((resolve, reject) => {
    n.fallocate(fd, mode === 'punch' ? 1 : 2, offset, length, (errno) => {
      if (errno === 0) return resolve(true);
      const name = errnoName(errno);
      if (name === 'EOPNOTSUPP' || name === 'ENOTSUP') return resolve(false);
      const flag = mode === 'punch' ? 'PUNCH_HOLE' : 'ZERO_RANGE';
      reject(new OperationError(`fallocate ${flag} of ${file} at ${offset} length ${length} failed (${name})`, name === 'ENOSPC' ? 'ENOSPC' : 'EIO'));
    });
  });
}
