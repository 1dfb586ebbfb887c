// A committed snapshot as the catalogue reports it (create, list, show):
// the record's public part plus the bytes logged since, counted from the
// change-log sizes so list and show answer without starting workers.
import fs from 'node:fs';
import type { SnapshotRecord } from '../store/store.js';
import { snapshotMember } from '../store/layout.js';
import { changeLogRecordCount } from '../formats/changelog.js';
import { isManual } from '../store/names.js';
import type { SnapshotInfo } from './catalogue.js';
import { snapshotUsedBytes } from '../store/space.js';


function changedBytes(storeDir: string, rec: SnapshotRecord): number {
  let total = 0;
  for (const p of rec.partitions) {
    try {
      const size = fs.statSync(snapshotMember(storeDir, rec.id, p.changeLogFile)).size;
      // Counted from the file size (formats/changelog owns the geometry): no worker needed.
      total += changeLogRecordCount(size, rec.blockSize) * rec.blockSize;
    } catch {
      /* a missing log is verify's business; list stays usable */
    }
  }
  return total;
}

export function toInfo(storeDir: string, rec: SnapshotRecord, held: boolean): SnapshotInfo {
  return {
    id: rec.id,
    name: rec.name,
    createdAt: rec.createdAt,
    expiresAt: rec.expiresAt,
    size: rec.size,
    blockSize: rec.blockSize,
    freezeMs: rec.freezeMs,
    changedBytes: changedBytes(storeDir, rec),
    manual: isManual(rec),
    held,
    usedBytes: snapshotUsedBytes(storeDir, rec.id),
    partitions: rec.partitions.map((p) => ({
      id: p.id,
      worker: p.worker,
      pid: p.pid,
      snapshotFile: snapshotMember(storeDir, rec.id, p.snapshotFile),
      changeLogFile: snapshotMember(storeDir, rec.id, p.changeLogFile),
    })),
  };
}
