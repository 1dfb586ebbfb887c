// QEMU-compatible image locking of backing files (docs/reliability.md,
// "Writers that bypass vsnap").
//
// QEMU's file-posix driver keeps an image's permissions in byte-range locks
// at fixed offsets: for each permission bit i, a shared lock on byte 100+i
// says "I use permission i", and a shared lock on byte 200+i says "I do not
// let others have permission i". Opening an image, QEMU tests (as if taking an
// exclusive lock) byte 200+i for each permission it wants and byte 100+i for
// each one it will not share, and refuses with `Failed to get "write" lock`
// (or `Failed to get shared "write" lock`) when another open file holds it.
// The locks are open-file-description locks, so they hold across processes,
// vanish when the descriptor closes (or the process dies), and shared locks
// of several vsnap workers on the same bytes coexist.
//
// vsnap takes the permissions of a writer that must not be written under:
// it uses consistent read and write, and shares neither write nor resize
// (an extent is a fixed byte range of the file). So, while a vsnap process
// has a backing file open, qemu-io/qemu-system opening it read-write fail on
// byte 201 and qemu-img info/convert (read-only, not sharing write) fail on
// byte 101; their -U/force-share still works.
import fs from 'node:fs';
import os from 'node:os';
import { addonLoader } from './native-addon.js';
import { OperationError, fileError } from '../errors.js';

interface Native {
  setLock(fd: number, start: number, length: number, kind: number): number;
  testLock(fd: number, start: number, length: number, kind: number): number;
}

const PERM_BASE = 100;
const SHARED_BASE = 200;
/** QEMU's BLK_PERM_* bits, by bit number, as its messages name them. */
const PERM_NAMES = ['consistent read', 'write', 'write unchanged', 'resize'];
const CONSISTENT_READ = 0;
const WRITE = 1;
const RESIZE = 3;

/** What vsnap uses, and what it does not share. */
const HELD = [CONSISTENT_READ, WRITE];
const UNSHARED = [WRITE, RESIZE];

const KIND_SHARED = 1;
const KIND_EXCLUSIVE = 2;

const load = addonLoader<Native>('vsnap_native', 'image locking');

function errnoName(n: number): string {
  const entry = Object.entries(os.constants.errno).find(([, v]) => v === n);
  return entry ? entry[0] : `errno ${n}`;
}

/**
 * Take vsnap's QEMU locks on an open backing file (fd open for reading).
 * Fails only if someone holds an exclusive lock on those bytes (no QEMU does)
 * or the file system refuses locks.
 */
export function lockImage(fd: number, file: string): void {
  const n = load();
  const bytes = [...HELD.map((i) => PERM_BASE + i), ...UNSHARED.map((i) => SHARED_BASE + i)];
  for (const b of bytes) {
    const err = n.setLock(fd, b, 1, KIND_SHARED);
    if (err === 0) continue;
    const name = errnoName(err);
    if (name === 'EAGAIN' || name === 'EACCES') {
      throw new OperationError(`${file}: another process holds an exclusive lock on byte ${b}; is another program using the image?`);
    }
    throw new OperationError(`${file}: cannot lock byte ${b} (QEMU image locking): ${name}`);
  }
}

/**
 * QEMU's own open check, for vsnap's permissions, on a descriptor that holds
 * no locks: the first conflict as QEMU would word it, or undefined.
 */
export function imageLockConflict(fd: number, file: string): string | undefined {
  const n = load();
  const probe = (byte: number): boolean => {
    const r = n.testLock(fd, byte, 1, KIND_EXCLUSIVE);
    if (r === -1) return true;
    if (r === 0) return false;
    throw new OperationError(`${file}: cannot test byte ${byte} (QEMU image locking): ${errnoName(r)}`);
  };
  for (const i of HELD) if (probe(SHARED_BASE + i)) return `Failed to get "${PERM_NAMES[i]}" lock`;
  for (const i of UNSHARED) if (probe(PERM_BASE + i)) return `Failed to get shared "${PERM_NAMES[i]}" lock`;
  return undefined;
}

/**
 * Before vsnap's workers open the backing files: refuse, as QEMU would, when
 * another program (a running VM, qemu-img) holds them in a way that conflicts
 * with vsnap writing. Run by the coordinator while no vsnap process holds
 * the files, since vsnap's own locks would conflict with the test too.
 */
export function assertImagesFree(files: string[]): void {
  for (const file of new Set(files)) {
    let fd: number;
    try {
      fd = fs.openSync(file, 'r');
    } catch {
      continue; // a missing or unreadable file is reported where it is opened for I/O
    }
    try {
      const conflict = imageLockConflict(fd, file);
      if (conflict) {
        throw new OperationError(`${file}: ${conflict}: another process (a virtual machine, qemu-img, qemu-io) is using the image`);
      }
    } finally {
      try {
        fs.closeSync(fd);
      } catch (err) {
        throw fileError(file, err); // an errno alone would not say which image
      }
    }
  }
}
