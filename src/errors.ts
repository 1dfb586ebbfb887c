// Typed errors. The CLI's single error boundary (src/main.ts) maps these to
// the exit codes of design.md §8; nothing else in the code calls process.exit.

export const EXIT_OK = 0;
export const EXIT_FAILED = 1;
export const EXIT_USAGE = 2;
export const EXIT_INTEGRITY = 3;

export class VsnapError extends Error {
  readonly exitCode: number;
  constructor(message: string, exitCode: number) {
    super(message);
    this.name = new.target.name;
    this.exitCode = exitCode;
  }
}

/** Bad flags, bad manifest, unknown snapshot: exit 2. */
export class UsageError extends VsnapError {
  constructor(message: string) {
    super(message, EXIT_USAGE);
  }
}

/** The operation failed: I/O error, worker died, volume busy: exit 1. */
export class OperationError extends VsnapError {
  /** errno-style code for the NBD layer (EIO unless set). */
  readonly errno: string;
  constructor(message: string, errno = 'EIO') {
    super(message, EXIT_FAILED);
    this.errno = errno;
  }
}

/** A corrupt file, a failed checksum, a backing file changed behind vsnap: exit 3. */
export class IntegrityError extends VsnapError {
  constructor(message: string) {
    super(message, EXIT_INTEGRITY);
  }
}

/** Snapshot data a backing-file writer outside vsnap may have invalidated: exit 3 unless --force. */
export class StaleError extends IntegrityError {}

/** Rebuild a typed error from its serialized form (errors cross the worker IPC channel). */
export interface SerializedError {
  kind: 'usage' | 'operation' | 'integrity' | 'stale' | 'internal';
  message: string;
  errno?: string;
}

/**
 * The errno a failed system call reports to a client: a full file system or
 * quota is ENOSPC (a client may free space and retry), anything else EIO.
 */
export function errnoOf(err: unknown): 'ENOSPC' | 'EIO' {
  if (err instanceof OperationError) return err.errno === 'ENOSPC' ? 'ENOSPC' : 'EIO';
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  return code === 'ENOSPC' || code === 'EDQUOT' ? 'ENOSPC' : 'EIO';
}

/** A Node errno exception (fs, net, child_process): it has a string code such as EIO. */
export function isErrnoError(err: unknown): err is NodeJS.ErrnoException {
  return err instanceof Error && typeof (err as NodeJS.ErrnoException).code === 'string' && /^E[A-Z0-9]+$/.test((err as NodeJS.ErrnoException).code!);
}

/** What people and scripts need from an errno failure: the call, the file (`file` when Node gave none) and the errno, on one line. */
export function describeErrnoError(e: NodeJS.ErrnoException, file?: string): string {
  const dest = (e as { dest?: string }).dest;
  const what = [e.syscall, e.path ?? file, dest !== undefined ? `-> ${dest}` : undefined].filter((x) => x !== undefined).join(' ');
  // Node's own message repeats the code ("EACCES: permission denied, open '/x'"); keep its plain-words part.
  const words = (e.message.match(/^E[A-Z0-9]+: ([^,]+)/)?.[1] ?? e.message).trim();
  const hint = e.code === 'EACCES' || e.code === 'EPERM' ? ' (run vsnap as the user who owns the volume and its store)' : e.code === 'EROFS' ? ' (the store is on a read-only file system)' : '';
  return `${what ? `${what}: ` : ''}${words} (${e.code})${hint}`;
}

/** Wrap an errno failure as an OperationError that keeps the errno for the NBD layer. */
export function operationErrorFrom(e: NodeJS.ErrnoException, file?: string): OperationError {
  return new OperationError(describeErrnoError(e, file), errnoOf(e));
}

/**
 * An errno failure of a call on a descriptor of `file` as an OperationError
 * naming the file and keeping the errno (ENOSPC stays ENOSPC). Node gives
 * descriptor calls (read, write, fdatasync, close, fstat) no path, so code
 * that holds a descriptor with a known path wraps its failures here, once.
 * An errno error that names its path already (open, rename: callers may test
 * its code, ENOENT), a typed error or any other error passes through unchanged.
 */
export function fileError(file: string, err: unknown): unknown {
  if (!isErrnoError(err) || err.path !== undefined) return err;
  return operationErrorFrom(err, file);
}

/** `p`, with an errno failure named after `file` (fileError). */
export function namingFile<T>(file: string, p: Promise<T>): Promise<T> {
  return p.catch((err: unknown) => {
    throw fileError(file, err);
  });
}

export function serializeError(err: unknown): SerializedError {
  if (err instanceof StaleError) return { kind: 'stale', message: err.message };
  if (err instanceof IntegrityError) return { kind: 'integrity', message: err.message };
  if (err instanceof UsageError) return { kind: 'usage', message: err.message };
  if (err instanceof OperationError) return { kind: 'operation', message: err.message, errno: err.errno };
  if (isErrnoError(err)) {
    const o = operationErrorFrom(err);
    return { kind: 'operation', message: o.message, errno: o.errno };
  }
  const e = err as Error;
  return { kind: 'internal', message: e instanceof Error ? (e.stack ?? e.message) : String(err) };
}

export function deserializeError(s: SerializedError): Error {
  switch (s.kind) {
    case 'stale':
      return new StaleError(s.message);
    case 'integrity':
      return new IntegrityError(s.message);
    case 'usage':
      return new UsageError(s.message);
    case 'operation':
      return new OperationError(s.message, s.errno);
    default:
      return new Error(s.message);
  }
}
