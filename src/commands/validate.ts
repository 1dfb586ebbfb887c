// vsnap validate: parse the manifest and describe the layout.
import { loadManifest } from '../manifest/load.js';
import type { Volume } from '../manifest/layout.js';

export interface LayoutReport {
  name: string;
  blockSize: number;
  size: number;
  store: string;
  fingerprint: string;
  partitions: {
    id: string;
    worker: number;
    volumeOffset: number;
    length: number;
    extents: { file: string; offset: number; length: number }[];
  }[];
}

export function describe(v: Volume): LayoutReport {
  return {
    name: v.name,
    blockSize: v.blockSize,
    size: v.size,
    store: v.storeDir,
    fingerprint: v.fingerprint,
    partitions: v.partitions.map((p) => ({
      id: p.id,
      worker: p.worker,
      volumeOffset: p.volumeOffset,
      length: p.length,
      extents: p.extents.map((e) => ({ file: e.file, offset: e.offset, length: e.length })),
    })),
  };
}

export async function validate(manifestPath: string): Promise<LayoutReport> {
  return describe(loadManifest(manifestPath));
}
