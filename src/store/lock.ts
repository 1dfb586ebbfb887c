// The store lock: one vsnap process writes a volume at a time. The lock file
// names its holder so a second process can say who holds it; a lock whose
// holder is dead (crash, kill -9) is taken over.
import fs from 'node:fs';
import { OperationError, fileError } from '../errors.js';
import { PRIVATE_FILE_MODE } from '../formats/private-file.js';
import { lockFile } from './layout.js';
import { throwIfInterrupted } from '../interrupt.js';

export interface LockInfo {
  pid: number;
  command: string;
  startedAt: string;
  /** Control socket of a `vsnap serve` holding the volume. */
  socket?: string;
  /**
   * Which process, not only which pid: boot id and start time in clock ticks
   * (/proc/<pid>/stat field 22). After a crash and a reboot, or pid reuse,
   * the pid may belong to an unrelated live process; the start time tells.
   */
  procStart?: string;
}

/** `<boot id>:<start ticks>` of a process, or undefined where /proc cannot tell. */
export function processStart(pid: number): string | undefined {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    // The command name (field 2) may hold spaces and parentheses: count from the last ')'.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const ticks = fields[19];
    const boot = fs.readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim();
    return ticks ? `${boot}:${ticks}` : undefined;
  } catch {
    return undefined;
  }
}

export function lockPath(storeDir: string): string {
  return lockFile(storeDir);
}

/**
 * A process that exists and has not exited. kill(pid, 0) succeeds on a
 * zombie too: a `serve` killed with -9 whose parent (a supervisor, a CI
 * harness) has not reaped it yet. A zombie has closed its files and its
 * sockets, so it holds nothing: its state letter in /proc says so.
 */
function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EPERM') return false;
  }
  const state = processState(pid);
  return state !== 'Z' && state !== 'X' && state !== 'x';
}

/** The state letter of /proc/<pid>/stat (R, S, D, Z, ...), or undefined where /proc cannot tell. */
export function processState(pid: number): string | undefined {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[0] || undefined;
  } catch {
    return undefined;
  }
}

/** The lock's holder is running: its pid is alive and, when recorded, started when the lock says. */
function holderAlive(info: LockInfo): boolean {
  if (!alive(info.pid)) return false;
  if (info.procStart === undefined) return true;
  const now = processStart(info.pid);
  return now === undefined || now === info.procStart;
}

function parseLock(raw: string): LockInfo | undefined {
  try {
    const info = JSON.parse(raw) as LockInfo;
    return typeof info.pid === 'number' ? info : undefined;
  } catch {
    return undefined;
  }
}

export function readLock(storeDir: string): LockInfo | undefined {
  try {
    return parseLock(fs.readFileSync(lockPath(storeDir), 'utf8'));
  } catch {
    return undefined;
  }
}

/**
 * Create the lock file with its whole content at once: write a private
 * temporary file, then link(2) it to the lock name, which fails if the lock
 * exists. Nobody can ever read a half-written lock (and mistake it for a
 * crashed holder's, as an O_EXCL create followed by a write would allow).
 */
function createWhole(file: string, content: string): boolean {
  const tmp = `${file}.${process.pid}.${Math.random().toString(36).slice(2)}`;
  const fd = fs.openSync(tmp, 'wx', PRIVATE_FILE_MODE);
  try {
    try {
      fs.fchmodSync(fd, PRIVATE_FILE_MODE); // the umask masked the mode above
      fs.writeSync(fd, content);
      fs.fsyncSync(fd);
    } finally {
      fs.closeSync(fd);
    }
  } catch (err) {
    try {
      fs.rmSync(tmp, { force: true });
    } catch {
      // the failure to report is the one above
    }
    throw fileError(tmp, err); // calls on a descriptor name no file
  }
  try {
    fs.linkSync(tmp, file);
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    return false;
  } finally {
    fs.rmSync(tmp, { force: true });
  }
}

/**
 * Remove a dead holder's lock. Two processes may race to do this: the rename
 * is the arbiter, and a process that finds it moved a lock other than the one
 * it judged dead (a fresh one, created meanwhile) links it back.
 */
function takeOver(file: string, deadRaw: string): void {
  const grave = `${file}.stale-${process.pid}-${Math.random().toString(36).slice(2)}`;
  try {
    fs.renameSync(file, grave);
  } catch {
    return; // someone else took it over first
  }
  try {
    if (fs.readFileSync(grave, 'utf8') !== deadRaw) {
      try {
        fs.linkSync(grave, file);
      } catch {
        /* a third process already holds a new lock */
      }
    }
  } finally {
    fs.rmSync(grave, { force: true });
  }
}

/** The holder, if the lock is held by a live process other than this one. */
export function liveHolder(storeDir: string): LockInfo | undefined {
  const info = readLock(storeDir);
  return info && info.pid !== process.pid && holderAlive(info) ? info : undefined;
}

export class StoreLock {
  private constructor(
    readonly storeDir: string,
    readonly info: LockInfo,
  ) {}

  static async acquire(storeDir: string, command: string, opts: { waitMs?: number; socket?: string } = {}): Promise<StoreLock> {
    const file = lockPath(storeDir);
    const start = processStart(process.pid);
    const info: LockInfo = {
      pid: process.pid,
      command,
      startedAt: new Date().toISOString(),
      ...(start ? { procStart: start } : {}),
      ...(opts.socket ? { socket: opts.socket } : {}),
    };
    const deadline = Date.now() + (opts.waitMs ?? Number(process.env.VSNAP_LOCK_WAIT_MS ?? 3000));
    for (;;) {
      if (createWhole(file, JSON.stringify(info))) return new StoreLock(storeDir, info);
      let raw: string;
      let ageMs: number;
      try {
        raw = fs.readFileSync(file, 'utf8');
        ageMs = Date.now() - fs.statSync(file).mtimeMs;
      } catch {
        continue; // released meanwhile: try again at once
      }
      const holder = parseLock(raw);
      if (holder && holderAlive(holder)) {
        if (holder.socket) {
          // A server holds the volume for as long as it runs: waiting is pointless.
          throw new OperationError(
            `volume is served by pid ${holder.pid} (vsnap serve, control socket ${holder.socket}); use its NBD exports, or run this command after the server stops`,
          );
        }
        if (Date.now() >= deadline) {
          const waited = opts.waitMs ?? Number(process.env.VSNAP_LOCK_WAIT_MS ?? 3000);
          throw new OperationError(
            `volume is busy: ${storeDir} is locked by pid ${holder.pid} (${holder.command}, since ${holder.startedAt}); waited ${waited / 1000} s for it: give --wait DURATION (such as --wait 10m) to wait longer`,
          );
        }
        throwIfInterrupted(); // Ctrl-C while waiting (--wait 10m) ends the wait
        await new Promise((r) => setTimeout(r, 50));
        continue;
      }
      // Lock files are created whole (see createWhole), so an unreadable one
      // is damage, not a writer caught half-way; still, give it a moment.
      if (!holder && ageMs < 2000) {
        await new Promise((r) => setTimeout(r, 50));
        continue;
      }
      takeOver(file, raw);
    }
  }

  release(): void {
    const cur = readLock(this.storeDir);
    if (cur && cur.pid === process.pid) fs.rmSync(lockPath(this.storeDir), { force: true });
  }
}
