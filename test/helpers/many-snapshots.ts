// Thousands of snapshots in seconds, for the tests of stores with very many
// snapshots: one real snapshot taken by `vsnap create` (the template, newest,
// with an empty change log: nothing written since) is copied into ids
// after it, every file rewritten through the formats modules so that each
// copy is a snapshot vsnap itself could have written (docs/formats.md):
//   - <partition>.clog: the header re-encoded with the new id (its crc changes);
//   - <partition>.psnap: re-encoded with the new id and that header crc;
//   - snapshot.json: new id and name, the psnap's size and checksum, the crc;
//   - state/<partition>.json: each new log's clean length;
//   - volume.json (`nextSnapshotId`, `snapshots` chain) and ids.json.
// Copies with empty logs read like the template. The files are written
// without fsync (a test fixture, not a store's history).
import fs from 'node:fs';
import path from 'node:path';
import { CLOG_HEADER_SIZE, decodeChangeLogHeader, encodeChangeLogHeader } from '../../src/formats/changelog.js';
import { PSNAP_KIND, readPartitionSnapshot } from '../../src/formats/psnap.js';
import { encodeRecord, readRecordSync, sha256Tagged } from '../../src/formats/record-json.js';
import { IDS_KIND, SNAPSHOT_KIND, VOLUME_KIND } from '../../src/store/store.js';
import { changeLogFile, idsFile, partitionSnapshotFile, partitionStateFile, snapshotDir, snapshotRecordFile, volumeFile } from '../../src/store/layout.js';
import { STATE_KIND, type PartitionState } from '../../src/store/partition-state.js';
import type { SnapshotRecord } from '../../src/store/store.js';

/**
 * Copy snapshot `template` (the newest, log empty) into ids template+1 ..
 * template+count, named `${prefix}<id>`. The store must not be open.
 */
export async function cloneSnapshots(storeDir: string, template: number, count: number, prefix = 'clone-'): Promise<number[]> {
  const tdir = snapshotDir(storeDir, template);
  const rec = readRecordSync<SnapshotRecord>(snapshotRecordFile(tdir), SNAPSHOT_KIND);
  const vol = readRecordSync<{ nextSnapshotId: number; snapshots: number[] } & Record<string, unknown>>(volumeFile(storeDir), VOLUME_KIND);
  if (vol.snapshots[vol.snapshots.length - 1] !== template || vol.nextSnapshotId !== template + 1) {
    throw new Error(`cloneSnapshots: snapshot ${template} must be the newest and the last id used (chain ${vol.snapshots.slice(-3)}, next ${vol.nextSnapshotId})`);
  }
  const parts = await Promise.all(
    rec.partitions.map(async (p) => {
      const clog = fs.readFileSync(changeLogFile(tdir, p.id));
      if (clog.length !== CLOG_HEADER_SIZE) throw new Error(`cloneSnapshots: the template's ${p.id} log is not empty (${clog.length} bytes)`);
      const { header } = decodeChangeLogHeader(clog, changeLogFile(tdir, p.id));
      const psnap = await readPartitionSnapshot(partitionSnapshotFile(tdir, p.id));
      const statePath = partitionStateFile(storeDir, p.id);
      const state = readRecordSync<PartitionState>(statePath, STATE_KIND);
      return { p, header, psnap, statePath, state };
    }),
  );
  const ids: number[] = [];
  for (let id = template + 1; id <= template + count; id++) {
    const dir = snapshotDir(storeDir, id);
    fs.mkdirSync(dir);
    const partitions = rec.partitions.map((p, k) => {
      const { header, psnap, state } = parts[k];
      const { bytes: clog, crc } = encodeChangeLogHeader({ ...header, snapshotId: id });
      fs.writeFileSync(changeLogFile(dir, p.id), clog);
      const ps = Buffer.from(encodeRecord(PSNAP_KIND, { ...psnap, snapshotId: id, changeLogHeaderCrc: crc }));
      fs.writeFileSync(partitionSnapshotFile(dir, p.id), ps);
      state.logs[String(id)] = CLOG_HEADER_SIZE;
      return { ...p, snapshotBytes: ps.length, snapshotChecksum: sha256Tagged(ps), changeLogHeaderCrc: crc };
    });
    fs.writeFileSync(snapshotRecordFile(dir), encodeRecord(SNAPSHOT_KIND, { ...rec, id, name: `${prefix}${id}`, partitions }));
    ids.push(id);
  }
  for (const { statePath, state } of parts) fs.writeFileSync(statePath, encodeRecord(STATE_KIND, { ...state }));
  const next = template + count + 1;
  fs.writeFileSync(volumeFile(storeDir), encodeRecord(VOLUME_KIND, { ...vol, nextSnapshotId: next, snapshots: [...vol.snapshots, ...ids] }));
  fs.writeFileSync(idsFile(storeDir), encodeRecord(IDS_KIND, { nextSnapshotId: next }));
  return ids;
}

/** The store directory of a manifest (docs/formats.md: `<dir>/.vsnap/<name>` unless the manifest names one). */
export function storeOf(manifest: string): string {
  const m = JSON.parse(fs.readFileSync(manifest, 'utf8')) as { name: string; store?: string };
  return m.store ? path.resolve(path.dirname(manifest), m.store) : path.join(path.dirname(manifest), '.vsnap', m.name);
}
