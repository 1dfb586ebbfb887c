// Files of the store are private to its owner: change logs hold the old
// contents of guest blocks (design.md §4, docs/formats.md "Store directory").
// A mode given to open(2) or mkdir(2) is masked by the process umask, so a
// file made here is fchmod-ed to 0600 right after its creation, whatever the
// umask (src/store/private.ts does the same for directories).
import { open, unlink, type FileHandle } from 'node:fs/promises';
import { fileError } from '../errors.js';

export const PRIVATE_FILE_MODE = 0o600;
export const PRIVATE_DIR_MODE = 0o700;

/**
 * Create `path` (it must not exist: 'wx' or 'wx+') with mode 0600. If the
 * fchmod fails, the file, ours by O_EXCL, is removed again. Errors name the file.
 */
export async function createPrivateFile(path: string, flags: 'wx' | 'wx+'): Promise<FileHandle> {
  const fh = await open(path, flags, PRIVATE_FILE_MODE);
  try {
    await fh.chmod(PRIVATE_FILE_MODE);
  } catch (e) {
    await fh.close().catch(() => undefined);
    await unlink(path).catch(() => undefined);
    throw fileError(path, e);
  }
  return fh;
}
