// A read of a snapshot walks one list of change logs from its start to its
// end (issue 9, defect 4a): a delete of an older snapshot during the read
// must not shift it onto another snapshot's logs, and a write that copies a
// block into the newest log while the read is at the source must still be
// seen by the read's re-check. Deterministic: the source read is held until
// the delete and the write are done.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { tmpdir } from '../helpers/cli.js';
import { PartitionEngine } from '../../src/worker/partition.js';
import { HandleCache } from '../../src/worker/extent-io.js';
import { WriteGate } from '../../src/gate.js';
import { ChangeLog } from '../../src/formats/changelog.js';

const BS = 4096;
const BLOCKS = 4;
const FP = 'ab'.repeat(32);

async function engineWithLogs(dir: string, ids: number[], content = Buffer.alloc(BS * BLOCKS)) {
  const file = path.join(dir, 'disk.img');
  fs.writeFileSync(file, content);
  const handles = new HandleCache(true);
  const engine = new PartitionEngine(
    { index: 0, id: 'p', length: BS * BLOCKS, extents: [{ file: 'disk.img', path: file, offset: 0, length: BS * BLOCKS }] },
    { storeDir: dir, fingerprint: FP, blockSize: BS, worker: 0, gate: new WriteGate(), handles, force: false, mutating: async () => {} },
  );
  const logs = [];
  for (const id of ids) {
    const log = await ChangeLog.create(path.join(dir, `${id}.clog`), { snapshotId: id, partitionId: 'p', blockSize: BS, fingerprint: FP, createdAtMs: 0 }, { blockCount: BLOCKS });
    logs.push({ id, log });
  }
  engine.logs = logs;
  return { engine, file, handles };
}

/** Make the engine's next source read wait until the returned function is called (later reads go straight through). */
function holdFirstSourceRead(engine: { io: { read(off: number, len: number, into: Buffer, at: number): Promise<void> } }): () => void {
  const realRead = engine.io.read.bind(engine.io);
  let release!: () => void;
  const held = new Promise<void>((r) => (release = r));
  let holding = true;
  engine.io.read = async (off: number, len: number, into: Buffer, at: number) => {
    if (holding) {
      holding = false;
      await held;
    }
    return realRead(off, len, into, at);
  };
  return release;
}

test('a snapshot read keeps its list of logs while an older snapshot is deleted and the block is overwritten', async (t) => {
  const { dir, cleanup } = tmpdir('vsnap-view-');
  t.after(cleanup);
  // Live block 0 holds Z; snapshot 1's log holds an older X for it; 2 and 3 have nothing:
  // snapshot 3 (the newest) reads block 0 from the source, Z.
  const Z = Buffer.alloc(BS, 0x5a);
  const { engine, handles } = await engineWithLogs(dir, [1, 2, 3], Buffer.concat([Z, Buffer.alloc(BS * (BLOCKS - 1))]));
  t.after(() => handles.closeAll());
  await engine.logs[0].log.appendBatch([{ block: 0, data: Buffer.alloc(BS, 0x58) }]);

  // Hold the snapshot read's source read until the delete and the write are done.
  const release = holdFirstSourceRead(engine);
  const reading = engine.read(3, 0, BS);
  await new Promise((r) => setImmediate(r));
  await engine.deleteSnapshot(1);
  // The write copies Z into snapshot 3's log, then writes Y in place.
  await engine.write(0, Buffer.alloc(BS, 0x59), false);
  release();
  const got = await reading;
  assert.equal(got[0], 0x5a, `snapshot 3 read 0x${got[0].toString(16)}, expected its own Z (0x5a)`);
  assert.ok(got.equals(Z));
  // And afterwards, without any race.
  assert.ok((await engine.read(3, 0, BS)).equals(Z));
  assert.ok((await engine.read(2, 0, BS)).equals(Z), 'snapshot 2 (nothing logged) reads what snapshot 3 does');
  await engine.closeLogs();
});

test('a log removed by a delete stays readable until the reads that took it end', async (t) => {
  const { dir, cleanup } = tmpdir('vsnap-view-');
  t.after(cleanup);
  const Z = Buffer.alloc(BS, 0x5a);
  const { engine, handles } = await engineWithLogs(dir, [1, 2], Buffer.concat([Z, Buffer.alloc(BS * (BLOCKS - 1))]));
  t.after(() => handles.closeAll());
  // Snapshot 2's read of block 0 goes to the source; hold it there.
  const release = holdFirstSourceRead(engine);
  const reading = engine.read(2, 0, BS);
  await new Promise((r) => setImmediate(r));
  // A write copies Z into log 2 and writes Y in place; then snapshot 2 is
  // deleted (its log merged into 1 and dropped). The held read's re-check
  // finds block 0 in log 2, which must still be open.
  await engine.write(0, Buffer.alloc(BS, 0x59), false);
  await engine.deleteSnapshot(2);
  release();
  const got = await reading;
  assert.ok(got.equals(Z), `snapshot 2 read 0x${got[0].toString(16)}, expected Z`);
  assert.ok((await engine.read(1, 0, BS)).equals(Z), 'snapshot 1 reads the merged Z');
  await engine.closeLogs();
});
