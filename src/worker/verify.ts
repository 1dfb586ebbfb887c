// Worker side of `vsnap verify`: every partition snapshot file and every
// change log of the worker's partitions, read whole and checked. It opens
// logs read-only and never fails on damage: it reports it.
import fs from 'node:fs';
import { ChangeLog } from '../formats/changelog.js';
import { readPartitionSnapshot } from '../formats/psnap.js';
import { requireRegularFile } from '../io/regular-file.js';
import { sha256Tagged } from '../formats/record-json.js';
import { snapshotDir, snapshotMember, snapshotRecordFile } from '../store/layout.js';
import { readState, statePath } from '../store/partition-state.js';
import type { VerifyProblem, VerifyRequest } from './protocol.js';

/** onProgress: bytes read, after each file (`vsnap verify`'s progress line). */
export async function verifyPartitions(req: VerifyRequest, onProgress?: (bytes: number) => void): Promise<{ problems: VerifyProblem[]; bytesRead: number }> {
  const problems: VerifyProblem[] = [];
  let bytesRead = 0;
  for (const spec of req.partitions) {
    let state: Awaited<ReturnType<typeof readState>>;
    try {
      state = await readState(req.storeDir, spec.id);
    } catch (err) {
      problems.push({ snapshot: null, partition: spec.id, file: statePath(req.storeDir, spec.id), message: (err as Error).message });
    }
    const clean = state ? state.clean : true;
    for (const snap of req.snapshots) {
      const rec = snap.partitions.find((p) => p.id === spec.id);
      const dir = snapshotDir(req.storeDir, snap.id);
      const problem = (file: string | null, message: string) => problems.push({ snapshot: snap.id, partition: spec.id, file, message });
      if (!rec) {
        problem(snapshotRecordFile(dir), `the snapshot record lists no partition ${spec.id}`);
        continue;
      }
      const psnap = snapshotMember(req.storeDir, snap.id, rec.snapshotFile);
      try {
        await requireRegularFile(psnap);
        const bytes = await fs.promises.readFile(psnap);
        bytesRead += bytes.length;
        onProgress?.(bytes.length);
        if (sha256Tagged(bytes) !== rec.snapshotChecksum) problem(psnap, `checksum ${sha256Tagged(bytes)} does not match ${rec.snapshotChecksum} recorded in snapshot.json`);
        const st = await readPartitionSnapshot(psnap);
        const want: [string, unknown, unknown][] = [
          ['volumeFingerprint', st.volumeFingerprint, req.fingerprint],
          ['snapshotId', st.snapshotId, snap.id],
          ['partitionId', st.partitionId, spec.id],
          ['length', st.length, spec.length],
          ['blockSize', st.blockSize, req.blockSize],
          ['changeLogHeaderCrc', st.changeLogHeaderCrc, rec.changeLogHeaderCrc],
          [
            'extents',
            JSON.stringify(st.extents.map((e) => [e.file, e.offset, e.length])),
            JSON.stringify(spec.extents.map((e) => [e.file, e.offset, e.length])),
          ],
        ];
        for (const [field, got, expected] of want) {
          if (got !== expected) problem(psnap, `${field} is ${JSON.stringify(got)}, the manifest and snapshot record say ${JSON.stringify(expected)}`);
        }
      } catch (err) {
        problem(psnap, (err as Error).message);
      }
      const clog = snapshotMember(req.storeDir, snap.id, rec.changeLogFile);
      let log: ChangeLog | undefined;
      try {
        await requireRegularFile(clog);
        log = await ChangeLog.open(clog, {
          expect: { snapshotId: snap.id, partitionId: spec.id, blockSize: req.blockSize, fingerprint: req.fingerprint },
          blockCount: spec.length / req.blockSize,
          cleanClose: clean,
          expectedLength: clean ? state?.logs[String(snap.id)] : undefined,
          dropTail: state?.dropTail?.includes(String(snap.id)),
          readOnly: true,
        });
        if (log.headerCrc !== rec.changeLogHeaderCrc) problem(clog, `header crc ${log.headerCrc} does not match ${rec.changeLogHeaderCrc} recorded in snapshot.json`);
        const v = await log.verify();
        bytesRead += v.bytesRead;
        onProgress?.(v.bytesRead);
        for (const p of v.problems) problem(clog, p.message);
      } catch (err) {
        problem(clog, (err as Error).message);
      } finally {
        await log?.close();
      }
    }
  }
  return { problems, bytesRead };
}
