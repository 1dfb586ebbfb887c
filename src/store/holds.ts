// Held snapshots (vsnap hold / release, ZFS's words; design.md §5): a held
// snapshot is never deleted by prune, serve --every or delete until released.
//
// Holds change after a snapshot is committed, so they cannot live in its
// immutable snapshot.json: they are one checksummed record, holds.json,
// replaced atomically by whoever holds the store lock (docs/formats.md,
// "holds.json"). Reading and writing are here; deciding (which refs change,
// what is reported) is pure, beside them, so it is tested with plain objects.
import { IntegrityError } from '../errors.js';
import { readRecord, writeRecord } from '../formats/record-json.js';
import { holdsFile } from './layout.js';

export const HOLDS_KIND = 'vsnap-holds';

export interface Hold {
  id: number;
  /** The snapshot's name when it was held (names never change; for people reading the file). */
  name: string;
  heldAt: string;
}

interface HoldsRecord {
  holds: Hold[];
}

function isHold(v: unknown): v is Hold {
  if (v === null || typeof v !== 'object') return false;
  const h = v as Record<string, unknown>;
  return Number.isSafeInteger(h.id) && (h.id as number) > 0 && typeof h.name === 'string' && typeof h.heldAt === 'string';
}

/** The holds of a store, in id order; none when the file does not exist. */
export async function readHolds(storeDir: string): Promise<Hold[]> {
  const file = holdsFile(storeDir);
  let rec: HoldsRecord;
  try {
    rec = await readRecord<HoldsRecord>(file, HOLDS_KIND);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw err;
  }
  // The checksum proves the file is what vsnap wrote; the shape is this module's to check.
  if (!Array.isArray(rec.holds)) throw new IntegrityError(`${file}: holds must be an array (got ${JSON.stringify(rec.holds)})`);
  rec.holds.forEach((h, i) => {
    if (!isHold(h)) throw new IntegrityError(`${file}: holds[${i}] must be {id, name, heldAt} (got ${JSON.stringify(h)})`);
  });
  return [...rec.holds].sort((a, b) => a.id - b.id);
}

export async function writeHolds(storeDir: string, holds: readonly Hold[]): Promise<void> {
  await writeRecord(holdsFile(storeDir), HOLDS_KIND, { holds: [...holds].sort((a, b) => a.id - b.id) });
}

/** The ids held among the snapshots that exist (a hold on a snapshot removed behind vsnap is ignored). */
export function heldIds(holds: readonly Hold[], existing: readonly { id: number }[]): Set<number> {
  const ids = new Set(existing.map((s) => s.id));
  return new Set(holds.filter((h) => ids.has(h.id)).map((h) => h.id));
}

export interface HoldChange {
  /** The holds to write (only snapshots that exist). */
  next: Hold[];
  /** Snapshots whose state changed (held now, or released now). */
  changed: { id: number; name: string }[];
  /** Snapshots already in the asked state: held twice, or released while not held. */
  unchanged: { id: number; name: string }[];
}

/** Pure: hold `targets` (idempotent: a held snapshot keeps its first heldAt). */
export function planHold(holds: readonly Hold[], existing: readonly { id: number }[], targets: readonly { id: number; name: string }[], now: Date): HoldChange {
  const live = heldIds(holds, existing);
  const next = holds.filter((h) => live.has(h.id));
  const out: HoldChange = { next, changed: [], unchanged: [] };
  for (const t of dedupe(targets)) {
    if (live.has(t.id)) {
      out.unchanged.push({ id: t.id, name: t.name });
      continue;
    }
    live.add(t.id);
    next.push({ id: t.id, name: t.name, heldAt: now.toISOString() });
    out.changed.push({ id: t.id, name: t.name });
  }
  next.sort((a, b) => a.id - b.id);
  return out;
}

/** Pure: release `targets`; one that is not held is reported unchanged, not an error (docs/formats.md). */
export function planRelease(holds: readonly Hold[], existing: readonly { id: number }[], targets: readonly { id: number; name: string }[]): HoldChange {
  const live = heldIds(holds, existing);
  const out: HoldChange = { next: [], changed: [], unchanged: [] };
  const drop = new Set<number>();
  for (const t of dedupe(targets)) {
    if (live.has(t.id)) {
      drop.add(t.id);
      out.changed.push({ id: t.id, name: t.name });
    } else out.unchanged.push({ id: t.id, name: t.name });
  }
  out.next = holds.filter((h) => live.has(h.id) && !drop.has(h.id));
  return out;
}

function dedupe<T extends { id: number }>(xs: readonly T[]): T[] {
  return [...new Map(xs.map((x) => [x.id, x])).values()];
}
