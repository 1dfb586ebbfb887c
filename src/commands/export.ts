// vsnap export: a raw image of the whole volume as of a snapshot (or live),
// sparse where blocks are zero; or, with --split, every backing file as of
// the snapshot, so a CI job can rebuild its images elsewhere.
//
// Each output is written under a temporary name beside it (same directory,
// so the final rename stays on one file system) and renamed into place only
// when complete and synced, then the directory is synced: an interrupted or
// failed export leaves the old file (or none), never a full-size wrong one.
// The copy runs in rounds of at most ROUND bytes per worker, so a Ctrl-C
// stops it between rounds, within about a second, with the workers idle.
// The workers do not sync the outputs; each output is fdatasynced once, after
// the last round (progress counts bytes copied; then the "syncing" phase).
// Zero pieces are left as holes only in a fresh file: a device written in
// place gets every byte (its old contents are not zeros).
import fs from 'node:fs';
import path from 'node:path';
import { UsageError } from '../errors.js';
import { resolveRef } from '../store/names.js';
import type { ExportTarget } from '../worker/protocol.js';
import { mergeRanges } from '../volume-map.js';
import { withCluster } from '../session.js';
import { throwIfInterrupted } from '../interrupt.js';
import { beginOutput, finishOutputs, abandonOutputs, syncOutputs, namedAfterOutput, type Output } from './output-file.js';
import { checkOutput, resolveOutput } from './io.js';

/** Bytes per worker per round: about 0.2-0.5 s of copying here, so Ctrl-C is prompt. */
const ROUND = 128 << 20;

export interface ExportResult {
  snapshot: { id: number; name: string } | 'live';
  output: string;
  bytes: number;
  files?: string[];
}

export interface ExportOptions {
  output?: string;
  split?: string;
  force?: boolean;
  /** Bytes copied (synced once, after the copy: the "syncing" phase). */
  onProgress?: (bytes: number) => void;
  onTotal?: (bytes: number) => void;
  /** A phase after the copy (syncing, renaming). */
  onPhase?: (label: string) => void;
}

/** Where a backing file goes under --split: its manifest-relative path, or its base name if that would escape. */
export function splitName(file: string): string {
  const norm = path.normalize(file);
  return path.isAbsolute(norm) || norm.startsWith('..') ? path.basename(norm) : norm;
}

/** Cut targets into rounds: round k holds each worker's k-th piece of at most ROUND bytes. */
export function planRounds(targets: ExportTarget[], workerOf: (t: ExportTarget) => number, round = ROUND): ExportTarget[][] {
  const perWorker = new Map<number, ExportTarget[]>();
  for (const t of targets) {
    const list = perWorker.get(workerOf(t)) ?? [];
    for (let off = 0; off < t.length; off += round) {
      const n = Math.min(t.length - off, round);
      list.push({ ...t, partOffset: t.partOffset + off, length: n, outputOffset: t.outputOffset + off });
    }
    perWorker.set(workerOf(t), list);
  }
  const rounds: ExportTarget[][] = [];
  for (const list of perWorker.values()) list.forEach((piece, k) => (rounds[k] ??= []).push(piece));
  return rounds;
}

export async function exportCmd(manifest: string, ref: string, o: ExportOptions): Promise<ExportResult> {
  if (!o.output && !o.split) throw new UsageError('export needs --output FILE or --split DIR');
  return withCluster(manifest, 'export', { create: false, force: o.force }, async (cluster) => {
    const volume = cluster.volume;
    const snap = ref === 'live' ? undefined : resolveRef(cluster.store.snapshots, ref);
    const view = snap ? snap.id : 0;
    if (view !== 0) cluster.store.checkChain(view);
    const label = snap ? { id: snap.id, name: snap.name } : ('live' as const);
    const result: ExportResult = { snapshot: label, output: o.output ?? o.split!, bytes: 0 };
    const outputs: Output[] = [];
    // A fresh file (written under a temporary name) reads its holes as zeros; a device does not.
    const isFresh = (file: string) => outputs.some((out) => out.writing === file && out.sparse);
    const copy = async (targets: ExportTarget[]): Promise<number> => {
      let bytes = 0;
      for (const round of planRounds(targets, (t) => volume.partitions[t.partition].worker)) {
        throwIfInterrupted();
        const sparse = round.filter((t) => isFresh(t.output));
        const dense = round.filter((t) => !isFresh(t.output));
        if (sparse.length) bytes += await cluster.exportTo(view, sparse, true, o.onProgress, false);
        if (dense.length) bytes += await cluster.exportTo(view, dense, false, o.onProgress, false);
      }
      throwIfInterrupted();
      return bytes;
    };
    try {
      if (o.output) {
        const file = resolveOutput(o.output, '--output', { streams: false });
        checkOutput(volume, manifest, file, '--output');
        o.onTotal?.(volume.size);
        // A fresh sparse file: holes read as zeroes, so zero chunks are skipped.
        const out = beginOutput(file, volume.size);
        outputs.push(out);
        const targets: ExportTarget[] = volume.partitions.map((p) => ({ partition: p.index, partOffset: 0, length: p.length, output: out.writing, outputOffset: p.volumeOffset }));
        result.bytes = await copy(targets);
      }
      if (o.split) result.files = await exportSplit(o, volume, manifest, outputs, copy, (b) => (result.bytes = o.output ? result.bytes : b));
      o.onPhase?.('syncing');
      await syncOutputs(outputs);
      await finishOutputs(outputs);
    } catch (err) {
      abandonOutputs(outputs); // failed or interrupted: no partial output stays behind
      throw namedAfterOutput(outputs, err);
    }
    return result;
  });
}

type Copy = (targets: ExportTarget[]) => Promise<number>;

async function exportSplit(o: ExportOptions, volume: import('../manifest/layout.js').Volume, manifest: string, outputs: Output[], copy: Copy, setBytes: (b: number) => void): Promise<string[]> {
  const split = o.split!;
  const files = new Map<string, { src: string; size: number; mapped: { offset: number; length: number }[] }>();
  const pieces: { partition: number; partOffset: number; length: number; dest: string; outputOffset: number }[] = [];
  for (const p of volume.partitions) {
    let partOffset = 0;
    for (const e of p.extents) {
      const dest = path.join(split, splitName(e.file));
      const f = files.get(dest) ?? { src: e.path, size: fs.statSync(e.path).size, mapped: [] };
      if (f.src !== e.path) throw new UsageError(`--split: two backing files would both be written to ${dest}`);
      f.mapped.push({ offset: e.offset, length: e.length });
      files.set(dest, f);
      pieces.push({ partition: p.index, partOffset, length: e.length, dest, outputOffset: e.offset });
      partOffset += e.length;
    }
  }
  if (fs.existsSync(split) && !fs.statSync(split).isDirectory()) throw new UsageError(`--split: ${split} is not a directory`);
  for (const dest of files.keys()) {
    checkOutput(volume, manifest, dest, '--split');
    if (fs.existsSync(dest) && fs.statSync(dest).isDirectory()) throw new UsageError(`--split: ${dest} is a directory`);
  }
  o.onTotal?.(pieces.reduce((a, t) => a + t.length, 0));
  const writing = new Map<string, string>();
  for (const [dest, f] of files) {
    fs.mkdirSync(path.dirname(dest), { recursive: true });
    const out = beginOutput(dest, f.size);
    outputs.push(out);
    writing.set(dest, out.writing);
    // Bytes outside the manifest's extents are not volume data: copy them
    // from the current file as they are.
    const fd = fs.openSync(out.writing, 'r+');
    const src = fs.openSync(f.src, 'r');
    try {
      let pos = 0;
      const gaps: { offset: number; length: number }[] = [];
      for (const m of mergeRanges(f.mapped)) {
        if (m.offset > pos) gaps.push({ offset: pos, length: m.offset - pos });
        pos = m.offset + m.length;
      }
      if (pos < f.size) gaps.push({ offset: pos, length: f.size - pos });
      const buf = Buffer.allocUnsafe(1 << 20);
      for (const g of gaps) {
        for (let off = 0; off < g.length; off += buf.length) {
          const n = fs.readSync(src, buf, 0, Math.min(buf.length, g.length - off), g.offset + off);
          if (n === 0) break;
          if (!buf.subarray(0, n).every((x) => x === 0)) fs.writeSync(fd, buf, 0, n, g.offset + off);
        }
      }
      // Synced with the rest of the file, once, by syncOutputs.
    } finally {
      fs.closeSync(src);
      fs.closeSync(fd);
    }
  }
  const targets: ExportTarget[] = pieces.map((t) => ({ partition: t.partition, partOffset: t.partOffset, length: t.length, output: writing.get(t.dest)!, outputOffset: t.outputOffset }));
  setBytes(await copy(targets));
  return [...files.keys()];
}
