// The worker's side of guarding backing files against writers that bypass
// vsnap, in the two calls the I/O path makes: when it opens a file for
// writing (QEMU's image locks, prevention) and after each of its writes
// (the file's identity afterwards, detection at close).
import fs from 'node:fs';
import { lockImage } from './image-lock.js';
import { noteOpened } from './own-writes.js';

export { noteOwnWrite } from './own-writes.js';

/** A backing file just opened read-write: lock it as QEMU would; on failure close the descriptor. */
export function guardOpened(file: string, fd: number): void {
  try {
    lockImage(fd, file);
    noteOpened(file, fd);
  } catch (err) {
    fs.closeSync(fd);
    throw err;
  }
}
