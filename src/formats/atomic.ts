// Atomic replacement of small metadata files (design §4: write temp, fsync,
// rename, fsync dir). A reader sees either the old file or the new one, never
// a mix, and after a crash the directory entry points at fully written data.
import { randomBytes } from 'node:crypto';
import { open, rename, unlink } from 'node:fs/promises';
import { dirname } from 'node:path';
import { fileError, namingFile } from '../errors.js';
import { createPrivateFile } from './private-file.js';

/**
 * fsync a directory so that entries created, renamed or removed in it survive
 * a crash. Without it a rename can be lost even though the file data is durable.
 */
export async function fsyncDir(dir: string): Promise<void> {
  const fh = await open(dir, 'r');
  try {
    await fh.sync();
  } catch (e) {
    await fh.close().catch(() => undefined);
    throw fileError(dir, e);
  }
  await namingFile(dir, fh.close());
}

/**
 * Replace `path` with `data` atomically. The temporary name carries the pid and
 * a random part so two processes (or two calls in one process) never share one,
 * and a leftover from a crash is recognisable (`<name>.tmp-<pid>-<hex>`).
 */
export async function writeFileAtomic(path: string, data: Buffer | string): Promise<void> {
  const tmp = `${path}.tmp-${process.pid}-${randomBytes(6).toString('hex')}`;
  // 'wx': never follow or clobber something already at the temporary name; 0600 (store files are private).
  const fh = await createPrivateFile(tmp, 'wx');
  let renamed = false;
  try {
    try {
      await fh.writeFile(data);
      await fh.sync();
    } catch (e) {
      await fh.close().catch(() => undefined);
      throw fileError(tmp, e);
    }
    await namingFile(tmp, fh.close());
    await rename(tmp, path);
    renamed = true;
  } finally {
    // On any failure the temporary file is garbage; the original stays intact.
    if (!renamed) await unlink(tmp).catch(() => undefined);
  }
  await fsyncDir(dirname(path));
}
