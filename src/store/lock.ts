// The store lock: one vsnap process writes a volume at a time. The lock file
// names its holder so a second process can say who holds it; a lock whose
// holder is dead (crash, kill -9) is taken over.
import fs from 'node:fs';
import path from 'node:path';
import { OperationError } from '../errors.js';

export interface LockInfo {
  pid: number;
  command: string;
  startedAt: string;
  /** Control socket of a `vsnap serve` holding the volume. */
  socket?: string;
}

export function lockPath(storeDir: string): string {
  return path.join(storeDir, 'lock');
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

export function readLock(storeDir: string): LockInfo | undefined {
  try {
    const info = JSON.parse(fs.readFileSync(lockPath(storeDir), 'utf8')) as LockInfo;
    return typeof info.pid === 'number' ? info : undefined;
  } catch {
    return undefined;
  }
}

/** The holder, if the lock is held by a live process other than this one. */
export function liveHolder(storeDir: string): LockInfo | undefined {
  const info = readLock(storeDir);
  return info && info.pid !== process.pid && alive(info.pid) ? info : undefined;
}

export class StoreLock {
  private constructor(
    readonly storeDir: string,
    readonly info: LockInfo,
  ) {}

  static async acquire(storeDir: string, command: string, opts: { waitMs?: number; socket?: string } = {}): Promise<StoreLock> {
    const file = lockPath(storeDir);
    const info: LockInfo = { pid: process.pid, command, startedAt: new Date().toISOString(), ...(opts.socket ? { socket: opts.socket } : {}) };
    const deadline = Date.now() + (opts.waitMs ?? Number(process.env.VSNAP_LOCK_WAIT_MS ?? 3000));
    for (;;) {
      try {
        const fd = fs.openSync(file, 'wx', 0o600);
        fs.writeSync(fd, JSON.stringify(info));
        fs.fsyncSync(fd);
        fs.closeSync(fd);
        return new StoreLock(storeDir, info);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      }
      const holder = readLock(storeDir);
      if (!holder || !alive(holder.pid)) {
        // A dead holder (or a half-written lock file from a crash): take over.
        // Rename first so two processes racing here cannot both unlink a fresh lock.
        const grave = `${file}.stale-${process.pid}`;
        try {
          const again = readLock(storeDir);
          if (again && alive(again.pid)) continue;
          fs.renameSync(file, grave);
          fs.rmSync(grave, { force: true });
        } catch {
          /* someone else took it over first; loop */
        }
        continue;
      }
      if (holder.socket) {
        // A server holds the volume for as long as it runs: waiting is pointless.
        throw new OperationError(
          `volume is served by pid ${holder.pid} (vsnap serve, control socket ${holder.socket}); use its NBD exports, or run this command after the server stops`,
        );
      }
      if (Date.now() >= deadline) {
        throw new OperationError(
          `volume is busy: ${storeDir} is locked by pid ${holder.pid} (${holder.command}, since ${holder.startedAt})`,
        );
      }
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  release(): void {
    const cur = readLock(this.storeDir);
    if (cur && cur.pid === process.pid) fs.rmSync(lockPath(this.storeDir), { force: true });
  }
}
