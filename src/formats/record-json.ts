// Checksummed JSON documents: every JSON file vsnap writes (volume.json,
// snapshot.json, partition state, .psnap) is
//   {"format": "<kind>", "version": 1, ...fields, "checksum": "sha256:<hex>"}
// where the checksum is sha256 over the canonical JSON (keys sorted
// recursively, no whitespace) of the object without "checksum". Canonical form
// makes the checksum independent of key order and pretty-printing, so a human
// may re-indent a file without breaking it, while any change of a value does.
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { readFileSync } from 'node:fs';
import { IntegrityError, fileError, namingFile } from '../errors.js';
import { writeFileAtomic } from './atomic.js';

export const RECORD_VERSION = 1;

const RESERVED = new Set(['format', 'version', 'checksum']);

/** "sha256:<hex>" of raw bytes or a string (UTF-8). */
export function sha256Tagged(data: Buffer | string): string {
  return 'sha256:' + createHash('sha256').update(data).digest('hex');
}

/**
 * Canonical JSON: object keys sorted by code unit, no whitespace, keys whose
 * value is undefined omitted (as JSON.stringify does, so what is written and
 * what is read back canonicalise the same). Non-finite numbers and values JSON
 * cannot hold are programming errors: they would not survive a round trip.
 */
export function canonicalJson(value: unknown): string {
  if (value === null) return 'null';
  switch (typeof value) {
    case 'boolean':
      return value ? 'true' : 'false';
    case 'string':
      return JSON.stringify(value);
    case 'number':
      if (!Number.isFinite(value)) throw new Error(`canonicalJson: non-finite number ${value}`);
      return JSON.stringify(value);
    case 'object': {
      if (Array.isArray(value)) return '[' + value.map((v) => (v === undefined ? 'null' : canonicalJson(v))).join(',') + ']';
      const obj = value as Record<string, unknown>;
      const keys = Object.keys(obj)
        .filter((k) => obj[k] !== undefined)
        .sort();
      return '{' + keys.map((k) => JSON.stringify(k) + ':' + canonicalJson(obj[k])).join(',') + '}';
    }
    default:
      throw new Error(`canonicalJson: cannot encode a ${typeof value}`);
  }
}

/** Pretty-printed record text (trailing newline) for `fields` under `kind`. */
export function encodeRecord(kind: string, fields: Record<string, unknown>): string {
  for (const k of Object.keys(fields)) {
    if (RESERVED.has(k)) throw new Error(`encodeRecord(${kind}): field "${k}" is reserved`);
  }
  const body: Record<string, unknown> = { format: kind, version: RECORD_VERSION, ...fields };
  const checksum = sha256Tagged(canonicalJson(body));
  return JSON.stringify({ ...body, checksum }, null, 2) + '\n';
}

/**
 * Parse and check a record; returns its fields (without format, version and
 * checksum), i.e. exactly what was given to encodeRecord. Shape checks of the
 * fields belong to the caller that knows the kind.
 */
export function decodeRecord<T>(kind: string, text: string, file: string): T {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (e) {
    // V8 reports "... at position N" (a character index); pass it on as the place.
    const msg = (e as Error).message;
    const pos = /position (\d+)/.exec(msg);
    const where = pos ? ` at offset ${Buffer.byteLength(text.slice(0, Number(pos[1])))}` : '';
    throw new IntegrityError(`${file}: not valid JSON${where}: ${msg}`);
  }
  if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) {
    throw new IntegrityError(`${file}: expected a JSON object at offset 0`);
  }
  const obj = parsed as Record<string, unknown>;
  if (obj.format !== kind) {
    throw new IntegrityError(`${file}: format is ${JSON.stringify(obj.format)}, expected "${kind}"`);
  }
  if (obj.version !== RECORD_VERSION) {
    throw new IntegrityError(`${file}: unsupported ${kind} version ${JSON.stringify(obj.version)} (this vsnap reads version ${RECORD_VERSION})`);
  }
  const stored = obj.checksum;
  if (typeof stored !== 'string' || !/^sha256:[0-9a-f]{64}$/.test(stored)) {
    throw new IntegrityError(`${file}: missing or malformed checksum ${JSON.stringify(stored)}`);
  }
  const { checksum: _omit, ...body } = obj;
  let canonical: string;
  try {
    canonical = canonicalJson(body);
  } catch (e) {
    // A damaged digit can turn a number into one JSON cannot write back (1E384 is Infinity).
    throw new IntegrityError(`${file}: damaged value: ${(e as Error).message}`);
  }
  const computed = sha256Tagged(canonical);
  if (computed !== stored) {
    throw new IntegrityError(`${file}: checksum mismatch (stored ${stored}, computed ${computed}): the file was changed or damaged`);
  }
  const { format: _f, version: _v, ...fields } = body;
  return fields as T;
}

/** Write a record atomically (temp file, fsync, rename, fsync dir). */
export async function writeRecord(path: string, kind: string, fields: Record<string, unknown>): Promise<void> {
  await writeFileAtomic(path, encodeRecord(kind, fields));
}

/** Read and check a record; I/O errors (ENOENT included) pass through. */
export async function readRecord<T>(path: string, kind: string): Promise<T> {
  const text = await namingFile(path, readFile(path, 'utf8'));
  return decodeRecord<T>(kind, text, path);
}

/**
 * Synchronous read for many small records at once (a store's 10,000 snapshot
 * records): one thread-pool round trip per file costs more than the read.
 */
export function readRecordSync<T>(path: string, kind: string): T {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    throw fileError(path, e);
  }
  return decodeRecord<T>(kind, text, path);
}
