// The two catalogues answer alike: list, show and status of one volume,
// first not served (session.ts picks the local catalogue, in this process),
// then served (it picks the remote one, over the control socket of a real
// `vsnap serve`), give the same shapes and, where nothing legitimately
// differs (pids, memory, who holds the volume), the same values.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { vsnap, tmpdir } from '../helpers/cli.js';
import { makeFixture } from '../helpers/volume-fixture.js';
import { startServe } from '../serve/harness.js';
import { withCatalogue } from '../../src/session.js';
import type { StatusReport } from '../../src/catalogue/catalogue.js';

/** Keys and value types, recursively: what "the same shape" means here. */
function shape(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(shape);
  if (v !== null && typeof v === 'object') {
    const o = v as Record<string, unknown>;
    return Object.fromEntries(Object.keys(o).sort().map((k) => [k, shape(o[k])]));
  }
  return v === null ? 'null' : typeof v;
}

async function answers(manifest: string) {
  return {
    list: await withCatalogue(manifest, 'list', (c) => c.list({})),
    latest: await withCatalogue(manifest, 'show', (c) => c.show({ ref: 'latest' })),
    first: await withCatalogue(manifest, 'show', (c) => c.show({ ref: 'first' })),
    status: await withCatalogue(manifest, 'status', (c) => c.status({})),
  };
}

/** The status without what depends on the process serving it (workers are listed in start order, which varies). */
function stable(s: StatusReport) {
  return {
    ...s,
    heldBy: null,
    partitions: s.partitions.map((p) => ({ ...p, pid: 0 })),
    workers: s.workers.map((w) => ({ ...w, pid: 0, rss: 0 })).sort((a, b) => a.worker - b.worker),
    // Free space and the growth rate change with time and other writers on the file system.
    space: { ...s.space, freeBytes: 0, recentBytesPerHour: 0, warning: null },
  };
}

test('local and remote catalogues give the same list, show and status', async () => {
  const t = tmpdir();
  const fx = makeFixture(t.dir);
  try {
    const step = async (args: string[], input?: Buffer) => {
      const r = await vsnap(args, { input });
      assert.equal(r.code, 0, `${args.join(' ')}: ${r.stderr}`);
    };
    await step(['create', fx.manifest, '--name', 'first']);
    await step(['write', fx.manifest, '--offset', '0'], Buffer.alloc(3 * fx.blockSize, 7));
    await step(['create', fx.manifest, '--name', 'second', '--expires', '1d']);
    await step(['write', fx.manifest, '--offset', String(fx.size - fx.blockSize)], Buffer.alloc(fx.blockSize, 9));

    const local = await answers(fx.manifest);
    assert.equal(local.list.length, 2);
    assert.ok(local.first.changedBytes >= 3 * fx.blockSize, 'the writes after "first" are counted');
    assert.equal(local.status.heldBy, null, 'not served: the local catalogue answered');

    const srv = await startServe(fx.manifest);
    let remote: Awaited<ReturnType<typeof answers>>;
    try {
      remote = await answers(fx.manifest);
    } finally {
      await srv.stop();
    }
    assert.equal(remote.status.heldBy?.pid, srv.proc.pid, 'served: the server answered');
    assert.equal(remote.status.heldBy?.command, 'serve');

    assert.deepEqual(shape(remote.list), shape(local.list));
    assert.deepEqual(remote.list, local.list);
    assert.deepEqual(remote.latest, local.latest);
    assert.deepEqual(remote.first, local.first);
    assert.deepEqual(shape(stable(remote.status)), shape(stable(local.status)));
    assert.deepEqual(shape({ ...remote.status, heldBy: null }), shape(local.status));
    assert.deepEqual(stable(remote.status), stable(local.status));
    for (const w of remote.status.workers) assert.ok(w.pid > 0 && w.rss > 0, 'served workers report pid and memory');
  } finally {
    t.cleanup();
  }
});
