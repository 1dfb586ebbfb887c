// WRITE_ZEROES and TRIM on one partition (docs/decisions.md, "Zeroing and
// trimming"), in the worker that owns it.
//
// Zero: every snapshot's view is kept the way a write keeps it: each block of
// the range not yet in the newest log L_n has its old content appended to L_n,
// durably, before anything changes in place — except blocks that lie wholly in
// a hole of the backing file: they read as zeroes and stay zeroes, so nothing
// a snapshot reads changes. Then the live range is made zero without writing
// data: a hole punched (fallocate PUNCH_HOLE|KEEP_SIZE), or with NO_HOLE the
// range zeroed in place keeping its blocks (ZERO_RANGE); the kernel zeroes the
// unaligned edges of a file-system block itself. Where the file system can do
// neither, zeroes are written. FAST_ZERO is answered ENOTSUP, before anything
// changes, unless no block needs a copy and the file system can do it.
//
// Trim (advisory, NBD spec): punches a hole over the whole blocks of the range
// that need no copy (no snapshot, already in L_n, or not a hole yet); every
// other block is left as it is. A trim therefore never grows a change log.
import { OperationError } from '../errors.js';
import { maybeFault } from '../faults.js';
import { noteOwnWrite } from '../io/backing-guard.js';
import { deallocate, type DeallocateMode } from '../io/sparse.js';
import { blockSpan, mapPartitionRange } from '../volume-map.js';
import { holeBlocks } from './allocation.js';
import type { HandleCache } from './extent-io.js';
import type { PartitionEngine } from './partition.js';

export interface ZeroMode {
  /** NO_HOLE: keep the range allocated. */
  noHole: boolean;
  /** FAST_ZERO: fail with ENOTSUP rather than copy or write data. */
  fast: boolean;
}

const ZERO_CHUNK = Buffer.alloc(4 << 20);

/** The fast-zero refusal: the NBD layer sends ENOTSUP and the client writes zeroes its own way. */
function notFast(why: string): OperationError {
  return new OperationError(`fast zero refused: ${why}`, 'ENOTSUP');
}

/**
 * Make [off, off + len) of the partition read as zeroes without writing data;
 * the files changed join `touched`. Returns the pieces the file system cannot
 * do this for (nothing of those changed).
 */
async function deallocateRange(engine: PartitionEngine, handles: HandleCache, off: number, len: number, mode: DeallocateMode, touched: Set<string>): Promise<{ path: string; partOffset: number; length: number }[]> {
  const unsupported: { path: string; partOffset: number; length: number }[] = [];
  await Promise.all(
    mapPartitionRange(engine.io.extents, off, len).map(async (s) => {
      const fd = handles.get(s.path);
      let done: boolean;
      try {
        done = await deallocate(fd, s.path, mode, s.fileOffset, s.length);
      } finally {
        // Counted like a write, even on failure: a later FLUSH's fdatasync must cover it.
        handles.wrote(s.path);
      }
      if (!done) return void unsupported.push({ path: s.path, partOffset: off + s.rangeOffset, length: s.length });
      noteOwnWrite(s.path, fd); // our own change of the file's mtime, not a foreign writer's
      touched.add(s.path);
    }),
  );
  return unsupported;
}

export async function zeroRange(engine: PartitionEngine, handles: HandleCache, off: number, len: number, fua: boolean, mode: ZeroMode): Promise<void> {
  if (len === 0) return;
  const ctx = engine.ctx;
  await ctx.gate.enter();
  try {
    await ctx.mutating();
    const newest = engine.logs[engine.logs.length - 1];
    const touched = new Set<string>();
    if (newest) {
      const { first, last } = blockSpan(off, len, engine.blockSize);
      // From here to the copies being registered, no await: the holes seen are the holes the copy decision uses.
      const hole = holeBlocks(engine, handles, first, last);
      if (mode.fast) {
        for (let b = first; b <= last; b++) {
          if (!newest.log.has(b) && !hole(b) && !engine.pendingCopies.has(b)) throw notFast(`block ${b} of partition ${engine.spec.id} would need a copy-on-write first`);
        }
      }
      newest.log.pin();
      await engine.copyOnWrite(newest.log, off, len, hole);
    }
    // test-only: the copies of the range are durable in the newest log, the live range not yet zeroed
    maybeFault('zero-before-punch');
    const rest = await deallocateRange(engine, handles, off, len, mode.noHole ? 'zero-range' : 'punch', touched);
    if (rest.length && mode.fast) throw notFast(`${rest[0].path}: the file system cannot ${mode.noHole ? 'zero a range' : 'punch a hole'}`);
    for (const r of rest) {
      for (let pos = 0; pos < r.length; pos += ZERO_CHUNK.length) {
        const n = Math.min(ZERO_CHUNK.length, r.length - pos);
        for (const p of await engine.io.write(r.partOffset + pos, ZERO_CHUNK, 0, n)) touched.add(p);
      }
    }
    maybeFault('zero-after-punch'); // test-only: the live range zeroed, not yet synced
    if (fua) await handles.sync(touched);
  } finally {
    ctx.gate.leave();
  }
}

export async function trimRange(engine: PartitionEngine, handles: HandleCache, off: number, len: number, fua: boolean): Promise<void> {
  const bs = engine.blockSize;
  const first = Math.ceil(off / bs);
  const end = Math.floor((off + len) / bs); // exclusive: only whole blocks
  if (end <= first) return;
  const ctx = engine.ctx;
  await ctx.gate.enter();
  try {
    await ctx.mutating();
    const newest = engine.logs[engine.logs.length - 1];
    const hole = holeBlocks(engine, handles, first, end - 1);
    // Runs of blocks a punch cannot take from any snapshot: their old content is in L_n, or there is no snapshot.
    const runs: [number, number][] = [];
    for (let b = first; b < end; b++) {
      if (hole(b) || (newest && !newest.log.has(b))) continue;
      const r = runs[runs.length - 1];
      if (r && r[1] === b) r[1] = b + 1;
      else runs.push([b, b + 1]);
    }
    const touched = new Set<string>();
    for (const [a, z] of runs) {
      const rest = await deallocateRange(engine, handles, a * bs, (z - a) * bs, 'punch', touched);
      if (rest.length) break; // this file system cannot punch: a trim is advisory, so nothing more to do
    }
    if (fua) await handles.sync(touched);
  } finally {
    ctx.gate.leave();
  }
}
