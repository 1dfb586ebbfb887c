// vsnap verify: read every file of the store and check it (checksums, record
// chains, each partition snapshot's state against the manifest, every change
// log whole). Exit 3 when anything is wrong, naming each problem.
import { loadManifest } from '../manifest/load.js';
import { Store, snapshotDir } from '../store/store.js';
import { snapshotRecordFile, snapshotsEntry } from '../store/layout.js';
import { resolveRef } from '../store/names.js';
import { WorkerHandle } from '../coordinator/worker-handle.js';
import type { VerifyProblem } from '../worker/protocol.js';
import fs from 'node:fs';
import { snapshotMember } from '../store/layout.js';
import { interrupted, onInterrupt } from '../interrupt.js';
import { cloneBytesToRead, verifyClones } from './verify-clones.js';

/** A problem of a snapshot (clone null) or of a clone (named, with its base snapshot). */
export type VerifyReportProblem = VerifyProblem & { clone: string | null };

export interface VerifyReport {
  ok: boolean;
  snapshots: number;
  clones: number;
  bytesRead: number;
  problems: VerifyReportProblem[];
}

/** Bytes verify will read: every partition snapshot file and change log of the snapshots checked. */
function bytesToRead(storeDir: string, snaps: { id: number; partitions: { snapshotFile: string; changeLogFile: string }[] }[]): number {
  let total = 0;
  for (const s of snaps) {
    for (const p of s.partitions) {
      for (const f of [p.snapshotFile, p.changeLogFile]) {
        try {
          total += fs.statSync(snapshotMember(storeDir, s.id, f)).size;
        } catch {
          /* a missing file is a problem the workers report */
        }
      }
    }
  }
  return total;
}

export async function verify(
  manifest: string,
  ref: string | undefined,
  o: { onProgress?: (bytes: number) => void; onTotal?: (bytes: number) => void } = {},
): Promise<VerifyReport> {
  const volume = loadManifest(manifest);
  const problems: VerifyProblem[] = [];
  const store = await Store.open(volume, {
    command: 'verify',
    create: false,
    onBadSnapshot: (dir, err) => problems.push({ snapshot: Number(dir), partition: null, file: snapshotRecordFile(snapshotsEntry(volume.storeDir, dir)), message: err.message }),
  });
  try {
    const snaps = ref === undefined ? store.snapshots : [resolveRef(store.snapshots, ref)];
    for (const s of store.stale) {
      for (const id of s.snapshots) {
        if (snaps.some((x) => x.id === id)) problems.push({ snapshot: id, partition: s.partition, file: null, message: `stale: ${s.reason}` });
      }
    }
    for (const m of store.missing) {
      problems.push({ snapshot: m, partition: null, file: snapshotDir(store.dir, m), message: `snapshot ${m} is in the store's chain of snapshots but its directory is gone (removed behind vsnap)` });
    }
    for (const s of snaps) {
      const broken = store.broken(s.id);
      if (broken) problems.push({ snapshot: s.id, partition: null, file: null, message: broken });
      if (s.fingerprint !== volume.fingerprint) problems.push({ snapshot: s.id, partition: null, file: null, message: `snapshot.json records mapping ${s.fingerprint}, the volume has ${volume.fingerprint}` });
    }
    const only = ref === undefined ? undefined : snaps[0].id;
    o.onTotal?.(bytesToRead(store.dir, snaps) + cloneBytesToRead(store.dir, volume, only));
    // Each worker checks the files of its own partitions, in parallel. A
    // Ctrl-C stops waiting for them: verify changes nothing, and the workers
    // end with the link when the finally below has released the lock.
    const indexes = [...new Set(volume.partitions.map((p) => p.worker))];
    let bytesRead = 0;
    const stop = onInterrupt();
    const handles: WorkerHandle[] = [];
    try {
      await Promise.race([
        stop.promise,
        Promise.all(
          indexes.map(async (w) => {
            const parts = volume.partitions.filter((p) => p.worker === w);
            const h = await WorkerHandle.spawn(w, parts.map((p) => p.id));
            handles.push(h);
            try {
              const req = {
                t: 'verify' as const,
                storeDir: store.dir,
                fingerprint: volume.fingerprint,
                blockSize: volume.blockSize,
                partitions: parts.map((p) => ({ index: p.index, id: p.id, length: p.length, extents: p.extents })),
                snapshots: snaps.map((s) => ({ id: s.id, partitions: s.partitions })),
              };
              const r = await h.control(req, o.onProgress);
              problems.push(...r.problems);
              bytesRead += r.bytesRead;
            } finally {
              await h.close();
            }
          }),
        ),
      ]);
    } finally {
      stop.dispose();
      // Interrupted: the workers are abandoned mid-read (they write nothing).
      if (interrupted()) for (const h of handles) if (h.alive) h.kill();
    }
    problems.sort((a, b) => (a.snapshot ?? 0) - (b.snapshot ?? 0) || String(a.partition).localeCompare(String(b.partition)));
    // The clones (of the snapshot checked, with a ref): their maps are small, read here.
    const clones = verifyClones(store.dir, volume, store.snapshots, { ...(only === undefined ? {} : { only }), onProgress: o.onProgress });
    bytesRead += clones.bytesRead;
    const all: VerifyReportProblem[] = [...problems.map((p) => ({ ...p, clone: null })), ...clones.problems];
    return { ok: all.length === 0, snapshots: snaps.length, clones: clones.clones, bytesRead, problems: all };
  } finally {
    store.release();
  }
}
