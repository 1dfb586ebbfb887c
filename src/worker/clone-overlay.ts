// Writable clones inside a worker (design.md §5, docs/formats.md "Writable
// clones"): for each clone the coordinator opened, one overlay per partition
// this worker owns, opened at the clone's first I/O here.
//
// Block states in one partition's overlay:
//   - mapped: a durable map record says the block's data is in the overlay;
//   - written: its data is in the overlay's slot, its map record waits for
//     the next checkpoint (FLUSH, FUA, close, or too many waiting);
//   - claimed: its first write is in progress (a partial one reads the base
//     view first); other writers of the block wait for it, so a base copy
//     never lands over a newer write;
//   - otherwise: reads take the base snapshot's view.
// A checkpoint fdatasyncs the data, then appends the waiting blocks' map
// records: a map record never names data that is not durable.
import { OperationError } from '../errors.js';
import { OverlayFile, resetOverlayFiles, type OverlayHeader } from '../formats/overlay.js';
import { overlayFiles } from '../store/layout.js';
import { blockSpan } from '../volume-map.js';
import type { CloneSpec } from './protocol.js';
import type { PartitionEngine } from './partition.js';

/** Blocks waiting for their map record before a checkpoint is started without a FLUSH (bounds memory). */
const MAX_WAITING = 65_536;

/** One clone's overlay of one partition. */
class PartitionClone {
  private readonly written = new Set<number>();
  private readonly claims = new Map<number, Promise<void>>();
  /** Data written since the last data sync started (in-place writes of mapped blocks included). */
  private dirty = false;
  private failed: Error | undefined;
  private chain: Promise<unknown> = Promise.resolve();
  private readonly ops = new Set<Promise<unknown>>();
  private blocked: Promise<void> | undefined;
  private closed: Error | undefined;

  constructor(
    private readonly file: OverlayFile,
    private readonly engine: PartitionEngine,
    private readonly spec: CloneSpec,
  ) {}

  private present(b: number): boolean {
    return this.written.has(b) || this.file.mapped.has(b);
  }

  /** Run one I/O, unless the overlay is being reset or closed (then wait, or fail). */
  private async run<T>(fn: () => Promise<T>): Promise<T> {
    while (this.blocked) await this.blocked;
    if (this.closed) throw this.closed;
    const p = fn();
    this.ops.add(p);
    const done = () => this.ops.delete(p);
    p.then(done, done);
    return p;
  }

  /** Run fn with no I/O in flight and none starting. */
  async exclusive<T>(fn: () => Promise<T>): Promise<T> {
    while (this.blocked) await this.blocked;
    let open!: () => void;
    this.blocked = new Promise<void>((r) => (open = r));
    try {
      while (this.ops.size) await Promise.allSettled([...this.ops]);
      await this.chain;
      return await fn();
    } finally {
      this.blocked = undefined;
      open();
    }
  }

  read(off: number, len: number): Promise<Buffer> {
    return this.run(async () => {
      const bs = this.file.blockSize;
      const { first, last } = blockSpan(off, len, bs);
      // Nothing of the range written to the clone: the base view as it comes, no copy.
      if (this.written.size === 0 && this.file.mapped.size === 0) return this.base(off, len);
      const out = Buffer.allocUnsafe(len);
      const jobs: Promise<void>[] = [];
      let runStart = first;
      let inOverlay = this.present(first);
      const flush = (end: number) => {
        const s = Math.max(off, runStart * bs);
        const e = Math.min(off + len, end * bs);
        if (inOverlay) jobs.push(this.file.read(s, e - s, out, s - off));
        else jobs.push(this.base(s, e - s).then((buf) => void buf.copy(out, s - off)));
      };
      for (let b = first + 1; b <= last; b++) {
        const here = this.present(b);
        if (here === inOverlay) continue;
        flush(b);
        runStart = b;
        inOverlay = here;
      }
      flush(last + 1);
      await Promise.all(jobs);
      return out;
    });
  }

  /** The base snapshot's view of a range (the worker's snapshot read path). */
  private base(off: number, len: number): Promise<Buffer> {
    return this.engine.read(this.spec.snapshotId, off, len, this.spec.force);
  }

  write(off: number, data: Buffer, fua: boolean): Promise<void> {
    if (data.length === 0) return Promise.resolve();
    return this.run(async () => {
      const bs = this.file.blockSize;
      const len = data.length;
      const { first, last } = blockSpan(off, len, bs);
      // Wait for the first writes of these blocks that are in progress.
      for (;;) {
        const waits: Promise<void>[] = [];
        for (let b = first; b <= last; b++) {
          const c = this.claims.get(b);
          if (c) waits.push(c);
        }
        if (!waits.length) break;
        await Promise.allSettled(waits);
      }
      const absent: number[] = [];
      for (let b = first; b <= last; b++) if (!this.present(b)) absent.push(b);
      let release!: () => void;
      const claim = new Promise<void>((r) => (release = r));
      for (const b of absent) this.claims.set(b, claim);
      try {
        const headPartial = off > first * bs || off + len < (first + 1) * bs;
        const tailPartial = last !== first && off + len < (last + 1) * bs;
        const mergeHead = headPartial && !this.present(first);
        const mergeTail = tailPartial && !this.present(last);
        // A partial first write of a block keeps the rest of the block as the base view has it.
        const [head, tail] = await Promise.all([
          mergeHead ? this.base(first * bs, bs) : undefined,
          mergeTail ? this.base(last * bs, bs) : undefined,
        ]);
        const bufs: Buffer[] = [];
        let start = off;
        let bodyFrom = 0;
        let bodyTo = len;
        if (head) {
          const within = off - first * bs;
          const n = Math.min(len, bs - within);
          data.copy(head, within, 0, n);
          bufs.push(head);
          start = first * bs;
          bodyFrom = n;
        }
        if (tail) bodyTo = last * bs - off;
        if (bodyTo > bodyFrom) bufs.push(data.subarray(bodyFrom, bodyTo));
        if (tail) {
          data.copy(tail, 0, last * bs - off, len);
          bufs.push(tail);
        }
        await this.file.write(start, bufs);
        this.dirty = true;
        for (const b of absent) this.written.add(b);
      } finally {
        for (const b of absent) if (this.claims.get(b) === claim) this.claims.delete(b);
        release();
      }
      if (fua) await this.checkpoint();
      else if (this.written.size >= MAX_WAITING) void this.checkpoint().catch(() => undefined);
    });
  }

  /** Make every write that completed before this call durable and mapped (FLUSH, FUA, close). */
  checkpoint(): Promise<void> {
    const step = async () => {
      if (this.failed) throw this.failed;
      const blocks = [...this.written];
      if (!this.dirty && blocks.length === 0) return;
      this.dirty = false;
      try {
        await this.file.syncData();
        await this.file.appendMapped(blocks);
      } catch (err) {
        // Sticky: the kernel may have dropped the pages whose write-back failed.
        this.failed = new OperationError(`clone ${this.spec.name}, partition ${this.engine.spec.id}: ${(err as Error).message}; every later FLUSH of this clone fails until the worker restarts`);
        throw this.failed;
      }
      for (const b of blocks) this.written.delete(b);
    };
    const p = this.chain.then(step, step);
    this.chain = p.catch(() => undefined);
    return p;
  }

  /** Forget every write (clone reset): the map, then the data. */
  reset(): Promise<void> {
    return this.exclusive(async () => {
      await this.file.reset();
      this.written.clear();
      this.dirty = false;
    });
  }

  /** Close for good; with `sync`, checkpoint first (orderly worker close). */
  close(why: Error, sync: boolean): Promise<void> {
    return this.exclusive(async () => {
      this.closed = why;
      try {
        if (sync) await this.checkpoint();
      } finally {
        await this.file.close();
      }
    });
  }
}

/** Every clone this worker knows, by handle, with its overlays opened on demand. */
export class WorkerClones {
  private readonly specs = new Map<number, CloneSpec>();
  private readonly open = new Map<string, Promise<PartitionClone>>();

  constructor(
    private readonly ctx: { fingerprint: string; blockSize: number },
    private readonly engines: () => Iterable<PartitionEngine>,
    private readonly engine: (index: number) => PartitionEngine,
  ) {}

  add(spec: CloneSpec): void {
    this.specs.set(spec.handle, spec);
  }

  /** What the headers of a clone's overlay of one partition say. */
  private header(spec: CloneSpec, engine: PartitionEngine): OverlayHeader {
    return { partitionId: engine.spec.id, blockSize: this.ctx.blockSize, blockCount: engine.blockCount, snapshotId: spec.snapshotId, fingerprint: this.ctx.fingerprint };
  }

  private key(handle: number, index: number): string {
    return `${handle}/${index}`;
  }

  private part(handle: number, index: number): Promise<PartitionClone> {
    const k = this.key(handle, index);
    let p = this.open.get(k);
    if (!p) {
      const spec = this.specs.get(handle);
      if (!spec) return Promise.reject(new OperationError(`clone handle ${handle} is not open (the clone was deleted)`));
      const engine = this.engine(index);
      p = OverlayFile.open(overlayFiles(spec.dir, engine.spec.id), this.header(spec, engine)).then((f) => new PartitionClone(f, engine, spec));
      this.open.set(k, p);
      // A failed open is tried again at the next I/O.
      p.catch(() => this.open.get(k) === p && this.open.delete(k));
    }
    return p;
  }

  async read(handle: number, index: number, off: number, len: number): Promise<Buffer> {
    return (await this.part(handle, index)).read(off, len);
  }

  async write(handle: number, index: number, off: number, data: Buffer, fua: boolean): Promise<void> {
    await (await this.part(handle, index)).write(off, data, fua);
  }

  async zero(handle: number, index: number, off: number, len: number, fua: boolean): Promise<void> {
    const chunk = 4 << 20;
    const part = await this.part(handle, index);
    for (let pos = 0; pos < len; pos += chunk) await part.write(off + pos, Buffer.alloc(Math.min(chunk, len - pos)), fua);
  }

  /** FLUSH of a clone: checkpoint its overlays open here (one never opened has nothing to sync). */
  async flush(handle: number): Promise<void> {
    if (!this.specs.has(handle)) throw new OperationError(`clone handle ${handle} is not open (the clone was deleted)`);
    const parts = [...this.open.entries()].filter(([k]) => k.startsWith(`${handle}/`)).map(([, p]) => p);
    await Promise.all(parts.map(async (p) => (await p).checkpoint()));
  }

  /** Open every overlay of the clone here (kept open for its I/O); a damaged one fails as at its first I/O. */
  async check(handle: number): Promise<void> {
    if (!this.specs.has(handle)) throw new OperationError(`clone handle ${handle} is not open (the clone was deleted)`);
    for (const e of this.engines()) await this.part(handle, e.spec.index);
  }

  async reset(handle: number): Promise<void> {
    const spec = this.specs.get(handle);
    if (!spec) throw new OperationError(`clone handle ${handle} is not open (the clone was deleted)`);
    for (const e of this.engines()) {
      // An open that failed (a damaged overlay, say) or fails meanwhile: reset the files, which repairs them.
      const part = await this.open.get(this.key(handle, e.spec.index))?.catch(() => undefined);
      if (part) await part.reset();
      else await resetOverlayFiles(overlayFiles(spec.dir, e.spec.id), this.header(spec, e));
    }
  }

  /** Close a clone's overlays (delete, or the worker's orderly close with sync). */
  async close(handle: number, sync: boolean): Promise<void> {
    const spec = this.specs.get(handle);
    this.specs.delete(handle);
    const why = new OperationError(`clone ${spec?.name ?? handle} was deleted`);
    for (const [k, p] of [...this.open.entries()]) {
      if (!k.startsWith(`${handle}/`)) continue;
      this.open.delete(k);
      const part = await p.catch(() => undefined);
      await part?.close(why, sync);
    }
  }

  async closeAll(): Promise<void> {
    for (const h of [...this.specs.keys()]) await this.close(h, true);
  }
}
