// The commit point of a create or a delete (design §6 step 3): one rename in
// snapshots/ and the fsync that makes it durable. The outcome is what the
// directory holds afterwards, and whether that is known to be durable; the
// caller (Cluster) reports exactly that and thaws the workers to match.
import fs from 'node:fs';
import { OperationError } from '../errors.js';
import { fsyncDir } from '../formats/atomic.js';

export interface CommitOutcome {
  /** The rename is in effect: a create's snapshot is visible, a delete's is gone. */
  committed: boolean;
  /** The directory state above is on disk (its fsync succeeded). */
  durable: boolean;
  /** Why the commit did not happen, or why it is not durable. */
  error?: Error;
}

function ioError(what: string, path: string, err: unknown): OperationError {
  const e = err as NodeJS.ErrnoException;
  // Node's message already starts with the errno name ("EIO: i/o error, fsync").
  return new OperationError(`${what} ${path}: ${e.message}`, e.code === 'ENOSPC' ? 'ENOSPC' : 'EIO');
}

/**
 * Rename `from` to `to` in `parent` and fsync `parent`. When the fsync fails
 * the rename is undone (renamed back, fsynced again): if that works, nothing
 * happened, durably. If the undo cannot be renamed, the commit stands but is
 * not known durable; if the undo's fsync fails, the commit is undone but that
 * is not known durable either. docs/reliability.md gives the reasoning.
 */
export async function commitRename(from: string, to: string, parent: string): Promise<CommitOutcome> {
  try {
    await fs.promises.rename(from, to);
  } catch (err) {
    return { committed: false, durable: true, error: ioError('cannot rename to', to, err) };
  }
  let syncErr: OperationError;
  try {
    await fsyncDir(parent);
    return { committed: true, durable: true };
  } catch (err) {
    syncErr = ioError('cannot fsync', parent, err);
  }
  try {
    await fs.promises.rename(to, from);
  } catch (err) {
    const undo = ioError('cannot undo the rename to', to, err);
    return { committed: true, durable: false, error: new OperationError(`${syncErr.message}; ${undo.message}`) };
  }
  try {
    await fsyncDir(parent);
    return { committed: false, durable: true, error: new OperationError(`${syncErr.message} after the commit rename; the rename was undone`) };
  } catch (err) {
    return { committed: false, durable: false, error: new OperationError(`${syncErr.message}; the rename was undone, but ${ioError('cannot fsync', parent, err).message}`) };
  }
}

/**
 * Test-only pause: with VSNAP_PAUSE=<point> and VSNAP_PAUSE_FILE=<file>, the
 * process creates <file> when it reaches <point> and waits (up to 60 s) until
 * the file is removed, so a test can act inside a window (kill a worker).
 */
export async function pauseAt(point: string): Promise<void> {
  const file = process.env.VSNAP_PAUSE_FILE;
  if (process.env.VSNAP_PAUSE !== point || !file) return;
  fs.writeFileSync(file, `${process.pid}\n`);
  const until = Date.now() + 60_000;
  while (fs.existsSync(file) && Date.now() < until) await new Promise((r) => setTimeout(r, 10));
}
