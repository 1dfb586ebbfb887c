// The worker protocol over one byte stream (design §11: workers on other
// hosts behind ssh): a real worker process started with `--stdio` speaks the
// same typed control messages and data frames over its stdin/stdout as a
// forked one does over IPC and its data pipe.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { tmpdir } from '../helpers/cli.js';
import { WorkerHandle, WORKER_MAIN } from '../../src/coordinator/worker-handle.js';
import { spawnStdioWorker } from '../../src/transport/process.js';
import { DataOp, type ControlRequestWithId, type WorkerMessage } from '../../src/worker/protocol.js';

test('a worker started with --stdio serves control requests and data frames over its stdin/stdout', async () => {
  const t = tmpdir();
  try {
    const bs = 4096;
    const img = path.join(t.dir, 'a.img');
    const initial = Buffer.alloc(16 * bs, 0x5a);
    fs.writeFileSync(img, initial);
    const store = path.join(t.dir, 'store');
    fs.mkdirSync(path.join(store, 'state'), { recursive: true });
    const proc = spawnStdioWorker<ControlRequestWithId, WorkerMessage>(process.execPath, [WORKER_MAIN, '--stdio']);
    const h = await WorkerHandle.over(0, ['p0'], proc);
    assert.equal(h.pid, proc.pid);
    const opened = await h.control({
      t: 'open',
      storeDir: store,
      fingerprint: 'f'.repeat(64),
      blockSize: bs,
      worker: 0,
      partitions: [{ index: 0, id: 'p0', length: 8 * bs, extents: [{ file: 'a.img', path: img, offset: 4 * bs, length: 8 * bs }] }],
      snapshots: [],
      force: false,
      stale: [],
    });
    assert.equal(opened.pid, proc.pid, 'the open reply is typed { pid }');
    // A write across several frames' worth of bytes, then a read back; the extent starts 4 blocks into the file.
    const data = Buffer.alloc(3 * bs + 512);
    for (let i = 0; i < data.length; i++) data[i] = (i * 7 + 3) & 0xff;
    const w = await Promise.all([
      h.request({ op: DataOp.Write, flags: 0, partition: 0, view: 0, offset: bs + 512, length: data.length, payload: data }),
      h.control({ t: 'status' }),
    ]);
    assert.equal(w[1].partitions[0].id, 'p0', 'a control reply interleaved with data frames arrives typed');
    const back = await h.request({ op: DataOp.Read, flags: 0, partition: 0, view: 0, offset: bs + 512, length: data.length });
    assert.ok(back && back.equals(data), 'read back what was written');
    const expected = Buffer.from(initial);
    data.copy(expected, 5 * bs + 512);
    assert.ok(fs.readFileSync(img).equals(expected), 'the backing file holds the write at the extent offset, nothing else changed');
    // An error travels back as a typed error frame.
    await assert.rejects(h.request({ op: DataOp.Read, flags: 0, partition: 0, view: 7, offset: 0, length: bs }), /snapshot 7 does not exist/);
    await h.close();
    assert.equal(h.alive, false, 'close ends the worker');
  } finally {
    t.cleanup();
  }
});
