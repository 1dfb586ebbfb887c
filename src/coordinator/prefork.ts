// Workers forked at the very start of a command that will need them (create:
// src/cli/prefork-args.ts decides), before the command's modules load and
// before the store's lock, so that their node start (~100 ms each) overlaps
// the coordinator's own. A worker is generic until its `open` request, so
// the pool (worker-handle.ts `WorkerHandle.spawn`) takes any preforked one
// for any index; the ones nobody took (a server held the volume, the manifest
// was invalid, the lock was held) are killed before the process exits
// (src/main.ts), so none outlives the command.
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { OperationError } from '../errors.js';
import { forkWorker, type WorkerProcess } from '../transport/process.js';
import type { ControlRequestWithId, WorkerMessage } from '../worker/protocol.js';

// The bundled CLI names its bundled worker (scripts/bundle.mjs); else the compiled one.
export const WORKER_MAIN = (globalThis as { vsnapWorkerMain?: string }).vsnapWorkerMain ?? path.join(path.dirname(fileURLToPath(import.meta.url)), '..', 'worker', 'main.js');

export type WorkerLinkProcess = WorkerProcess<ControlRequestWithId, WorkerMessage>;

/** A forked worker and its READY: listened for from the fork on, since nobody else listens yet. */
export interface ForkedWorker {
  proc: WorkerLinkProcess;
  /** Resolves on READY; rejects with how the process ended if it ended first. */
  ready: Promise<void>;
  /** False once the process ended. */
  alive: boolean;
}

const spare: ForkedWorker[] = [];

/** Fork `main` and start listening for its READY at once. */
export function forkListening(main = WORKER_MAIN): ForkedWorker {
  // A partly copied or upgraded install would otherwise show node's stack
  // trace from the child and "worker 0 exited with code 1".
  if (!fs.existsSync(main)) throw new OperationError(`${main}: the worker program is missing (an incomplete build or install): run \`npm run build\`, or reinstall vsnap`);
  const proc = forkWorker<ControlRequestWithId, WorkerMessage>(main);
  const w = { proc, alive: true } as ForkedWorker;
  w.ready = new Promise<void>((resolve, reject) => {
    proc.link.onMessage((m) => {
      if (m.t === 'ready') resolve();
    });
    void proc.ended.then((how) => {
      w.alive = false;
      reject(new Error(`exited ${how} before READY`));
    });
  });
  // Nobody may be waiting yet (a worker that dies unused is just not taken).
  w.ready.catch(() => {});
  return w;
}

/** Fork n workers now, for the pool to take later. */
export function prefork(n: number): void {
  if (!fs.existsSync(WORKER_MAIN)) return; // the pool's own fork reports it
  for (let i = 0; i < n; i++) spare.push(forkListening());
}

/** A preforked worker still alive, if any is left. */
export function takePreforked(): ForkedWorker | undefined {
  for (let w = spare.shift(); w; w = spare.shift()) if (w.alive) return w;
  return undefined;
}

/** How a worker ends when a signal sent to the whole process group (Ctrl-C, timeout, systemctl stop) reached it before its handlers existed. */
const GROUP_SIGNAL = /^on signal SIG(INT|TERM)$/;
/** Replacements for workers so killed, per worker started (a signal that keeps coming is a reason to fail). */
const MAX_REPLACED = 3;

/**
 * A worker that said READY: a preforked one while any is left, else a new
 * fork. The workers ignore SIGINT and SIGTERM (the coordinator closes them
 * in order), but a signal to the process group in a worker's first
 * milliseconds, while node itself is starting, kills it before any handler
 * exists (docs/reliability.md, former known gap E2: exit 1 instead of 130).
 * Such a worker never opened anything, so another is started in its place
 * and the command goes on to its orderly stop. Any other death is the
 * caller's to report (its handle says how the process ended).
 */
export async function readyWorker(main = WORKER_MAIN): Promise<ForkedWorker> {
  for (let replaced = 0; ; replaced++) {
    const w = takePreforked() ?? forkListening(main);
    const died = await w.ready.then(
      () => undefined,
      () => w.proc.ended,
    );
    if (died === undefined || !GROUP_SIGNAL.test(died) || replaced >= MAX_REPLACED) return w;
  }
}

/** Kill the preforked workers nobody took, and wait until they are gone. */
export async function discardPreforked(): Promise<void> {
  const left = spare.splice(0);
  for (const w of left) w.proc.kill();
  await Promise.all(left.map((w) => w.proc.ended));
}
