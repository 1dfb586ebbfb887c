// The store is private to its owner (design.md §4, docs/formats.md "Store
// directory"): change logs hold the old contents of guest blocks, so every
// directory vsnap makes in it is 0700 and every file 0600, whatever the
// process umask. A mode given to open(2) or mkdir(2) is masked by the umask,
// so each creation is followed by an explicit chmod/fchmod (a umask such as
// 0277 would otherwise leave files the owner cannot write). Files vsnap makes
// outside the store for the user (export, read --output) follow the umask.
import fs from 'node:fs';
import path from 'node:path';
import { PRIVATE_DIR_MODE, PRIVATE_FILE_MODE } from '../formats/private-file.js';

export { PRIVATE_DIR_MODE, PRIVATE_FILE_MODE };

/**
 * Create `dir` 0700 if it is missing, with any missing parents (the default
 * store's `.vsnap`, which holds the stores of a directory's volumes): a
 * directory another user could write to would let them plant a store. An
 * existing directory is left as it is (an older store is tightened once by
 * tightenStore).
 */
export async function mkdirPrivate(dir: string): Promise<void> {
  // recursive: an existing directory is no error; the result is the first directory made, if any.
  const made = await fs.promises.mkdir(dir, { recursive: true, mode: PRIVATE_DIR_MODE });
  if (made === undefined) return;
  const fresh: string[] = [];
  for (let p = path.resolve(dir); ; p = path.dirname(p)) {
    fresh.unshift(p);
    if (p === path.resolve(made) || p === path.dirname(p)) break;
  }
  for (const p of fresh) await fs.promises.chmod(p, PRIVATE_DIR_MODE);
}

/** Make a store directory vsnap created elsewhere (a snapshot's <id>.tmp) 0700. */
export async function chmodPrivateDir(dir: string): Promise<void> {
  await fs.promises.chmod(dir, PRIVATE_DIR_MODE);
}

/**
 * Tighten a store an older vsnap made with the umask's modes (0755/0644):
 * every directory 0700 and every regular file 0600, the store directory
 * itself last. Called with the lock held; one stat when the store directory
 * is already 0700, and nothing for a store of another user (root may use it,
 * but its modes are its owner's choice). Sockets are left alone (serve makes
 * them 0600). Returns whether it changed anything.
 */
export async function tightenStore(storeDir: string): Promise<boolean> {
  const st = await fs.promises.stat(storeDir);
  if ((st.mode & 0o777) === PRIVATE_DIR_MODE || st.uid !== process.getuid?.()) return false;
  await tightenTree(storeDir);
  await fs.promises.chmod(storeDir, PRIVATE_DIR_MODE);
  return true;
}

async function tightenTree(dir: string): Promise<void> {
  for (const e of await fs.promises.readdir(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) {
      await tightenTree(p);
      await fs.promises.chmod(p, PRIVATE_DIR_MODE);
    } else if (e.isFile()) {
      await fs.promises.chmod(p, PRIVATE_FILE_MODE);
    }
  }
}
