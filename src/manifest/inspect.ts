// Every problem of a manifest in one pass (design.md §3, issue 10 item 10):
// JSON syntax (line, column, the offending character), then the schema (all
// its problems at once, "did you mean" for unknown keys), then the pure
// layout rules, then the file-system rules. A later stage looks at every part
// an earlier one let through: an extent whose own fields are valid gets its
// file checked even when another partition has a bad worker, so one run shows
// what would otherwise take one edit-and-retry per stage. A part an earlier
// stage refused is not checked again, so one mistake is reported once.
// Reads only; never writes.
import fs from 'node:fs';
import path from 'node:path';
import { UsageError, isErrnoError, operationErrorFrom } from '../errors.js';
import { manifestSchema, formatPath, valueAt, KNOWN_KEYS, nameSchema, blockSizeSchema, storeSchema, idSchema, workerSchema, looseExtentSchema } from './schema.js';
import { planLayout, type LayoutInput, type LayoutIssue, type Volume } from './layout.js';
import { checkFiles, NAME_ERRORS } from './files.js';
import { findDuplicateKeys, findJsonSyntaxError } from './json-syntax.js';
import { closestKey } from './suggest.js';

/** Far above any real manifest (thousands of partitions fit in a few MiB). */
const MAX_MANIFEST_BYTES = 64 * 1024 * 1024;

export type ProblemStage = 'read' | 'json' | 'schema' | 'layout' | 'file' | 'store';

export interface Problem {
  stage: ProblemStage;
  /** The JSON path ("partitions[1].extents[0].length"), "(manifest)" for the whole file, "(store)" for the store. */
  path: string;
  /** What is wrong, with the value found: `must be a multiple of 512 (got 1000)`. */
  message: string;
  /** Where a JSON syntax error is, 1-based. */
  line?: number;
  column?: number;
  /** The exit code this problem calls for on its own (design.md §8). */
  exitCode: 1 | 2 | 3;
}

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
 * A layout or file issue as a problem. Those rules see sizes already
 * converted to bytes; show what the user wrote as well, so `"3KiB"` is
 * recognisable in `got "3KiB" = 3072`.
 */
function fromIssue(json: unknown, stage: ProblemStage, i: LayoutIssue): Problem {
  const raw = valueAt(json, parsePath(i.path));
  const got = typeof raw === 'string' && typeof i.value === 'number' && raw !== String(i.value) ? `${show(raw)} = ${i.value}` : show(i.value);
  return { stage, path: i.path, message: `${i.message} (got ${got})`, exitCode: 2 };
}

function isObject(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

/** The keys the object at a JSON path may have. */
function knownKeysAt(p: ReadonlyArray<PropertyKey>): readonly string[] {
  if (p.length === 0) return KNOWN_KEYS.manifest;
  if (p.length === 2 && p[0] === 'partitions') return KNOWN_KEYS.partition;
  if (p.length === 4 && p[0] === 'partitions' && p[2] === 'extents') return KNOWN_KEYS.extent;
  return [];
}

function schemaProblems(json: unknown, issues: ReadonlyArray<{ code: string; path: PropertyKey[]; message: string; keys?: string[] }>): Problem[] {
  const out: Problem[] = [];
  const reported = new Set<string>();
  const push = (p: PropertyKey[], message: string, value: unknown) => out.push({ stage: 'schema', path: formatPath(p), message: `${message} (got ${show(value)})`, exitCode: 2 });
  for (const iss of issues) {
    // zod may report a wrong type and then a failed check on the same value
    // ("must be an array" and "must list at least one"); the first says it.
    const at = formatPath(iss.path);
    if (iss.code !== 'unrecognized_keys' && reported.has(at)) continue;
    reported.add(at);
    if (iss.code === 'unrecognized_keys') {
      const known = knownKeysAt(iss.path);
      const present = valueAt(json, iss.path);
      for (const k of iss.keys ?? []) {
        const p = [...iss.path, k];
        const guess = closestKey(k, known);
        // A guess the object already has would only invite a duplicate.
        const hint = guess !== undefined && !(isObject(present) && guess in present) ? `; did you mean "${guess}"?` : '';
        push(p, `unknown key${hint}`, valueAt(json, p));
      }
    } else if (valueAt(json, iss.path) === undefined) {
      // Whatever the check (type or size), a missing value is best reported as missing.
      push(iss.path, 'is required', undefined);
    } else {
      push(iss.path, iss.message, valueAt(json, iss.path));
    }
  }
  return out;
}

/** What is usable of a manifest the schema refused, for the later stages (planLayout's holes). */
function salvage(json: unknown): LayoutInput | undefined {
  if (!isObject(json) || !Array.isArray(json.partitions) || json.partitions.length === 0) return undefined;
  const bs = blockSizeSchema.safeParse(json.blockSize);
  return {
    name: nameSchema.safeParse(json.name).data,
    blockSize: bs.success ? bs.data : null,
    store: storeSchema.safeParse(json.store).data,
    partitions: json.partitions.map((p: unknown) => {
      if (!isObject(p)) return undefined;
      const extents = Array.isArray(p.extents) && p.extents.length > 0 ? p.extents.map((e: unknown) => looseExtentSchema.safeParse(e).data) : undefined;
      return { id: idSchema.safeParse(p.id).data, worker: workerSchema.safeParse(p.worker).data, extents };
    }),
  };
}

function readManifest(manifestPath: string): string | Problem {
  const problem = (message: string): Problem => ({ stage: 'read', path: '(manifest)', message, exitCode: 2 });
  try {
    // A manifest is a small regular file: /dev/zero or a FIFO would be read for ever.
    const st = fs.statSync(manifestPath);
    if (!st.isFile()) return problem(`cannot read manifest ${manifestPath}: not a regular file`);
    if (st.size > MAX_MANIFEST_BYTES) return problem(`cannot read manifest ${manifestPath}: ${st.size} bytes, more than the ${MAX_MANIFEST_BYTES} a manifest may have`);
    return fs.readFileSync(manifestPath, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code && !NAME_ERRORS.has(code) && code !== 'EISDIR' && isErrnoError(err)) throw operationErrorFrom(err);
    return problem(`cannot read manifest ${manifestPath}: ${code ?? err}`);
  }
}

export interface Inspection {
  /** The volume, when the manifest has no problem at all. */
  volume?: Volume;
  /** The volume as planned, when the schema and layout stages found nothing (file problems may remain). */
  planned?: Volume;
  problems: Problem[];
}

export interface InspectOptions {
  /** validate: a backing file that cannot be opened for the image-header look is a problem (files.ts). */
  reportUnreadable?: boolean;
}

/** Read and check a manifest, collecting every problem. Throws only for an I/O failure (exit 1). */
export function inspectManifest(manifestPath: string, o: InspectOptions = {}): Inspection {
  const text = readManifest(manifestPath);
  if (typeof text !== 'string') return { problems: [text] };
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    const at = findJsonSyntaxError(text);
    const message = at
      ? `not valid JSON at line ${at.line} column ${at.column}: found ${at.found}, expected ${at.expected}`
      : `not valid JSON (${(err as Error).message})`;
    return { problems: [{ stage: 'json', path: '(manifest)', message, line: at?.line, column: at?.column, exitCode: 2 }] };
  }
  const parsed = manifestSchema.safeParse(json);
  const problems = parsed.success ? [] : schemaProblems(json, parsed.error.issues as never);
  // A key given twice would silently lose its first value (a whole "partitions" list, say).
  for (const d of findDuplicateKeys(text)) {
    problems.unshift({ stage: 'schema', path: d.key, message: `given twice (again at line ${d.line} column ${d.column}); JSON keeps only the last, so remove one`, line: d.line, column: d.column, exitCode: 2 });
  }
  const input = parsed.success ? parsed.data : salvage(json);
  if (!input) return { problems };
  const { volume, issues, extents } = planLayout(input, manifestPath);
  problems.push(...issues.map((i) => fromIssue(json, 'layout', i)));
  const dir = path.dirname(path.resolve(manifestPath));
  const storeDir = volume?.storeDir ?? (input.store ? path.resolve(dir, input.store) : input.name !== undefined ? path.join(dir, '.vsnap', input.name) : undefined);
  problems.push(...checkFiles(extents, { storeDir, reportUnreadable: o.reportUnreadable }).map((i) => fromIssue(json, 'file', i)));
  const planned = problems.length === problems.filter((p) => p.stage === 'file').length ? volume : undefined;
  return { volume: problems.length ? undefined : volume, planned, problems };
}

/** The human lines of a list of problems: `invalid manifest vol.json:` then one indented line each. */
export function formatProblems(manifestPath: string, problems: readonly Problem[]): string {
  const only = problems.length === 1 ? problems[0] : undefined;
  if (only?.stage === 'read') return only.message;
  if (only?.stage === 'json') return `invalid manifest ${manifestPath}: ${only.message}`;
  const manifestLines = problems.filter((p) => p.stage !== 'store');
  const storeLines = problems.filter((p) => p.stage === 'store');
  const line = (p: Problem) => `  ${p.path}: ${p.message}`;
  const parts: string[] = [];
  if (manifestLines.length) parts.push(`invalid manifest ${manifestPath}:`, ...manifestLines.map(line));
  if (storeLines.length) parts.push(`the store of ${manifestPath}:`, ...storeLines.map(line));
  return parts.join('\n');
}

/** Parse and validate a manifest; throws UsageError (exit 2) listing every problem. */
export function loadManifest(manifestPath: string): Volume {
  const r = inspectManifest(manifestPath);
  if (r.problems.length || !r.volume) throw new UsageError(formatProblems(manifestPath, r.problems));
  return r.volume;
}
