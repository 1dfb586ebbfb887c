// Restore of the newest snapshot S_n on the chosen partitions of one worker
// (design.md §5, docs/formats.md "The cut", crash windows in
// docs/reliability.md "Restore of the newest snapshot").
//
// Every block to write is in L_n, and S_n's view of it is its record there:
// nothing is copied into a log. So the records are read in log order, many
// per read (readCheckedSlots: one pread of up to READ_BYTES, each record
// crc-checked), and written back in place as runs of contiguous blocks, one
// positional writev per run, straight from the read buffer.
//
// The partitions go through the steps of the cut together, with the
// worker's writes held at the gate from the first in-place write to the end:
//   1. every partition's records written in place;
//   2. the backing files fdatasynced, once each (they are shared between
//      partitions: one sync per file, not one per partition per file);
//   3. each partition state records its cut (logs[n] = 4096, unclean);
//   4. each L_n cut to its header (truncate, fdatasync).
// A step starts only once the one before it ended on every partition, so a
// crash leaves each partition at the step the crash interrupted or the one
// before it, the same windows as one partition at a time had: a re-run
// restores the blocks again and cuts, and no snapshot loses data.
import { maybeFault } from '../faults.js';
import { CLOG_HEADER_SIZE, readCheckedSlots, type ChangeLog } from '../formats/changelog.js';
import { DurableProgress } from './restore-progress.js';
import type { RestorableEngine, RestoredPartition, RestoreOptions } from './restore-types.js';

/** Bytes of records per read. */
const READ_BYTES = 4 << 20;
/** Reads in flight per partition (each with its own buffer, reused). */
const LANES = 2;

function planNewest(e: RestorableEngine, id: number): { e: RestorableEngine; log: ChangeLog; result: RestoredPartition } {
  const v = e.viewOf(id);
  e.checkFresh(id);
  const log = v.logs[v.logs.length - 1].log;
  return { e, log, result: { partition: e.spec.id, blocks: log.count, bytes: log.count * e.blockSize, cut: false } };
}

/**
 * The restore request's `check` for the newest snapshot: every record of each
 * L_n read in log order and crc-checked, as writeBack will read it, and
 * nothing written. Sequential reads of up to READ_BYTES, not a lookup per block.
 */
export async function checkNewest(engines: RestorableEngine[], id: number, o: RestoreOptions): Promise<RestoredPartition[]> {
  const plans = engines.map((e) => planNewest(e, id));
  if (!o.dryRun) {
    await settleAll(plans.map(({ e, log }) => inLogOrder(log, async (first, n, buf) => void (await e.track(readCheckedSlots(log, first, n, buf))))));
  }
  return plans.map((p) => p.result);
}

export async function restoreNewest(engines: RestorableEngine[], id: number, o: RestoreOptions): Promise<RestoredPartition[]> {
  const plans = engines.map((e) => planNewest(e, id));
  const results = plans.map((p) => p.result);
  const work = plans.filter((p) => p.log.count > 0);
  if (o.dryRun || work.length === 0) return results;
  const ctxs = [...new Set(work.map((p) => p.e.ctx))];
  for (const c of ctxs) await c.mutating();
  // No write may reach a block of L_n between its restore and the cut (it would
  // go in place uncopied, and the cut would lose S_n's view of it), so the gate stays shut.
  for (const c of ctxs) await c.gate.freeze();
  try {
    const durable = new DurableProgress(async () => void (await Promise.all(ctxs.map((c) => c.handles.sync()))), o.onProgress);
    await settleAll(work.map((p) => writeBack(p.e, p.log, durable)));
    await durable.finish();
    maybeFault('restore-before-cut'); // test-only: every restored block durable in place, every L_n still full
    await Promise.all(
      work.map(async ({ e, result }) => {
        try {
          await e.ctx.recordCut?.(e.spec.id, id, CLOG_HEADER_SIZE);
        } catch (err) {
          result.cutError = `${(err as Error).message}; its change log keeps the restored blocks (they equal the live ones; the next restore of the snapshot writes them again)`;
        }
      }),
    );
    const cutting = work.filter((p) => !p.result.cutError);
    if (cutting.length > 0) maybeFault('restore-cut-recorded'); // test-only: the states record the header length, every L_n still full
    await Promise.all(
      cutting.map(async ({ e, log, result }) => {
        try {
          await log.cut(() => Promise.allSettled([...e.reading]));
          result.cut = true;
        } catch (err) {
          result.cutError = `${(err as Error).message}; the next open of the volume completes the cut`;
        }
      }),
    );
    maybeFault('restore-after-cut'); // test-only: the L_n cut to their header and synced, partition states still unclean
  } finally {
    for (const c of ctxs) c.gate.thaw();
  }
  return results;
}

/** Step 1 for one partition: every record of `log` written in place, in log order. */
async function writeBack(e: RestorableEngine, log: ChangeLog, durable: DurableProgress): Promise<void> {
  await inLogOrder(log, async (first, n, buf) => {
    await e.track(writeSlots(e, log, first, n, buf));
    await durable.wrote(n * e.blockSize);
  });
}

/** Every record of `log` handed to `each` in slices of up to READ_BYTES, in log order, LANES slices at a time. */
async function inLogOrder(log: ChangeLog, each: (first: number, n: number, buf: Buffer) => Promise<void>): Promise<void> {
  const perRead = Math.max(1, Math.floor(READ_BYTES / log.recordSize));
  const count = log.count;
  let next = 0;
  const lane = async () => {
    // Reused: `each` is done with the buffer before the lane reads again.
    const buf = Buffer.allocUnsafe(perRead * log.recordSize);
    while (next < count) {
      const first = next;
      const n = Math.min(perRead, count - first);
      next += n;
      await each(first, n, buf);
    }
  };
  await settleAll(Array.from({ length: Math.min(LANES, Math.ceil(count / perRead)) }, lane));
}

async function writeSlots(e: RestorableEngine, log: ChangeLog, first: number, n: number, buf: Buffer): Promise<void> {
  const bs = e.blockSize;
  const { blocks, data } = await readCheckedSlots(log, first, n, buf);
  const writes: Promise<unknown>[] = [];
  for (let i = 0; i < n; ) {
    let j = i + 1;
    while (j < n && blocks[j] === blocks[j - 1] + 1) j++;
    // The blocks' old content is in L_n already: the in-place write needs no copy.
    maybeFault('write-before-in-place'); // test-only: as in PartitionEngine.write
    writes.push(e.io.writeChunks(blocks[i] * bs, data.slice(i, j), (j - i) * bs));
    i = j;
  }
  await settleAll(writes);
}

/** Wait for every promise, then fail with the first failure: nothing is left running behind an error. */
async function settleAll(ps: Promise<unknown>[]): Promise<void> {
  const rs = await Promise.allSettled(ps);
  const bad = rs.find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (bad) throw bad.reason;
}
