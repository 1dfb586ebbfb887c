// Writing an export's output in a worker (`vsnap export`): the output is a
// temporary regular file beside the target, or a device written in place.
//
// - A write must land whole: a positional write on a nearly full file system
//   writes what fits and returns a short count (ENOSPC comes only with the
//   next write), so a write that ignored the count left a hole in the image
//   and the export ended "successfully" with the wrong bytes.
// - The final sync: a character device such as /dev/null or /dev/full has
//   nothing to sync and fdatasync says EINVAL ("does not support
//   synchronization", never said of a regular file); that is not a failure of
//   the export, and must not hide a real error (ENOSPC) either.
import type { FileHandle } from 'node:fs/promises';
import { namingFile } from '../errors.js';
import { writeFully } from '../positional-io.js';

export function writeOutput(fh: FileHandle, file: string, buf: Buffer, len: number, pos: number): Promise<void> {
  return namingFile(file, writeFully(fh, buf, 0, len, pos));
}

export function syncOutput(fh: FileHandle, file: string): Promise<void> {
  return namingFile(
    file,
    fh.datasync().catch((err: NodeJS.ErrnoException) => {
      if (err.code !== 'EINVAL') throw err;
    }),
  );
}
