// vsnap serve: the live volume and every snapshot as NBD exports, the
// catalogue commands through a control socket, periodic snapshots, and a
// captive --run mode for CI scripts.
import fs from 'node:fs';
import os from 'node:os';
import { loadManifest } from '../manifest/load.js';
import { Store } from '../store/store.js';
import { Cluster } from '../coordinator/cluster.js';
import { createNbdServer } from '../nbd/index.js';
import { VolumeExports } from './exports.js';
import { hostCatalogue, type ControlHost } from './control.js';
import { planListen, controlSocketPath, exportUri } from './listen.js';
import { localCatalogue } from '../catalogue/local.js';
import { wrapCatalogue } from '../catalogue/catalogue.js';
import type { KeepRules } from '../prune/plan.js';
import { UsageError } from '../errors.js';
import { servedBy } from '../session.js';
import { runCommand, runOnServedClone, throwawayCloneName, type RunningCommand } from './run-command.js';

export interface ServeOptions {
  socket?: string;
  listen?: string;
  allowRemote?: boolean;
  everyMs?: number;
  keep: KeepRules;
  /** --every's prune considers manual snapshots too (prune --include-manual). */
  includeManual?: boolean;
  run?: string;
  /** With run: CMD gets a throwaway clone of this snapshot as $uri, deleted afterwards. */
  clone?: string;
  log: (msg: string) => void;
  /** Told the URI once listening (the CLI prints it on stdout). */
  onReady?: (uri: string) => void;
}

/** Serve until SIGINT/SIGTERM (exit 0) or until --run's command ends (its status). */
export async function serve(manifest: string, o: ServeOptions): Promise<number> {
  if (o.clone !== undefined && o.run === undefined) throw new UsageError('--clone: only with --run (CMD gets a throwaway clone of the snapshot)');
  if (o.clone !== undefined && o.run !== undefined) {
    // Another server holds the volume: CMD runs on a clone it serves.
    const control = servedBy(manifest);
    if (control) return runOnServedClone(control, o.run, o.clone, o.log);
  }
  const volume = loadManifest(manifest);
  const where = planListen(o, volume.storeDir);
  const control = controlSocketPath(volume.storeDir);
  const store = await Store.open(volume, { command: 'serve', create: true, socket: control });
  let cluster: Cluster | undefined;
  let nbd: ReturnType<typeof createNbdServer> | undefined;
  let ctl: ControlHost | undefined;
  let timer: NodeJS.Timeout | undefined;
  let dropClone: (() => Promise<unknown>) | undefined;
  try {
    cluster = await Cluster.start(store, { restartWorkers: true, log: o.log });
    const c = cluster;
    // Catalogue changes run one at a time, in arrival order.
    let queue: Promise<unknown> = Promise.resolve();
    const serial = <T>(fn: () => Promise<T>): Promise<T> => {
      const p = queue.then(fn, fn);
      queue = p.catch(() => {});
      return p;
    };
    const local = localCatalogue(store, c, { exportUri: (name) => exportUri(where, name) });
    const catalogue = wrapCatalogue(local, (_method, fn) => serial(fn));
    nbd = createNbdServer(new VolumeExports(c), { log: o.log });
    await nbd.listen(where.kind === 'unix' ? { socketPath: where.socketPath } : { host: where.host, port: where.port });
    ctl = await hostCatalogue(control, catalogue);
    if (o.everyMs) {
      timer = setInterval(() => {
        // Create and prune as one step of the queue: a `list` never sees the
        // snapshot count between the two.
        void serial(async () => {
          const s = await local.create({});
          o.log(`periodic snapshot ${s.id} taken`);
          // Prune even without keep flags: expired snapshots (--expires) go.
          // Manual snapshots (--name) are left alone unless --include-manual; held ones always.
          await local.prune({ rules: o.keep, dryRun: false, includeManual: o.includeManual === true });
        }).catch((err: Error) => o.log(`periodic snapshot failed: ${err.message}`));
      }, o.everyMs);
    }
    let failure: Error | undefined;
    const code = await new Promise<number>((resolve) => {
      // Listeners stay for the whole shutdown: a second signal (or a library's
      // signal hook finding no other listener) must not kill the server half
      // way through closing its workers.
      let stopping = false;
      // --run: a signal goes on to CMD, and serve ends when CMD does, with
      // CMD's status, or 128 + the signal's number if CMD exits 0 all the
      // same: a cancelled CI job must not look like a passed one.
      let running: RunningCommand | undefined;
      let signalled: NodeJS.Signals | undefined;
      const interrupted = () => 128 + (os.constants.signals[signalled!] ?? 0);
      const stop = (sig: NodeJS.Signals) => {
        if (running) {
          o.log(`${sig}: passed on to the --run command`);
          signalled ??= sig;
          running.signal(sig);
          return;
        }
        if (stopping) return o.log(`${sig}: already shutting down`);
        stopping = true;
        signalled = sig;
        o.log(`${sig}: shutting down`);
        resolve(o.run ? interrupted() : 0);
      };
      process.on('SIGINT', () => stop('SIGINT'));
      process.on('SIGTERM', () => stop('SIGTERM'));
      // Announced only now: a script that signals the server as soon as it
      // reads the URI must find the handlers in place.
      o.log(`serving ${volume.name} at ${where.uri} (control socket ${control})`);
      o.onReady?.(where.uri);
      if (o.run) {
        const cmd = o.run;
        const vars: Record<string, string> = { uri: where.uri, control };
        if (where.kind === 'unix') vars.socket = where.socketPath;
        void (async () => {
          if (o.clone !== undefined) {
            const name = throwawayCloneName();
            const creating = catalogue.cloneCreate({ snap: o.clone, name });
            // Set before it resolves: a signal meanwhile still deletes it (catalogue calls run in order).
            dropClone = () => creating.then(() => catalogue.cloneDelete({ names: [name] }), () => undefined);
            const made = await creating;
            if (stopping) return; // a signal came first: no CMD
            vars.uri = exportUri(where, `clone/${name}`);
            o.log(`running on clone ${name} of snapshot ${made.snapshot.id} "${made.snapshot.name}" at ${vars.uri}`);
          }
          if (stopping) return;
          running = runCommand(cmd, vars, o.log);
          const status = await running.exited;
          resolve(signalled && status === 0 ? interrupted() : status);
        })().catch((err: Error) => {
          failure = err;
          resolve(1);
        });
      }
    });
    if (failure) throw failure;
    return code;
  } finally {
    if (timer) clearInterval(timer);
    // Requests already read are answered before the workers stop.
    await nbd?.close().catch((err: Error) => o.log(`closing NBD: ${err.message}`));
    await ctl?.close();
    // The throwaway clone of --run --clone goes, whatever CMD did.
    await dropClone?.().catch((err: Error) => o.log(`cannot delete the --run clone: ${err.message}`));
    fs.rmSync(control, { force: true });
    try {
      if (cluster) {
        await cluster.close();
        // A sync failed this session: acknowledged writes may be lost even if a
        // restarted worker's close synced fine. The stop fails and the state
        // stays unclean, so the next open syncs the files again.
        if (cluster.syncFailure) throw cluster.syncFailure;
        await store.markClean();
      }
    } finally {
      store.release();
    }
  }
}
