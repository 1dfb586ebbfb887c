// A committed snapshot as the catalogue reports it (create, list, show):
// the record's public part plus the bytes logged since, counted from the
// change-log sizes so list and show answer without starting workers.
import fs from 'node:fs';
import path from 'node:path';
import { snapshotDir, type SnapshotRecord } from '../store/store.js';
import type { SnapshotInfo } from './catalogue.js';

// Change-log geometry (docs/formats.md): a 4 KiB header, then fixed-size
// records of a 32-byte header plus one block. Counting records from the file
// size lets list and show answer without starting workers.
const CLOG_HEADER = 4096;
const CLOG_RECORD_HEADER = 32;

function changedBytes(storeDir: string, rec: SnapshotRecord): number {
  let total = 0;
  for (const p of rec.partitions) {
    try {
      const size = fs.statSync(path.join(snapshotDir(storeDir, rec.id), p.changeLogFile)).size;
      total += Math.max(0, Math.floor((size - CLOG_HEADER) / (CLOG_RECORD_HEADER + rec.blockSize))) * rec.blockSize;
    } catch {
      /* a missing log is verify's business; list stays usable */
    }
  }
  return total;
}

export function toInfo(storeDir: string, rec: SnapshotRecord): SnapshotInfo {
  const dir = snapshotDir(storeDir, rec.id);
  return {
    id: rec.id,
    name: rec.name,
    createdAt: rec.createdAt,
    expiresAt: rec.expiresAt,
    size: rec.size,
    blockSize: rec.blockSize,
    freezeMs: rec.freezeMs,
    changedBytes: changedBytes(storeDir, rec),
    partitions: rec.partitions.map((p) => ({
      id: p.id,
      worker: p.worker,
      pid: p.pid,
      snapshotFile: path.join(dir, p.snapshotFile),
      changeLogFile: path.join(dir, p.changeLogFile),
    })),
  };
}
