// Ctrl-C (SIGINT) and SIGTERM for every command but `serve` (which stops its
// own way, exit 0). The shell convention for the exit status: 128 + the
// signal number, 130 for SIGINT and 143 for SIGTERM.
//
// Why not simply die: the workers ignore the signal (worker/main.ts), so a
// coordinator that died left them to exit on the closed link without their
// orderly close, every partition state said "unclean", and the next `status`
// said "recovered after crash" after a mere Ctrl-C. And a dying process left
// its temporary files (an export's output, write's stdin spool).
//
// So: a command's guarded region (session.ts: the store is locked, workers
// may run) learns of the signal, stops, closes the workers in order and
// releases the lock, then the error boundary exits 130/143. Outside a guarded
// region (parsing, waiting for the lock) there is nothing to close, and the
// process exits at once. Temporary files registered here are removed on
// every exit path. A second signal exits at once (removing them too).
import fs from 'node:fs';
import { VsnapError } from './errors.js';

const SIGNAL_EXIT: Record<string, number> = { SIGINT: 130, SIGTERM: 143 };

/** The command was stopped by a signal: exit 128 + the signal's number. */
export class InterruptedError extends VsnapError {
  constructor(readonly signal: NodeJS.Signals) {
    super(`interrupted by ${signal}; stopped cleanly (workers closed, temporary files removed)`, SIGNAL_EXIT[signal] ?? 130);
  }
}

let signalled: NodeJS.Signals | undefined;
/** Guarded regions in progress, each told of the signal. */
const guards = new Set<(sig: NodeJS.Signals) => void>();
/** Temporary files and directories to remove on any exit. */
const temps = new Set<string>();
let beforeExit: () => void = () => {};

/** Remove every registered temporary path, synchronously (also used on the way out of main). */
export function removeTemps(): void {
  for (const p of temps) {
    try {
      fs.rmSync(p, { recursive: true, force: true });
    } catch {
      /* best effort on the way out: the error being reported matters more */
    }
  }
  temps.clear();
}

/** Register a temporary file or directory; returns the function that forgets it (once renamed into place). */
export function trackTemp(p: string): () => void {
  temps.add(p);
  return () => temps.delete(p);
}

export function interrupted(): NodeJS.Signals | undefined {
  return signalled;
}

/** Throw InterruptedError if a signal has arrived (for loops that stop between steps). */
export function throwIfInterrupted(): void {
  if (signalled) throw new InterruptedError(signalled);
}

/**
 * Run fn as a guarded region: a signal does not kill the process while it
 * runs; onSignal is called instead (at once if one came already). Returns
 * fn's result.
 */
export async function guarded<T>(onSignal: (sig: NodeJS.Signals) => void, fn: () => Promise<T>): Promise<T> {
  guards.add(onSignal);
  if (signalled) onSignal(signalled);
  try {
    return await fn();
  } finally {
    guards.delete(onSignal);
  }
}

/** A promise that rejects with InterruptedError when a signal arrives (for racing a long step). */
export function onInterrupt(): { promise: Promise<never>; dispose: () => void } {
  let reject!: (e: Error) => void;
  const promise = new Promise<never>((_, r) => (reject = r));
  promise.catch(() => {});
  const fn = (sig: NodeJS.Signals) => reject(new InterruptedError(sig));
  guards.add(fn);
  if (signalled) fn(signalled);
  return { promise, dispose: () => guards.delete(fn) };
}

function handle(sig: NodeJS.Signals): void {
  // `serve` installs its own handlers and stops in its own way.
  if (process.listenerCount(sig) > 1) return;
  const code = SIGNAL_EXIT[sig] ?? 130;
  if (signalled || guards.size === 0) {
    removeTemps();
    beforeExit();
    process.stderr.write(`vsnap: interrupted by ${sig}${signalled ? ' (second signal: stopped at once)' : ''}\n`);
    process.exit(code);
  }
  signalled = sig;
  for (const g of [...guards]) g(sig);
}

/** Install the handlers (main.ts, once); `clear` tidies the terminal before an immediate exit. */
export function installSignalHandlers(clear: () => void): void {
  beforeExit = clear;
  process.on('SIGINT', () => handle('SIGINT'));
  process.on('SIGTERM', () => handle('SIGTERM'));
}
