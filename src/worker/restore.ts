// Restore of one partition to snapshot S_i (design.md §5), run inside the
// worker that owns it.
//
// S_i's view of every block in L_i ∪ … ∪ L_n is written into the live volume.
//   - i < n: through the engine's normal write path, so a block not yet in
//     L_n is first copied there and S_n (and every snapshot between) still
//     reads as before.
//   - i = n (the newest): every block to write is in L_n, so nothing is
//     copied. Writes are held at the gate for the whole restore, the blocks
//     are written in place and synced, and then L_n is cut to its header
//     (docs/formats.md "The cut"): the live volume now holds S_n's view of
//     those blocks, so the next round of writes copies them again and a
//     restore after it writes only what that round changed. The crash
//     windows are in docs/reliability.md ("Restore").
// Progress counts bytes once they are durable: the written bytes are synced
// every SYNC_EVERY bytes and at the end, then reported.
import { maybeFault } from '../faults.js';
import { CLOG_HEADER_SIZE, type ChangeLog } from '../formats/changelog.js';
import type { ExtentIO, HandleCache } from './extent-io.js';
import type { WriteGate } from '../gate.js';

export interface RestoreOptions {
  /** Say what would be written; write nothing (not even the partition state). */
  dryRun?: boolean;
  /** Bytes restored and durable since the last call. */
  onProgress?: (bytes: number) => void;
}

export interface RestoredPartition {
  partition: string;
  /** Blocks written (or, with dryRun, that would be). */
  blocks: number;
  bytes: number;
  /** The newest snapshot was restored and its change log cut to its header. */
  cut: boolean;
  /** Set when the blocks were restored but cutting the log failed (the restore still holds). */
  cutError?: string;
}

/** What restore needs of a partition engine (partition.ts; an interface so the modules form no cycle). */
interface ViewLogs {
  logs: readonly { id: number; log: ChangeLog }[];
  from: number;
}
export interface RestorableEngine {
  readonly spec: { id: string };
  readonly blockSize: number;
  readonly io: ExtentIO;
  readonly reading: Set<Promise<unknown>>;
  readonly ctx: { gate: WriteGate; handles: HandleCache; mutating(): Promise<void>; recordCut?(partition: string, snapshotId: number, length: number): Promise<void> };
  viewOf(view: number): ViewLogs;
  checkFresh(view: number): void;
  track<T>(p: Promise<T>): Promise<T>;
  readView(v: ViewLogs, off: number, len: number, out: Buffer, outOff: number): Promise<void>;
  write(off: number, data: Buffer, fua: boolean): Promise<void>;
}

/** Bytes written between two syncs (and progress reports) of a restore. */
const SYNC_EVERY = 64 << 20;
/** Runs of contiguous blocks restore as one read and one write of up to this many bytes. */
const MAX_RUN_BYTES = 4 << 20;
const LANES = 4;

export async function restorePartition(engine: RestorableEngine, id: number, o: RestoreOptions): Promise<RestoredPartition> {
  const v = engine.viewOf(id);
  engine.checkFresh(id);
  const newest = v.from === v.logs.length - 1;
  const set = new Set<number>();
  for (let j = v.from; j < v.logs.length; j++) for (const b of v.logs[j].log.blocks()) set.add(b);
  const blocks = [...set].sort((a, b) => a - b);
  const bs = engine.blockSize;
  const result: RestoredPartition = { partition: engine.spec.id, blocks: blocks.length, bytes: blocks.length * bs, cut: false };
  if (o.dryRun || blocks.length === 0) return result;
  const runs = toRuns(blocks, Math.max(1, Math.floor(MAX_RUN_BYTES / bs)));
  const durable = new DurableProgress(() => engine.ctx.handles.sync(), o.onProgress);
  if (!newest) {
    await inLanes(runs, async ([a, z]) => {
      const buf = Buffer.allocUnsafe((z - a) * bs);
      await engine.track(engine.readView(v, a * bs, buf.length, buf, 0));
      await engine.write(a * bs, buf, false);
      await durable.wrote(buf.length);
    });
    await durable.finish();
    return result;
  }
  // The newest: no write may reach a block of L_n between its restore and the cut (it would
  // go in place uncopied, and the cut would lose S_n's view of it), so the gate stays shut.
  await engine.ctx.mutating();
  await engine.ctx.gate.freeze();
  try {
    const log = v.logs[v.logs.length - 1].log;
    await inLanes(runs, async ([a, z]) => {
      const buf = Buffer.allocUnsafe((z - a) * bs);
      await engine.track(engine.readView(v, a * bs, buf.length, buf, 0));
      // The blocks' old content is in L_n already: the in-place write needs no copy.
      maybeFault('write-before-in-place'); // test-only: as in PartitionEngine.write
      await engine.io.write(a * bs, buf);
      await durable.wrote(buf.length);
    });
    await durable.finish();
    maybeFault('restore-before-cut'); // test-only: every restored block durable in place, L_n still full
    try {
      await engine.ctx.recordCut?.(engine.spec.id, id, CLOG_HEADER_SIZE);
    } catch (e) {
      result.cutError = `${(e as Error).message}; its change log keeps the restored blocks (they equal the live ones; the next restore of the snapshot writes them again)`;
    }
    if (!result.cutError) {
      maybeFault('restore-cut-recorded'); // test-only: the state records the header length, L_n still full
      try {
        await log.cut(() => Promise.allSettled([...engine.reading]));
        result.cut = true;
      } catch (e) {
        result.cutError = `${(e as Error).message}; the next open of the volume completes the cut`;
      }
    }
    maybeFault('restore-after-cut'); // test-only: L_n cut to its header and synced, partition state still unclean
  } finally {
    engine.ctx.gate.thaw();
  }
  return result;
}

/** Sorted blocks as [first, end) runs of at most maxRun contiguous blocks. */
function toRuns(blocks: number[], maxRun: number): [number, number][] {
  const runs: [number, number][] = [];
  for (const b of blocks) {
    const r = runs[runs.length - 1];
    if (r && r[1] === b && r[1] - r[0] < maxRun) r[1] = b + 1;
    else runs.push([b, b + 1]);
  }
  return runs;
}

async function inLanes<T>(items: T[], fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  const lane = async () => {
    while (next < items.length) await fn(items[next++]);
  };
  await Promise.all(Array.from({ length: Math.min(LANES, items.length) }, lane));
}

/**
 * Reports written bytes only once a sync that covers them succeeded (a
 * progress bar at 100% then means the data is on disk). The lane whose write
 * crosses SYNC_EVERY waits for that sync; the other lanes go on writing.
 */
class DurableProgress {
  private pending = 0;
  private syncing: Promise<void> | undefined;

  constructor(
    private readonly sync: () => Promise<void>,
    private readonly report?: (bytes: number) => void,
  ) {}

  async wrote(n: number): Promise<void> {
    this.pending += n;
    if (this.pending < SYNC_EVERY || this.syncing) return;
    const covered = this.pending;
    this.pending = 0;
    this.syncing = this.sync().then(() => this.report?.(covered));
    try {
      await this.syncing;
    } finally {
      this.syncing = undefined;
    }
  }

  async finish(): Promise<void> {
    await this.syncing?.catch(() => undefined);
    const covered = this.pending;
    this.pending = 0;
    await this.sync();
    if (covered > 0) this.report?.(covered);
  }
}
