// vsnap export, the worker's side: copy pieces of a view (a snapshot or the
// live volume) of this worker's partitions into output files.
//
// Each piece is copied in CHUNK-sized reads, LANES of them in flight, each
// lane reading into its own buffer, reused for every chunk: a fresh 4 MiB
// buffer per chunk cost the kernel a page fault and a zero fill per page
// (docs/performance.md "Restore and export (stop 17)"). Blocks in no log are
// read straight from the backing files (readView reads a run of them with one
// read). With `sparse` (a fresh output file, whose holes read as zeros),
// all-zero HOLE-sized pieces are not written, so the output keeps them as
// holes, as `qemu-img convert -S` does; runs of non-zero pieces go out as one
// write. The outputs are fdatasynced at the end unless the caller syncs them
// itself (`sync: false`: export syncs each output once, after every round).
import fs from 'node:fs/promises';
import type { FileHandle } from 'node:fs/promises';
import { namingFile } from '../errors.js';
import { writeFully } from '../positional-io.js';
import type { ExportTarget } from './protocol.js';
import type { ViewLogs } from './restore-types.js';
import type { ExtentIO } from './extent-io.js';
import { isZero } from './zero-check.js';

const CHUNK = 4 << 20;
const LANES = 3;
/** Granularity of the holes left in a sparse output. */
const HOLE = 64 << 10;

/** What an export reads of a partition engine (partition.ts). */
export interface ExportableEngine {
  readonly io: ExtentIO;
  viewOf(view: number): ViewLogs;
  checkFresh(view: number): void;
  track<T>(p: Promise<T>): Promise<T>;
  readView(v: ViewLogs, off: number, len: number, out: Buffer, outOff: number): Promise<void>;
}

export interface ExportOptions {
  view: number;
  sparse: boolean;
  /** fdatasync each output before answering (default true). */
  sync?: boolean;
  onBytes: (n: number) => void;
}

export async function exportPieces(engineOf: (partition: number) => ExportableEngine, targets: ExportTarget[], o: ExportOptions): Promise<{ bytes: number }> {
  const outputs = new Map<string, Promise<FileHandle>>();
  const open = (file: string) => {
    let fh = outputs.get(file);
    if (!fh) {
      fh = namingFile(file, fs.open(file, 'r+'));
      outputs.set(file, fh);
    }
    return fh;
  };
  const chunks: { t: ExportTarget; off: number; n: number }[] = [];
  for (const t of targets) for (let off = 0; off < t.length; off += CHUNK) chunks.push({ t, off, n: Math.min(CHUNK, t.length - off) });
  let bytes = 0;
  let next = 0;
  const lane = async () => {
    const buf = Buffer.allocUnsafe(Math.min(CHUNK, Math.max(...chunks.map((c) => c.n))));
    while (next < chunks.length) {
      const { t, off, n } = chunks[next++];
      const out = buf.subarray(0, n);
      await readInto(engineOf(t.partition), o.view, t.partOffset + off, out);
      await writeOut(t.output, await open(t.output), out, t.outputOffset + off, o.sparse);
      bytes += n;
      o.onBytes(n);
    }
  };
  try {
    const lanes = await Promise.allSettled(Array.from({ length: Math.min(LANES, chunks.length) }, lane));
    const failed = lanes.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failed) throw failed.reason;
    if (o.sync !== false) for (const [file, fh] of outputs) await namingFile(file, (await fh).datasync());
  } finally {
    for (const [file, fh] of outputs) await fh.then((h) => namingFile(file, h.close())).catch(() => undefined);
  }
  return { bytes };
}

async function readInto(e: ExportableEngine, view: number, off: number, out: Buffer): Promise<void> {
  if (view === 0) return e.io.read(off, out.length, out, 0);
  const v = e.viewOf(view);
  e.checkFresh(view);
  await e.track(e.readView(v, off, out.length, out, 0));
}

/** buf at `pos` of the output; with `sparse`, all-zero HOLE pieces are skipped (the fresh file reads them as zeros). */
async function writeOut(file: string, fh: FileHandle, buf: Buffer, pos: number, sparse: boolean): Promise<void> {
  if (!sparse) return void (await namingFile(file, writeFully(fh, buf, 0, buf.length, pos)));
  let at = 0;
  while (at < buf.length) {
    while (at < buf.length && isZero(buf.subarray(at, Math.min(buf.length, at + HOLE)))) at += HOLE;
    if (at >= buf.length) break;
    let end = at + HOLE;
    while (end < buf.length && !isZero(buf.subarray(end, Math.min(buf.length, end + HOLE)))) end += HOLE;
    end = Math.min(end, buf.length);
    await namingFile(file, writeFully(fh, buf, at, end - at, pos + at));
    at = end;
  }
}
