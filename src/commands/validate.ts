// vsnap validate: every problem of the manifest (inspect.ts: JSON, schema,
// layout, files) and of its store (validate-store.ts) in one run, and the
// layout. Reads only: no lock, no store created (docs/decisions.md,
// "validate tells everything").
import { inspectManifest, formatProblems, type Problem } from '../manifest/load.js';
import type { Volume } from '../manifest/layout.js';
import { IntegrityError, OperationError, UsageError, type VsnapError } from '../errors.js';
import { checkStore } from './validate-store.js';

export interface LayoutReport {
  name: string;
  blockSize: number;
  size: number;
  store: string;
  fingerprint: string;
  partitions: {
    id: string;
    worker: number;
    volumeOffset: number;
    length: number;
    extents: { file: string; offset: number; length: number; format?: 'raw' }[];
  }[];
}

/** One problem as `validate --json` prints it. */
export interface ProblemReport {
  path: string;
  message: string;
  stage: Problem['stage'];
  line?: number;
  column?: number;
}

/**
 * `validate --json`: the layout's keys as before (when the layout could be
 * planned), plus `ok` and `problems`.
 */
export type ValidateReport = { ok: boolean; problems: ProblemReport[] } & Partial<LayoutReport>;

export function describe(v: Volume): LayoutReport {
  return {
    name: v.name,
    blockSize: v.blockSize,
    size: v.size,
    store: v.storeDir,
    fingerprint: v.fingerprint,
    partitions: v.partitions.map((p) => ({
      id: p.id,
      worker: p.worker,
      volumeOffset: p.volumeOffset,
      length: p.length,
      extents: p.extents.map((e) => ({ file: e.file, offset: e.offset, length: e.length, ...(e.format ? { format: e.format } : {}) })),
    })),
  };
}

/**
 * The exit code of a failed validate: 2 when the manifest is wrong (its
 * mapping changed since the snapshots included: every command refuses it
 * with 2), else 3 when the store is damaged, else 1 when it cannot be read.
 */
export function errorFor(manifestPath: string, problems: readonly Problem[]): VsnapError | undefined {
  if (problems.length === 0) return undefined;
  const text = formatProblems(manifestPath, problems);
  const codes = new Set(problems.map((p) => p.exitCode));
  if (codes.has(2)) return new UsageError(text);
  if (codes.has(3)) return new IntegrityError(text);
  return new OperationError(text);
}

export async function validate(manifestPath: string): Promise<{ report: ValidateReport; layout?: LayoutReport; error?: VsnapError }> {
  const r = inspectManifest(manifestPath, { reportUnreadable: true });
  // The store is looked at when the mapping is known (schema and layout
  // passed): a mapping with a typo would only be reported as "changed".
  const problems = r.planned ? [...r.problems, ...(await checkStore(r.planned))] : r.problems;
  const layout = r.planned ? describe(r.planned) : undefined;
  const report: ValidateReport = {
    ok: problems.length === 0,
    problems: problems.map((p) => ({ path: p.path, message: p.message, stage: p.stage, ...(p.line !== undefined ? { line: p.line, column: p.column } : {}) })),
    ...layout,
  };
  return { report, layout, error: errorFor(manifestPath, problems) };
}
