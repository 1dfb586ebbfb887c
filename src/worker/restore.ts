// Restore of partitions to snapshot S_i (design.md §5), run inside the
// worker that owns them.
//
// S_i's view of every block in L_i ∪ … ∪ L_n is written into the live volume.
//   - i < n: through the engine's normal write path, so a block not yet in
//     L_n is first copied there and S_n (and every snapshot between) still
//     reads as before; one partition after the other.
//   - i = n (the newest): every block to write is in L_n, so nothing is
//     copied; restore-newest.ts writes the records back in place and then
//     cuts L_n to its header, all partitions of the worker together.
// Progress counts bytes once they are durable (restore-progress.ts).
import { DurableProgress } from './restore-progress.js';
import { checkNewest, restoreNewest } from './restore-newest.js';
import type { RestorableEngine, RestoredPartition, RestoreOptions } from './restore-types.js';

export type { RestorableEngine, RestoredPartition, RestoreOptions } from './restore-types.js';

/** Restore S_id on these partitions (dryRun: only say what would be written), answered in their order. */
export async function restorePartitions(engines: RestorableEngine[], id: number, o: RestoreOptions): Promise<RestoredPartition[]> {
  const isNewest = (e: RestorableEngine) => {
    const v = e.viewOf(id);
    return v.from === v.logs.length - 1;
  };
  const newest = engines.filter(isNewest);
  const done = new Map<RestorableEngine, RestoredPartition>();
  // check: the newest's records in log order (as the restore reads them), an
  // older snapshot's view block by block (the same reads as its restore).
  const cut = await (o.check ? checkNewest : restoreNewest)(newest, id, o);
  newest.forEach((e, i) => done.set(e, cut[i]));
  for (const e of engines) if (!done.has(e)) done.set(e, await restorePartition(e, id, o));
  return engines.map((e) => done.get(e)!);
}

/** Runs of contiguous blocks restore as one read and one write of up to this many bytes. */
const MAX_RUN_BYTES = 4 << 20;
const LANES = 4;

/** Restore an older snapshot S_id (i < n) on one partition, through the engine's copy-on-write path. */
async function restorePartition(engine: RestorableEngine, id: number, o: RestoreOptions): Promise<RestoredPartition> {
  const v = engine.viewOf(id);
  engine.checkFresh(id);
  const set = new Set<number>();
  for (let j = v.from; j < v.logs.length; j++) for (const b of v.logs[j].log.blocks()) set.add(b);
  const blocks = [...set].sort((a, b) => a - b);
  const bs = engine.blockSize;
  const result: RestoredPartition = { partition: engine.spec.id, blocks: blocks.length, bytes: blocks.length * bs, cut: false };
  if (o.dryRun || blocks.length === 0) return result;
  const runs = toRuns(blocks, Math.max(1, Math.floor(MAX_RUN_BYTES / bs)));
  if (o.check) {
    // S_id's view of each block, read as the restore will read it: a record
    // whose crc fails throws here, before any worker wrote anything.
    await inLanes(runs, async ([a, z]) => {
      const buf = Buffer.allocUnsafe((z - a) * bs);
      await engine.track(engine.readView(v, a * bs, buf.length, buf, 0));
    });
    return result;
  }
  const durable = new DurableProgress(() => engine.ctx.handles.sync(), o.onProgress);
  await inLanes(runs, async ([a, z]) => {
    const buf = Buffer.allocUnsafe((z - a) * bs);
    await engine.track(engine.readView(v, a * bs, buf.length, buf, 0));
    await engine.write(a * bs, buf, false);
    await durable.wrote(buf.length);
  });
  await durable.finish();
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
