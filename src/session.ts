// Opening a volume for a command: manifest -> locked store -> workers, and
// the orderly teardown every command needs, in one place.
import { loadManifest } from './manifest/load.js';
import { Store } from './store/store.js';
import { Cluster } from './coordinator/cluster.js';
import { liveHolder } from './store/lock.js';

/** The control socket of a live `vsnap serve` holding this volume, if any. */
export function servedBy(manifest: string): string | undefined {
  const volume = loadManifest(manifest);
  const holder = liveHolder(volume.storeDir);
  return holder?.socket;
}

export async function withStore<T>(manifest: string, command: string, create: boolean, fn: (store: Store) => Promise<T>): Promise<T> {
  const volume = loadManifest(manifest);
  const store = await Store.open(volume, { command, create });
  try {
    return await fn(store);
  } finally {
    store.release();
  }
}

/** create: make the store when missing (commands that record something); the others leave the disk untouched. */
export async function withCluster<T>(
  manifest: string,
  command: string,
  opts: { force?: boolean; create: boolean },
  fn: (cluster: Cluster) => Promise<T>,
): Promise<T> {
  return withStore(manifest, command, opts.create, async (store) => {
    const cluster = await Cluster.start(store, opts);
    let result: T;
    try {
      result = await fn(cluster);
    } catch (err) {
      // Close cleanly even after a failed operation (a usage error mid-way
      // leaves the workers healthy); a dead worker just stays dead.
      const closed = await cluster.close().then(
        () => true,
        () => (cluster.kill(), false),
      );
      if (closed) await store.markClean();
      throw err;
    }
    await cluster.close();
    await store.markClean();
    return result;
  });
}
