// What each backing file looked like right after this worker's own last
// write to it (docs/reliability.md, "Writers that bypass vsnap").
//
// A write by another program changes the file's mtime/ctime (and maybe its
// size); vsnap's own writes do too. To tell them apart at an orderly close,
// the worker stats the file (through its own descriptor, so a file renamed
// over the path is not mistaken for ours) once its writes have completed,
// coalesced to one fstat per file per event-loop turn, and keeps the latest
// result. The coordinator records, per file, the newest such identity of all
// workers as what vsnap left behind (store/backing.ts); a later difference is
// a foreign write, reported stale at the next open.
import fs from 'node:fs';
import type { BackingIdentity } from '../store/backing.js';

const pending = new Map<string, number>();
/** undefined: the post-write identity could not be taken (then the close-time one is used). */
const after = new Map<string, BackingIdentity | undefined>();
/** dev/ino of the file each path named when this worker opened it. */
const opened = new Map<string, { dev: number; ino: number }>();
let scheduled = false;

function identityOf(file: string, st: fs.Stats): BackingIdentity {
  return { path: file, dev: st.dev, ino: st.ino, size: st.size, mtimeMs: st.mtimeMs, ctimeMs: st.ctimeMs };
}

/** When a backing file is opened for writing: which file the descriptor is. */
export function noteOpened(file: string, fd: number): void {
  const st = fs.fstatSync(fd);
  opened.set(file, { dev: st.dev, ino: st.ino });
}

/** After one of this worker's writes to `file` (through `fd`) completed. */
export function noteOwnWrite(file: string, fd: number): void {
  pending.set(file, fd);
  if (!scheduled) {
    scheduled = true;
    setImmediate(settleOwnWrites);
  }
}

/** Take the pending post-write identities now (also run before a close). */
export function settleOwnWrites(): void {
  scheduled = false;
  for (const [file, fd] of pending) {
    let id: BackingIdentity | undefined;
    try {
      id = identityOf(file, fs.fstatSync(fd));
      const o = opened.get(file);
      // A descriptor number reused for another file after a close: not ours.
      if (o && (o.dev !== id.dev || o.ino !== id.ino)) id = undefined;
    } catch {
      id = undefined;
    }
    after.set(file, id);
  }
  pending.clear();
}

/**
 * At an orderly close: the identities this worker vouches for, for the given
 * files. A file it wrote: as its last write left it. With `all` (this worker
 * took over after a crashed predecessor, whose writes it cannot account
 * for): every file, as it is now. Files it did not write are left out.
 */
export function leftBehind(files: Iterable<string>, all: boolean): BackingIdentity[] {
  settleOwnWrites();
  const out: BackingIdentity[] = [];
  for (const file of new Set(files)) {
    if (!all && !after.has(file)) continue;
    const id = all ? undefined : after.get(file);
    if (id) {
      out.push(id);
      continue;
    }
    try {
      out.push(identityOf(file, fs.statSync(file)));
    } catch {
      // gone: the next open reports it
    }
  }
  return out;
}
