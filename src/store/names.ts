// Snapshot names and ids (design.md §8). Pure.
import { UsageError } from '../errors.js';

const NAME_RE = /^[A-Za-z0-9._:-]{1,128}$/;

export function checkSnapshotName(name: string, what = '--name'): void {
  if (!NAME_RE.test(name) || /^\d+$/.test(name) || name === 'latest' || name === '.' || name === '..') {
    throw new UsageError(
      `${what}: a snapshot name is 1-128 of [A-Za-z0-9._:-], not all digits, not "latest" (got ${JSON.stringify(name.length > 140 ? `${name.slice(0, 140)}...` : name)})`,
    );
  }
}

/** UTC "YYYYMMDDTHHMMSSZ", with -2, -3 ... when taken. */
export function defaultName(now: Date, taken: ReadonlySet<string>): string {
  const base = now.toISOString().replace(/[-:]/g, '').replace(/\.\d+Z$/, 'Z');
  if (!taken.has(base)) return base;
  for (let i = 2; ; i++) if (!taken.has(`${base}-${i}`)) return `${base}-${i}`;
}

// The directory name of a snapshot id is the store layout's (store/layout.ts).
export { snapshotDirName } from './layout.js';

export interface NamedSnapshot {
  id: number;
  name: string;
}

/** Resolve a reference: a name, an id (digits) or "latest". Throws UsageError (exit 2). */
export function resolveRef<T extends NamedSnapshot>(snaps: readonly T[], ref: string): T {
  if (ref === 'latest') {
    const last = snaps[snaps.length - 1];
    if (!last) throw new UsageError('snapshot "latest": the volume has no snapshots');
    return last;
  }
  const found = /^\d+$/.test(ref) ? snaps.find((s) => s.id === Number(ref)) : snaps.find((s) => s.name === ref);
  if (!found) throw new UsageError(`unknown snapshot ${JSON.stringify(ref)} (run vsnap list to see them)`);
  return found;
}

/** The form defaultName() gives: "YYYYMMDDTHHMMSSZ", optionally with "-N". */
const DEFAULT_NAME_RE = /^\d{8}T\d{6}Z(-\d+)?$/;

export function isDefaultName(name: string): boolean {
  return DEFAULT_NAME_RE.test(name);
}

/**
 * Whether retention leaves a snapshot alone unless told otherwise (design §5
 * "automatic and manual"). Records written before the `manual` field existed
 * count as automatic only when the name has the default form: a name a
 * person typed is never pruned by a rule they did not ask to apply to it
 * (docs/formats.md, "`manual` in older records").
 */
export function isManual(rec: { name: string; manual?: boolean }): boolean {
  return rec.manual ?? !isDefaultName(rec.name);
}
