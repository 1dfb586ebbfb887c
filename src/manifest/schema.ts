// The volume manifest's shape (design.md §3), validated with zod. This file
// only checks structure and per-field rules; rules that need the file system
// (files exist, sizes, overlaps) live in load.ts.
import * as z from 'zod';
import { parseSize } from '../size.js';

const NAME_RE = /^(?!\.)[A-Za-z0-9._-]{1,64}$/;
const ID_RE = /^[A-Za-z0-9._-]{1,64}$/;

/** A size field: integer bytes or a string with a binary unit, transformed to a number. */
// z.unknown rather than z.number: zod refuses Infinity (JSON's 1e400) as "not
// a number", while parseSize can say what is wrong with it: too large.
const size = z.unknown().transform((v, ctx) => {
  const r = parseSize(v);
  if (!r.ok) {
    ctx.addIssue({ code: 'custom', message: r.message });
    return z.NEVER;
  }
  return r.value;
});

// Type errors say what is expected in the manifest's own words instead of
// zod's "Invalid input: expected number, received string".
const extentShape = {
  file: z.string({ error: 'must be a string (a path)' }).min(1, 'must be a non-empty path'),
  offset: size.optional(),
  length: size,
  // Only "raw" exists: it says the file's first bytes are data even though
  // they look like an image header (image-header.ts).
  format: z.literal('raw', { error: 'must be "raw", the only format vsnap reads (convert other images with `qemu-img convert -O raw`)' }).optional(),
};
const EXTENT = 'must be an object {file, offset, length, format}';
const extent = z.strictObject(extentShape, { error: EXTENT });
/** One extent on its own, unknown keys ignored: what is usable of a manifest with problems elsewhere. */
export const looseExtentSchema = z.object(extentShape, { error: EXTENT });

const WORKER = 'must be an integer from 0 to 63';
export const idSchema = z.string({ error: 'must be a string' }).regex(ID_RE, 'must be 1-64 characters of [A-Za-z0-9._-]');
export const workerSchema = z.number({ error: WORKER }).int(WORKER).min(0, WORKER).max(63, WORKER);
const partition = z.strictObject(
  {
    id: idSchema,
    worker: workerSchema,
    extents: z.array(extent, { error: 'must be an array of extents' }).min(1, 'must list at least one extent'),
  },
  { error: 'must be an object {id, worker, extents}' },
);

export const nameSchema = z.string({ error: 'must be a string' }).regex(NAME_RE, 'must be 1-64 characters of [A-Za-z0-9._-], not starting with "."');
export const blockSizeSchema = size.optional();
export const storeSchema = z.string({ error: 'must be a string (a directory)' }).min(1, 'must be a non-empty path').optional();
export const manifestSchema = z.strictObject(
  {
    name: nameSchema,
    blockSize: blockSizeSchema,
    store: storeSchema,
    partitions: z.array(partition, { error: 'must be an array of partitions' }).min(1, 'must list at least one partition'),
  },
  { error: 'must be a JSON object {name, blockSize, store, partitions}' },
);

export type RawManifest = z.infer<typeof manifestSchema>;

/** The keys each object of the manifest may have, for "did you mean" (suggest.ts). */
export const KNOWN_KEYS = {
  manifest: ['name', 'blockSize', 'store', 'partitions'],
  partition: ['id', 'worker', 'extents'],
  extent: Object.keys(extentShape),
} as const;

/** "partitions[1].extents[0].length" from a zod issue path. */
export function formatPath(path: ReadonlyArray<PropertyKey>): string {
  let out = '';
  for (const p of path) {
    if (typeof p === 'number') out += `[${p}]`;
    // A key that is not a plain name (a typo with a space, an empty key) is quoted so it stays visible.
    else if (!/^[A-Za-z_$][\w$]*$/.test(String(p))) out += `[${JSON.stringify(String(p))}]`;
    else out += out === '' ? String(p) : `.${String(p)}`;
  }
  return out === '' ? '(manifest)' : out;
}

/** The value found at a path in raw JSON, for error messages. */
export function valueAt(root: unknown, path: ReadonlyArray<PropertyKey>): unknown {
  let cur: unknown = root;
  for (const p of path) {
    if (cur === null || typeof cur !== 'object') return undefined;
    cur = (cur as Record<PropertyKey, unknown>)[p as string];
  }
  return cur;
}
