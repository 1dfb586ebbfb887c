// Worker process entry point: owns the partitions pinned to one worker index.
// Control requests and data frames arrive on the link to the coordinator
// (src/transport/: IPC plus fd 4 when forked, stdin/stdout with --stdio).
// Only this process opens its partitions' extents and change logs.
import path from 'node:path';
import { IntegrityError, serializeError } from '../errors.js';
import { ChangeLog } from '../formats/changelog.js';
import {
  DataOp,
  FLAG_FUA,
  FLAG_NO_HOLE,
  FLAG_FAST,
  decodeRequestParts,
  encodeExtents,
  encodeReply,
  type ControlKind,
  type ControlReplies,
  type ControlRequests,
  type ControlRequestWithId,
  type OpenRequest,
  type WorkerMessage,
  type ExportTarget,
} from './protocol.js';
import { PartitionEngine } from './partition.js';
import { changedRuns } from './changed-range.js';
import { zeroRange, trimRange } from './zeroing.js';
import { allocation } from './allocation.js';
import { verifyPartitions } from './verify.js';
import { WorkerClones } from './clone-overlay.js';
import { cloneIo } from './clone-io.js';
import { HandleCache } from './extent-io.js';
import { WriteGate } from '../gate.js';
import { readState, writeState, recordCut, type PartitionState } from '../store/partition-state.js';
import { changeLogFile, snapshotDir } from '../store/layout.js';
import { leftBehind } from '../io/own-writes.js';
import { parentLink } from '../transport/process.js';
import { joinChunks } from '../transport/chunks.js';
import { restorePartitions } from './restore.js';
import { exportPieces } from './export.js';

const link = parentLink<WorkerMessage, ControlRequestWithId>();

/**
 * Open one change log; a log that is gone (removed behind vsnap) is an
 * integrity problem that names the file and the way out, not a raw ENOENT.
 */
async function openLog(file: string, id: number, partition: string, o: Parameters<typeof ChangeLog.open>[1]): Promise<ChangeLog> {
  try {
    return await ChangeLog.open(file, o);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    throw new IntegrityError(
      `${file}: the change log of snapshot ${id} for partition ${partition} is missing (removed behind vsnap); no snapshot of that partition up to ${id} can be read right, and writes cannot be copied safely. To go on without snapshot ${id}, move its directory ${path.dirname(file)} out of the store: vsnap then reports the older snapshots as broken, and you can delete them`,
    );
  }
}

/** Partitions prepared at once during a snapshot's freeze. */
const PREPARE_LANES = 32;

/** To the coordinator; if it is gone (killed), the close handler ends this worker. */
const send = (m: WorkerMessage): Promise<void> => link.send(m).catch(() => undefined);

/** One handler per control request kind, each returning exactly that kind's reply. */
type Handlers = { [K in ControlKind]: (req: ControlRequests[K] & { reqId: number }) => Promise<ControlReplies[K]> };

class Worker {
  engines = new Map<number, PartitionEngine>();
  gate = new WriteGate();
  handles!: HandleCache;
  open!: OpenRequest;
  states = new Map<string, PartitionState>();
  clones!: WorkerClones;
  private dirty: Promise<void> | undefined;
  /** Partitions whose last worker crashed: its writes to their files are unaccounted for. */
  private tookOver = new Set<string>();

  async start(o: OpenRequest): Promise<void> {
    this.open = o;
    this.handles = new HandleCache(true);
    const ctx = {
      storeDir: o.storeDir,
      fingerprint: o.fingerprint,
      blockSize: o.blockSize,
      worker: o.worker,
      gate: this.gate,
      handles: this.handles,
      force: o.force,
      mutating: () => this.markUnclean(),
      recordCut: async (partition: string, snapshotId: number, length: number) => {
        await this.markUnclean();
        await recordCut(o.storeDir, partition, this.states.get(partition)!, snapshotId, length);
      },
    };
    this.clones = new WorkerClones(o, () => this.engines.values(), (i) => this.engine(i));
    for (const c of o.clones ?? []) this.clones.add(c);
    const unsynced: string[] = [];
    const unsyncedLogs: string[] = [];
    for (const spec of o.partitions) {
      const engine = new PartitionEngine(spec, ctx);
      const prev = await readState(o.storeDir, spec.id);
      const clean = prev ? prev.clean : true;
      if (!clean) unsynced.push(...spec.extents.map((e) => e.path));
      if (!clean) this.tookOver.add(spec.id);
      const state: PartitionState = prev ?? { clean: true, pid: process.pid, updatedAt: new Date().toISOString(), logs: {} };
      for (const st of o.stale) if (st.partition === spec.id) for (const id of st.snapshots) engine.stale.set(id, st.reason);
      const logs: { id: number; log: ChangeLog }[] = [];
      for (const id of o.snapshots) {
        const file = changeLogFile(snapshotDir(o.storeDir, id), spec.id);
        if (!clean) unsyncedLogs.push(file);
        const log = await openLog(file, id, spec.id, {
          expect: { snapshotId: id, partitionId: spec.id, blockSize: o.blockSize, fingerprint: o.fingerprint },
          blockCount: spec.length / o.blockSize,
          cleanClose: clean,
          expectedLength: clean ? state.logs[String(id)] : undefined,
          dropTail: state.dropTail?.includes(String(id)),
          // The newest log's torn tail is told from damage by the block's live copy (formats.md "Recovery rules on open").
          liveBlock: id === o.snapshots[o.snapshots.length - 1] ? (b, out) => engine.io.read(b * o.blockSize, o.blockSize, out, 0) : undefined,
        });
        logs.push({ id, log });
      }
      engine.logs = logs;
      this.states.set(spec.id, state);
      this.engines.set(spec.index, engine);
      // Open (and QEMU-lock) the backing files now, not at the first I/O: the lock is what keeps qemu-io out.
      for (const x of spec.extents) this.handles.get(x.path);
    }
    // Unclean: a predecessor (a killed worker the server restarts, a crashed
    // run) may have acknowledged writes and log records nothing synced since.
    // Make them durable before this worker serves, so no later FLUSH succeeds
    // over them; if that fails, the open fails (docs/reliability.md).
    await this.handles.syncNow(unsynced, unsyncedLogs);
  }

  /** Before the first change: record that this worker is writing, durably. */
  markUnclean(): Promise<void> {
    if (!this.dirty) {
      this.dirty = (async () => {
        for (const [id, s] of this.states) {
          s.clean = false;
          s.pid = process.pid;
          s.updatedAt = new Date().toISOString();
          await writeState(this.open.storeDir, id, s);
        }
      })();
    }
    return this.dirty;
  }

  engine(index: number): PartitionEngine {
    const e = this.engines.get(index);
    if (!e) throw new Error(`partition ${index} is not owned by worker ${this.open.worker}`);
    return e;
  }

  readonly handlers: Handlers = {
    open: async (req) => {
      await this.start(req);
      return { pid: process.pid };
    },
    freeze: async () => {
      await this.gate.freeze();
      await this.handles.sync();
      return null;
    },
    prepare: async (req) => {
      // Writes wait while this runs, so the partitions prepare side by side:
      // each costs two file creations and two syncs, and one after another
      // they made a 1,000-partition freeze last seconds. The syncs of files
      // in one directory share journal commits when they overlap.
      const engines = [...this.engines.values()];
      const out = new Array<Awaited<ReturnType<PartitionEngine['prepare']>>>(engines.length);
      let next = 0;
      const lane = async () => {
        while (next < engines.length) {
          const k = next++;
          out[k] = await engines[k].prepare(req.snapshotId, req.tmpDir, req.createdAt);
        }
      };
      await Promise.all(Array.from({ length: Math.min(PREPARE_LANES, engines.length) }, lane));
      return out;
    },
    confirm: async (req) => {
      for (const e of this.engines.values()) e.confirmPrepared(req.snapshotId);
      return null;
    },
    thaw: async (req) => {
      // The coordinator sends THAW only once the outcome is durable on disk;
      // it names the committed directory, so nothing is remembered from PREPARE.
      try {
        for (const e of this.engines.values()) await e.finishPrepare(req.outcome);
      } finally {
        this.gate.thaw();
      }
      return null;
    },
    delete: async (req) => {
      let moved = 0;
      for (const e of this.engines.values()) if (e.logs.some((l) => l.id === req.snapshotId)) moved += await e.deleteSnapshot(req.snapshotId);
      return { moved };
    },
    restore: (req) => {
      const run = async () => {
        const progress = throttledProgress(req.reqId);
        const chosen = [...this.engines.values()].filter((e) => req.partitions.includes(e.spec.index));
        const partitions = await restorePartitions(chosen, req.snapshotId, { dryRun: req.dryRun, check: req.check, onProgress: progress.add });
        progress.flush();
        return { restoredBytes: partitions.reduce((a, p) => a + p.bytes, 0), partitions };
      };
      // A restore of the newest snapshot cuts its logs, so CLOSE must wait for
      // it (the lengths it records would be wrong); it holds the gate itself and
      // never waits at it. An older one writes through the gate: a CLOSE after
      // an interrupt froze the gate must not wait for writes that never start.
      const newest = [...this.engines.values()].some((e) => e.logs.length > 0 && e.logs[e.logs.length - 1].id === req.snapshotId);
      return newest ? this.finishing(run) : run();
    },
    changed: async (req) => {
      const out: ControlReplies['changed'] = { partitions: [] };
      for (const e of this.engines.values()) out.partitions.push({ index: e.spec.index, blocks: await e.changedBlocks(req.from, req.to, req.exact) });
      return out;
    },
    changedRange: async (req) => changedRuns(this.engine(req.partition), req),
    export: async (req) => {
      const progress = throttledProgress(req.reqId);
      const r = await exportPieces((i) => this.engine(i), req.targets, { view: req.view, sparse: req.sparse, sync: req.sync, onBytes: progress.add });
      progress.flush();
      return r;
    },
    status: async () => ({
      pid: process.pid,
      rss: process.memoryUsage().rss,
      maxRss: process.resourceUsage().maxRSS * 1024,
      partitions: [...this.engines.values()].map((e) => ({
        id: e.spec.id,
        clean: this.states.get(e.spec.id)?.clean ?? true,
        recovered: this.tookOver.has(e.spec.id),
        loggedBlocks: e.logs.reduce((a, l) => a + l.log.count, 0),
      })),
    }),
    verify: async (req) => {
      const progress = throttledProgress(req.reqId);
      const r = await verifyPartitions(req, progress.add);
      progress.flush();
      return r;
    },
    cloneOpen: async (req) => (this.clones.add(req.clone), null),
    cloneReset: async (req) => (await this.clones.reset(req.handle), null),
    cloneCheck: async (req) => (await this.clones.check(req.handle), null),
    cloneClose: async (req) => (await this.clones.close(req.handle, false), null),
    close: async () => {
      await this.close();
      return null;
    },
  };

  control<K extends ControlKind>(req: ControlRequests[K] & { reqId: number }): Promise<ControlReplies[K]> {
    const handler = this.handlers[req.t as K] as ((r: typeof req) => Promise<ControlReplies[K]>) | undefined;
    if (!handler) return Promise.reject(new Error(`unknown control request ${JSON.stringify(req.t)}`));
    return handler(req);
  }

  /**
   * Work that a CLOSE must let end first: a restore's cut changes a log's
   * length, and the lengths close records must be the ones on disk (a close
   * comes mid-restore when another worker of the command died).
   */
  private readonly unfinished = new Set<Promise<unknown>>();
  private finishing<T>(fn: () => Promise<T>): Promise<T> {
    const p = fn();
    this.unfinished.add(p);
    const done = () => this.unfinished.delete(p);
    p.then(done, done);
    return p;
  }

  async close(): Promise<void> {
    if (!this.open) return; // a verify-only worker opened nothing
    await Promise.allSettled([...this.unfinished]);
    await this.gate.freeze();
    await this.handles.sync();
    await this.clones.closeAll();
    for (const e of this.engines.values()) {
      const s = this.states.get(e.spec.id)!;
      const logs: Record<string, number> = {};
      for (const l of e.logs) logs[String(l.id)] = l.log.byteLength;
      await e.closeLogs();
      const dropTail = e.logs.filter((l) => l.log.tailPending).map((l) => String(l.id));
      if (!this.dirty && s.clean) continue;
      const backing = leftBehind(e.spec.extents.map((x) => x.path), this.tookOver.has(e.spec.id));
      await writeState(this.open.storeDir, e.spec.id, { clean: true, pid: process.pid, updatedAt: new Date().toISOString(), logs, backing, ...(dropTail.length ? { dropTail } : {}) });
    }
    await this.handles.closeAll();
  }
}

/** Progress of a long request, sent at most every 100 ms. */
function throttledProgress(reqId: number): { add: (n: number) => void; flush: () => void } {
  let pending = 0;
  let last = 0;
  const flush = () => {
    if (pending > 0) void send({ t: 'progress', reqId, bytes: pending });
    pending = 0;
    last = Date.now();
  };
  return {
    add: (n: number) => {
      pending += n;
      if (Date.now() - last >= 100) flush();
    },
    flush,
  };
}

const worker = new Worker();

link.onMessage((req) => {
  worker.control(req).then(
    (value) => send({ t: 'reply', reqId: req.reqId, ok: true, value }),
    (err) => send({ t: 'reply', reqId: req.reqId, ok: false, error: serializeError(err) }),
  );
});

link.onFrame((frame) => {
  const r = decodeRequestParts(frame);
  // Socket reads hand out fresh buffers, so the payload (one view or a chunk list) is
  // kept without a copy: a live write reaches the file as one positional write(v) of it.
  const data = r.payload ?? r.payloadParts ?? [];
  let work: Promise<Buffer | undefined>;
  try {
    const e = worker.engine(r.partition);
    if (r.clone) work = cloneIo(worker.clones, r, r.payload ?? (r.payloadParts ? joinChunks(r.payloadParts) : undefined));
    else switch (r.op) {
      case DataOp.Read:
        work = e.read(r.view, r.offset, r.length);
        break;
      case DataOp.Write:
        work = e.write(r.offset, data, (r.flags & FLAG_FUA) !== 0).then(() => undefined);
        break;
      case DataOp.Zero:
        work = zeroRange(e, worker.handles, r.offset, r.length, (r.flags & FLAG_FUA) !== 0, { noHole: (r.flags & FLAG_NO_HOLE) !== 0, fast: (r.flags & FLAG_FAST) !== 0 }).then(() => undefined);
        break;
      case DataOp.Trim:
        work = trimRange(e, worker.handles, r.offset, r.length, (r.flags & FLAG_FUA) !== 0).then(() => undefined);
        break;
      case DataOp.BlockStatus:
        work = Promise.resolve(encodeExtents(allocation(e, worker.handles, r.view, r.offset, r.length)));
        break;
      case DataOp.Flush:
        work = worker.handles.sync().then(() => undefined);
        break;
      default:
        throw new Error(`unknown data op ${r.op}`);
    }
  } catch (err) {
    work = Promise.reject(err);
  }
  work.then(
    (buf) => link.sendFrame(encodeReply(r.reqId, true, buf)),
    (err) => link.sendFrame(encodeReply(r.reqId, false, Buffer.from(JSON.stringify(serializeError(err))))),
  );
});

// The coordinator is gone (killed, or it ended the link): nobody is left to serve.
link.onClose(() => process.exit(0));
// Ctrl-C reaches the whole process group; the coordinator decides how the
// workers stop (an orderly close), so a worker ignores the signal itself.
process.on('SIGINT', () => {});
// The same for SIGTERM (systemctl stop and timeout signal the whole group).
process.on('SIGTERM', () => {});

void send({ t: 'ready', pid: process.pid });
