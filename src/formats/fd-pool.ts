// A per-process pool of open file descriptors for files that are many and
// mostly idle: the change logs, one per partition per snapshot. A worker with
// 10,000 snapshots must not hold 10,000 descriptors (issue 9: `create` then
// failed with EMFILE, and under `ulimit -n 4096` even `delete`), so a file
// holds its descriptor only while it is used or among the most recently used
// `limit` ones (docs/decisions.md "Change-log descriptors").
//
// Rules:
//   - A PooledFile opens its path lazily on first use after an eviction and
//     reopens it with the same flags; the reopened file must be the same
//     inode as the first one (a file replaced behind vsnap is an integrity
//     error, not silently read).
//   - Every use is bracketed by acquire/release (reference counting): a
//     descriptor with an I/O in flight is never closed, by eviction or by
//     close(); close() waits for the users to finish.
//   - Pinned files (the newest log, which takes the appends) are never evicted.
//   - The bound is soft: when every open descriptor is in use or pinned, an
//     open goes over it and the pool trims back as uses end, rather than
//     blocking I/O. An open failing with EMFILE/ENFILE evicts idle ones and
//     retries before it gives up.
//   - Hot path: an open file's acquire is a counter bump and a Map reorder;
//     no syscall, no promise.
import fs from 'node:fs';
import { open, type FileHandle } from 'node:fs/promises';
import { IntegrityError, OperationError, errnoOf } from '../errors.js';

/** The bound when the process's open-file limit is unknown. */
export const DEFAULT_FD_LIMIT = 256;
/** The most the pool keeps by default however high `ulimit -n` is. */
export const MAX_DEFAULT_FD_LIMIT = 4096;
/** Environment variable lowering (or raising) the bound, for tests and small ulimits. */
export const FD_LIMIT_ENV = 'VSNAP_CLOG_FDS';

/** The soft RLIMIT_NOFILE (`ulimit -n`) from /proc/self/limits, or undefined if unknown or unlimited. */
export function openFileLimit(): number | undefined {
  try {
    const m = /^Max open files\s+(\d+)/m.exec(fs.readFileSync('/proc/self/limits', 'utf8'));
    return m ? Number(m[1]) : undefined;
  } catch {
    return undefined;
  }
}

/**
 * $VSNAP_CLOG_FDS if set; else a quarter of `ulimit -n` (node raises the
 * soft limit to the hard one at start), between 8 and 4096: 256 under
 * `ulimit -n 1024`. The other three quarters are for backing files, sockets
 * and node itself. More than needed costs nothing, and a bound below the
 * number of logs a read touches costs a reopen (open + fstat) per log per
 * request: reading the oldest of 200 snapshots with 400 logs per worker
 * through a 256 bound ran at about half the speed of reading the newest.
 */
function limitFromEnv(): number {
  const raw = process.env[FD_LIMIT_ENV];
  if (raw === undefined || raw === '') {
    const nofile = openFileLimit();
    return nofile === undefined ? DEFAULT_FD_LIMIT : Math.max(8, Math.min(MAX_DEFAULT_FD_LIMIT, Math.floor(nofile / 4)));
  }
  const n = Number(raw);
  if (!Number.isSafeInteger(n) || n < 1) throw new OperationError(`${FD_LIMIT_ENV}=${raw}: expected a whole number of descriptors >= 1`);
  return n;
}

export class FdPool {
  /** Files holding a descriptor, least recently used first (Map keeps insertion order). */
  private readonly lru = new Map<PooledFile, true>();
  /** Descriptors being closed after an eviction: still counted by the kernel until done. */
  private readonly closing = new Set<Promise<void>>();
  opens = 0;
  evictions = 0;

  constructor(public limit: number = DEFAULT_FD_LIMIT) {}

  /** Descriptors held now (open files, including those being closed). */
  get held(): number {
    return this.lru.size + this.closing.size;
  }

  /**
   * Take over an already open handle (the opener just read the file). `flags`
   * are how a later reopen opens it; `id` is the inode identity it must keep.
   */
  adopt(path: string, flags: 'r' | 'r+', fh: FileHandle, id: { dev: number; ino: number }, what = 'file'): PooledFile {
    const f = new PooledFile(this, path, flags, id, fh, what);
    this.lru.set(f, true);
    this.opens++;
    this.trim();
    return f;
  }

  /** Wait for evicted descriptors to finish closing (tests). */
  async settle(): Promise<void> {
    while (this.closing.size) await Promise.all([...this.closing]);
  }

  /** @internal a use of `f`: most recently used now. */
  touch(f: PooledFile): void {
    this.lru.delete(f);
    this.lru.set(f, true);
  }

  /** @internal */
  forget(f: PooledFile): void {
    this.lru.delete(f);
  }

  /** @internal `f` opened a descriptor again. */
  reopened(f: PooledFile): void {
    this.lru.set(f, true);
    this.opens++;
    this.trim();
  }

  /** Close idle, unpinned descriptors, least recently used first, until within the bound (or `max` evictions). */
  trim(max = Infinity, bound = this.limit): number {
    let evicted = 0;
    if (this.lru.size <= bound) return 0;
    for (const f of this.lru.keys()) {
      if (this.lru.size <= bound || evicted >= max) break;
      if (f.users > 0 || f.pinned) continue;
      this.evict(f);
      evicted++;
    }
    return evicted;
  }

  private evict(f: PooledFile): void {
    const fh = f.detach();
    this.lru.delete(f);
    this.evictions++;
    if (!fh) return;
    // A close error cannot lose data here: appends are fdatasynced before they count.
    const p: Promise<void> = fh.close().catch(() => undefined).then(() => {
      this.closing.delete(p);
    });
    this.closing.add(p);
  }

  /** Open `path` (a file to adopt, or a reopen), evicting idle descriptors and retrying while the process is out of them. */
  async openFile(path: string, flags: string, mode?: number): Promise<FileHandle> {
    for (;;) {
      try {
        return await open(path, flags, mode);
      } catch (e) {
        const code = (e as NodeJS.ErrnoException).code;
        if ((code === 'EMFILE' || code === 'ENFILE') && this.trim(8, 0) > 0) {
          await this.settle();
          continue;
        }
        throw e;
      }
    }
  }
}

export class PooledFile {
  users = 0;
  pinned = false;
  private isClosed = false;
  private opening: Promise<FileHandle> | undefined;
  private drained: (() => void) | undefined;
  private closing: Promise<void> | undefined;

  constructor(
    private readonly pool: FdPool,
    readonly path: string,
    private readonly flags: 'r' | 'r+',
    private readonly id: { dev: number; ino: number },
    private fh: FileHandle | undefined,
    /** What the file is, for messages ("change log"). */
    private readonly what = 'file',
  ) {}

  /** Whether close() was called: every use then fails. */
  get closed(): boolean {
    return this.isClosed;
  }

  /** Whether a descriptor is held now (tests). */
  get isOpen(): boolean {
    return this.fh !== undefined;
  }

  /** The open handle with one more user, or undefined when it must be (re)opened: then call acquire(). */
  tryAcquire(): FileHandle | undefined {
    const fh = this.fh;
    if (fh === undefined || this.isClosed) return undefined;
    this.users++;
    this.pool.touch(this);
    return fh;
  }

  /** The handle with one more user, reopening it if it was evicted. Pair with release(). */
  async acquire(): Promise<FileHandle> {
    if (this.isClosed) throw new Error(`${this.what} ${this.path} is closed`);
    this.users++;
    try {
      if (this.fh) {
        this.pool.touch(this);
        return this.fh;
      }
      this.opening ??= this.reopen().finally(() => {
        this.opening = undefined;
      });
      return await this.opening;
    } catch (e) {
      this.release();
      throw e;
    }
  }

  release(): void {
    this.users--;
    if (this.users > 0) return;
    if (this.isClosed) this.drained?.();
    else this.pool.trim();
  }

  /** Run `fn` with the handle held. */
  async use<T>(fn: (fh: FileHandle) => Promise<T>): Promise<T> {
    const fh = this.tryAcquire() ?? (await this.acquire());
    try {
      return await fn(fh);
    } finally {
      this.release();
    }
  }

  /** Keep (or stop keeping) the descriptor open regardless of the bound. */
  pin(on: boolean): void {
    this.pinned = on;
    if (!on && this.users === 0) this.pool.trim();
  }

  /** Final close: waits for the current users, then closes the descriptor. Idempotent. */
  close(): Promise<void> {
    this.closing ??= (async () => {
      this.isClosed = true;
      this.pool.forget(this);
      if (this.users > 0) await new Promise<void>((r) => (this.drained = r));
      if (this.opening) await this.opening.catch(() => undefined);
      const fh = this.detach();
      if (fh) await fh.close();
    })();
    return this.closing;
  }

  /** @internal hand the descriptor over for closing. */
  detach(): FileHandle | undefined {
    const fh = this.fh;
    this.fh = undefined;
    return fh;
  }

  private async reopen(): Promise<FileHandle> {
    let fh: FileHandle;
    try {
      fh = await this.pool.openFile(this.path, this.flags);
    } catch (e) {
      throw new OperationError(`${this.path}: reopening the file failed: ${(e as Error).message}`, errnoOf(e));
    }
    try {
      const st = await fh.stat();
      if (st.dev !== this.id.dev || st.ino !== this.id.ino) {
        throw new IntegrityError(`${this.path} was replaced behind vsnap: it is inode ${st.ino} on device ${st.dev}, it was inode ${this.id.ino} on device ${this.id.dev} when opened`);
      }
    } catch (e) {
      await fh.close().catch(() => undefined);
      throw e;
    }
    this.fh = fh;
    // A close() that raced this reopen closes the handle once its users are done; it is no longer pooled.
    if (!this.isClosed) this.pool.reopened(this);
    return fh;
  }
}

let shared: FdPool | undefined;

/** The process's pool for change logs, bounded by $VSNAP_CLOG_FDS (default 256). */
export function changeLogFds(): FdPool {
  shared ??= new FdPool(limitFromEnv());
  return shared;
}
