// Opening a volume for a command: manifest -> locked store -> workers, and
// the orderly teardown every command needs, in one place; and for the
// catalogue commands, the choice between running here and asking the server.
import { loadManifest } from './manifest/load.js';
import { Store } from './store/store.js';
import type { Cluster } from './coordinator/cluster.js';
import type { Volume } from './manifest/layout.js';
import { liveHolder } from './store/lock.js';
import { warn } from './ui.js';
import type { Catalogue, Method } from './catalogue/catalogue.js';
import { guarded, onInterrupt, throwIfInterrupted } from './interrupt.js';
import { localCatalogue, LOCAL_OPEN } from './catalogue/local.js';

/** The control socket of a live `vsnap serve` holding this volume, if any. */
export function servedBy(manifest: string | Volume): string | undefined {
  const volume = typeof manifest === 'string' ? loadManifest(manifest) : manifest;
  const holder = liveHolder(volume.storeDir);
  return holder?.socket;
}

/**
 * Open and lock the store for fn. A guarded region (src/interrupt.ts): a
 * Ctrl-C or SIGTERM meanwhile lets fn end (a catalogue change is decided at
 * its commit point), releases the lock and ends the command with
 * InterruptedError (exit 130/143).
 */
export async function withStore<T>(manifest: string | Volume, command: string, create: boolean, fn: (store: Store) => Promise<T>): Promise<T> {
  const volume = typeof manifest === 'string' ? loadManifest(manifest) : manifest;
  return guarded(
    () => {},
    async () => {
      const store = await Store.open(volume, { command, create });
      try {
        const result = await fn(store);
        throwIfInterrupted();
        return result;
      } finally {
        store.release();
      }
    },
  );
}

/** create: make the store when missing (commands that record something); the others leave the disk untouched. */
export async function withCluster<T>(
  manifest: string | Volume,
  command: string,
  opts: { force?: boolean; create: boolean; interruptible?: boolean },
  fn: (cluster: Cluster) => Promise<T>,
): Promise<T> {
  // Loaded here, not at the top: commands that never start workers (list,
  // show, the catalogue without a server) skip parsing the coordinator.
  const { Cluster } = await import('./coordinator/cluster.js');
  return withStore(manifest, command, opts.create, async (store) => {
    // What the coordinator has to say beside the result (a commit whose
    // bookkeeping failed, say) goes to stderr as a warning.
    const cluster = await Cluster.start(store, { force: opts.force, log: warn });
    // interruptible (read, write, restore): a signal abandons fn at once, and
    // the orderly close below freezes the workers' gates, so each write in
    // flight completes (its old block logged first) and no new one starts.
    // The others (export stops between its rounds itself; catalogue changes
    // run to their outcome) finish fn first.
    const stop = opts.interruptible ? onInterrupt() : undefined;
    let result: T;
    try {
      throwIfInterrupted();
      result = await (stop ? Promise.race([fn(cluster), stop.promise]) : fn(cluster));
    } catch (err) {
      // Close cleanly even after a failed operation (a usage error mid-way
      // leaves the workers healthy); a dead worker just stays dead.
      const closed = await cluster.close().then(
        () => true,
        () => (cluster.kill(), false),
      );
      if (closed) await store.markClean();
      throw err;
    } finally {
      stop?.dispose();
    }
    // The operation succeeded. A session that wrote data must also close
    // cleanly (the close syncs it). One that only changed the catalogue
    // (create, delete, prune: decided on disk at their commit points) has
    // done what it reports; a failed close then leaves the state unclean, and
    // the next command recovers as after a crash. Saying "failed" would make
    // a committed snapshot look absent.
    try {
      await cluster.close();
      await store.markClean();
    } catch (err) {
      cluster.kill();
      if (cluster.wroteData) throw err;
      warn(`the ${command} succeeded, but closing the volume failed (${(err as Error).message}); the next command recovers as after a crash`);
    }
    return result;
  });
}

/**
 * The catalogue for one command: the server's when a live `vsnap serve`
 * holds the volume (so a snapshot cuts its NBD writes at one instant), else
 * a local one over the store, with the workers started only when the method
 * needs them. The lock records the method as the command.
 */
export async function withCatalogue<T>(manifest: string, method: Method, fn: (catalogue: Catalogue) => Promise<T>): Promise<T> {
  // Read and checked once for both the server question and the store.
  const volume = loadManifest(manifest);
  const remote = servedBy(volume);
  // Loaded only then: its wire schemas (zod) and node:net cost a local command ~5 ms.
  if (remote) return fn((await import('./catalogue/remote.js')).remoteCatalogue(remote));
  const open = LOCAL_OPEN[method];
  if (!open.workers) return withStore(volume, method, open.createStore, (store) => fn(localCatalogue(store)));
  return withCluster(volume, method, { create: open.createStore }, (cluster) => fn(localCatalogue(cluster.store, cluster)));
}
