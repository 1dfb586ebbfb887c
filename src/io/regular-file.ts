// verify reads store files that a person, a restore from backup or a hostile
// user may have replaced. Opening a FIFO blocks until a writer comes (for
// ever), and a synchronous open blocks the main thread with it, so not even
// SIGTERM is handled: check the file's type before opening it.
import fs from 'node:fs';

function kindOf(st: fs.Stats): string {
  if (st.isFIFO()) return 'a FIFO';
  if (st.isDirectory()) return 'a directory';
  if (st.isSocket()) return 'a socket';
  if (st.isCharacterDevice()) return 'a character device';
  if (st.isBlockDevice()) return 'a block device';
  return 'not a file';
}

function check(st: fs.Stats): void {
  if (!st.isFile()) throw new Error(`not a regular file (${kindOf(st)}); not opened`);
}

/** Throw unless `file` (after symlinks) is a regular file; errno failures of stat as they come. */
export function requireRegularFileSync(file: string): void {
  check(fs.statSync(file));
}

export async function requireRegularFile(file: string): Promise<void> {
  check(await fs.promises.stat(file));
}
