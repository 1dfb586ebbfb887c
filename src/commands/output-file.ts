// Output files written whole or not at all (export, read --output): the data
// goes to a hidden temporary name beside the target, in the same directory so
// the rename stays on one file system, and is renamed into place only when
// complete and synced; then the directory is synced. A failure or a signal
// removes the temporary file (src/interrupt.ts tracks it), so nothing partial
// is ever left under the target's name.
import fs from 'node:fs';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { OperationError, fileError, namingFile } from '../errors.js';
import { fsyncDir } from '../formats/atomic.js';
import { trackTemp } from '../interrupt.js';

/**
 * An output being written: a private temporary name beside the target
 * (`.<name>.vsnap-<pid>-<hex>.tmp`), or the target itself when that is not
 * a regular file (a block device or /dev/null cannot be renamed over).
 */
export interface Output {
  final: string;
  writing: string;
  untrack: () => void;
  /**
   * Zero chunks may be skipped: true for the fresh temporary file (its holes
   * read as zeroes); false for a device written in place, whose old bytes
   * would show through a skipped chunk.
   */
  sparse: boolean;
}

export function beginOutput(final: string, size: number): Output {
  let st: fs.Stats | undefined;
  try {
    st = fs.statSync(final);
  } catch {
    /* a new file */
  }
  if (st && !st.isFile()) {
    // A device (/dev/sdX, /dev/nbd0, /dev/null): written in place (nothing to rename), every chunk.
    return { final, writing: final, untrack: () => {}, sparse: false };
  }
  const writing = path.join(path.dirname(final), `.${path.basename(final)}.vsnap-${process.pid}-${randomBytes(4).toString('hex')}.tmp`);
  const untrack = trackTemp(writing);
  // 'wx': never follow a link planted at the temporary name.
  let created = false;
  try {
    const fd = fs.openSync(writing, 'wx', st ? st.mode & 0o7777 : 0o666);
    created = true;
    try {
      fs.ftruncateSync(fd, size);
    } finally {
      fs.closeSync(fd);
    }
  } catch (err) {
    untrack();
    // Only a file this call made goes ('wx' failing means the name was someone else's).
    if (created) fs.rmSync(writing, { force: true });
    throw fileError(writing, err);
  }
  return { final, writing, untrack, sparse: true };
}

/**
 * fdatasync every output once, after all of its copy (the workers wrote it
 * without syncing: one sync of the whole file, not one per round). Any
 * descriptor's sync writes back the file's dirty pages, whoever wrote them.
 */
export async function syncOutputs(outputs: Output[]): Promise<void> {
  await Promise.all(
    outputs.map(async (o) => {
      const fh = await namingFile(o.writing, fs.promises.open(o.writing, 'r+'));
      try {
        // A character device such as /dev/null has nothing to sync (EINVAL,
        // never said of a regular file): not a failure of the export.
        await namingFile(
          o.writing,
          fh.datasync().catch((err: NodeJS.ErrnoException) => {
            if (o.sparse || err.code !== 'EINVAL') throw err;
          }),
        );
      } finally {
        await fh.close().catch(() => undefined);
      }
    }),
  );
}

/** The copy is synced (syncOutputs, or each worker datasynced its outputs); rename every output into place, then sync the directories. */
export async function finishOutputs(outputs: Output[]): Promise<void> {
  const dirs = new Set<string>();
  for (const o of outputs) {
    if (o.writing === o.final) continue;
    await namingFile(o.final, fs.promises.rename(o.writing, o.final));
    o.untrack();
    dirs.add(path.dirname(o.final));
  }
  for (const d of dirs) await fsyncDir(d);
}

/** Remove the temporary files of outputs that will not be finished. */
export function abandonOutputs(outputs: Output[]): void {
  for (const out of outputs) {
    if (out.writing === out.final) continue;
    fs.rmSync(out.writing, { force: true });
    out.untrack();
  }
}

/**
 * An export's failure named after its output: the workers name the file they
 * write, which for a regular output is the temporary one (removed by
 * abandonOutputs), so say which output it was for.
 */
export function namedAfterOutput(outputs: readonly Output[], err: unknown): unknown {
  if (!(err instanceof OperationError)) return err;
  const o = outputs.find((x) => x.writing !== x.final && err.message.includes(x.writing));
  if (!o) return err;
  const hint = err.errno === 'ENOSPC' ? ` (the output needs room for the volume's data on its file system)` : '';
  return new OperationError(`${o.final}: ${err.message.replace(o.writing, `its temporary file ${path.basename(o.writing)}`)}${hint}; nothing was left behind`, err.errno);
}
