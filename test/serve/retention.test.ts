// serve --every's retention never touches manual or held snapshots (issue 10
// item 3), and hold/release work through a running server's control socket.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { vsnap, tmpdir } from '../helpers/cli.js';
import { makeFixture, type Fixture } from '../helpers/volume-fixture.js';
import { startServe } from './harness.js';

interface Listed {
  id: number;
  name: string;
  manual: boolean;
  held: boolean;
}

async function list(fx: Fixture): Promise<Listed[]> {
  const r = await vsnap(['list', fx.manifest, '--json']);
  assert.equal(r.code, 0, r.stderr);
  return JSON.parse(r.stdout) as Listed[];
}

async function create(fx: Fixture, args: string[] = []): Promise<Listed> {
  const r = await vsnap(['create', fx.manifest, ...args, '--json']);
  assert.equal(r.code, 0, r.stderr);
  return JSON.parse(r.stdout) as Listed;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

test('serve --every 1s --keep-last 2 keeps a manual "bootable" and a held snapshot; hold, release and delete go through the socket', async () => {
  const t = tmpdir();
  const fx = makeFixture(t.dir, { blockSize: 65536, scale: 1 });
  try {
    const bootable = await create(fx, ['--name', 'bootable']);
    const kept = await create(fx); // automatic, held below
    assert.equal((await vsnap(['hold', fx.manifest, String(kept.id)])).code, 0);
    const srv = await startServe(fx.manifest, ['--every', '1s', '--keep-last', '2']);
    try {
      await sleep(4500);
      let l = await list(fx);
      const periodic = l.filter((s) => s.id > kept.id);
      assert.equal(periodic.length, 2, `keep-last 2 of the automatic ones: ${JSON.stringify(l)}`);
      assert.ok(periodic.every((s) => !s.manual && !s.held));
      assert.ok(periodic[0].id >= kept.id + 3, 'older periodic snapshots were taken and pruned');
      assert.deepEqual(l.filter((s) => s.id <= kept.id).map((s) => [s.id, s.manual, s.held]), [[bootable.id, true, false], [kept.id, false, true]]);

      // Through the control socket (the lock is the server's, so nothing else could answer).
      const h = await vsnap(['hold', fx.manifest, 'bootable', '--json']);
      assert.equal(h.code, 0, h.stderr);
      assert.deepEqual(JSON.parse(h.stdout), { held: [{ id: bootable.id, name: 'bootable' }], alreadyHeld: [] });
      const d = await vsnap(['delete', fx.manifest, 'bootable']);
      assert.equal(d.code, 2);
      assert.match(d.stderr, /"bootable" is held; `vsnap release .* bootable` frees it/);
      const r = await vsnap(['release', fx.manifest, String(kept.id), '--json']);
      assert.equal(r.code, 0, r.stderr);
      assert.deepEqual(JSON.parse(r.stdout), { released: [{ id: kept.id, name: kept.name }], notHeld: [] });
      // Released, the old automatic snapshot goes at the next periodic prune; the held manual one stays.
      await sleep(2500);
      l = await list(fx);
      assert.equal(l.some((s) => s.id === kept.id), false, `released snapshot pruned: ${JSON.stringify(l)}`);
      assert.ok(l.some((s) => s.id === bootable.id && s.held));
    } finally {
      await srv.stop();
    }
    // The holds were recorded by the server in the store: they outlive it.
    assert.ok((await list(fx)).find((s) => s.id === bootable.id)?.held);
  } finally {
    t.cleanup();
  }
});

test('serve --every --include-manual prunes manual snapshots too, never a held one', async () => {
  const t = tmpdir();
  const fx = makeFixture(t.dir, { blockSize: 65536, scale: 1 });
  try {
    const held = await create(fx, ['--name', 'bootable']);
    const loose = await create(fx, ['--name', 'scratch']);
    assert.equal((await vsnap(['hold', fx.manifest, 'bootable'])).code, 0);
    const srv = await startServe(fx.manifest, ['--every', '1s', '--keep-last', '1', '--include-manual']);
    try {
      await sleep(3500);
      const l = await list(fx);
      assert.equal(l.some((s) => s.id === loose.id), false, `scratch pruned with --include-manual: ${JSON.stringify(l)}`);
      assert.ok(l.some((s) => s.id === held.id && s.held), 'the held one stays');
      assert.equal(l.filter((s) => s.id > loose.id).length, 1, 'keep-last 1');
    } finally {
      await srv.stop();
    }
  } finally {
    t.cleanup();
  }
});
