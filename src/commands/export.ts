// vsnap export: a raw image of the whole volume as of a snapshot (or live),
// sparse where blocks are zero; or, with --split, every backing file as of
// the snapshot, so a CI job can rebuild its images elsewhere.
import fs from 'node:fs';
import path from 'node:path';
import { UsageError } from '../errors.js';
import { resolveRef } from '../store/names.js';
import type { Volume } from '../manifest/layout.js';
import type { ExportTarget } from '../worker/protocol.js';
import { mergeRanges } from '../volume-map.js';
import { withCluster } from '../session.js';
import { checkOutput, checkOutputPath } from './io.js';

export interface ExportResult {
  snapshot: { id: number; name: string } | 'live';
  output: string;
  bytes: number;
  files?: string[];
}

/** Where a backing file goes under --split: its manifest-relative path, or its base name if that would escape. */
export function splitName(file: string): string {
  const norm = path.normalize(file);
  return path.isAbsolute(norm) || norm.startsWith('..') ? path.basename(norm) : norm;
}

export async function exportCmd(
  manifest: string,
  ref: string,
  o: { output?: string; split?: string; force?: boolean; onProgress?: (bytes: number) => void; onTotal?: (bytes: number) => void },
): Promise<ExportResult> {
  if (!o.output && !o.split) throw new UsageError('export needs --output FILE or --split DIR');
  return withCluster(manifest, 'export', { create: false, force: o.force }, async (cluster) => {
    const volume = cluster.volume;
    const snap = ref === 'live' ? undefined : resolveRef(cluster.store.snapshots, ref);
    const view = snap ? snap.id : 0;
    const label = snap ? { id: snap.id, name: snap.name } : ('live' as const);
    const result: ExportResult = { snapshot: label, output: o.output ?? o.split!, bytes: 0 };
    if (o.output) {
      checkOutputPath(o.output, '--output');
      checkOutput(volume, manifest, o.output, '--output');
      o.onTotal?.(volume.size);
      // A fresh sparse file: holes read as zeroes, so zero chunks are skipped.
      const fd = fs.openSync(o.output, 'w');
      fs.ftruncateSync(fd, volume.size);
      fs.closeSync(fd);
      const targets: ExportTarget[] = volume.partitions.map((p) => ({ partition: p.index, partOffset: 0, length: p.length, output: o.output!, outputOffset: p.volumeOffset }));
      result.bytes = await cluster.exportTo(view, targets, true, o.onProgress);
    }
    if (o.split) {
      const files = new Map<string, { src: string; size: number; mapped: { offset: number; length: number }[] }>();
      const targets: ExportTarget[] = [];
      for (const p of volume.partitions) {
        let partOffset = 0;
        for (const e of p.extents) {
          const name = splitName(e.file);
          const dest = path.join(o.split, name);
          const f = files.get(dest) ?? { src: e.path, size: fs.statSync(e.path).size, mapped: [] };
          if (f.src !== e.path) throw new UsageError(`--split: two backing files would both be written to ${dest}`);
          f.mapped.push({ offset: e.offset, length: e.length });
          files.set(dest, f);
          targets.push({ partition: p.index, partOffset, length: e.length, output: dest, outputOffset: e.offset });
          partOffset += e.length;
        }
      }
      if (fs.existsSync(o.split) && !fs.statSync(o.split).isDirectory()) throw new UsageError(`--split: ${o.split} is not a directory`);
      for (const dest of files.keys()) {
        checkOutput(volume, manifest, dest, '--split');
        if (fs.existsSync(dest) && fs.statSync(dest).isDirectory()) throw new UsageError(`--split: ${dest} is a directory`);
      }
      o.onTotal?.(targets.reduce((a, t) => a + t.length, 0));
      for (const [dest, f] of files) {
        fs.mkdirSync(path.dirname(dest), { recursive: true });
        const out = fs.openSync(dest, 'w');
        fs.ftruncateSync(out, f.size);
        // Bytes outside the manifest's extents are not volume data: copy them
        // from the current file as they are.
        const src = fs.openSync(f.src, 'r');
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
            if (!buf.subarray(0, n).every((x) => x === 0)) fs.writeSync(out, buf, 0, n, g.offset + off);
          }
        }
        fs.closeSync(src);
        fs.fsyncSync(out);
        fs.closeSync(out);
      }
      const bytes = await cluster.exportTo(view, targets, true, o.onProgress);
      if (!o.output) result.bytes = bytes;
      result.files = [...files.keys()];
    }
    return result;
  });
}
