// vsnap clone create|list|reset|delete through the real binary, offline
// (store lock) and through a running server's control socket; a snapshot
// with clones is never deleted (delete exits 2 naming them, prune keeps it);
// clone create of a stale snapshot exits 3 unless --force.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { vsnap, tmpdir } from './helpers/cli.js';
import { makeFixture } from './helpers/volume-fixture.js';
import { startServe, type Server } from './serve/harness.js';

interface Listed {
  name: string;
  snapshot: { id: number; name: string };
  createdAt: string;
  usedBytes: number;
}

async function ok(args: string[], input?: Buffer): Promise<string> {
  const r = await vsnap(args, { input });
  assert.equal(r.code, 0, `vsnap ${args.join(' ')}: ${r.stderr}`);
  return r.stdout;
}

async function fails(code: number, args: string[], re: RegExp): Promise<void> {
  const r = await vsnap(args);
  assert.equal(r.code, code, `vsnap ${args.join(' ')}: exit ${r.code}, stderr: ${r.stderr}`);
  assert.match(r.stderr, re);
}

/** The same checks, whoever runs the catalogue. */
async function catalogueChecks(manifest: string, store: string): Promise<void> {
  const made = JSON.parse(await ok(['clone', 'create', manifest, 'base', 'ci-1', '--json'])) as Listed;
  assert.equal(made.name, 'ci-1');
  assert.deepEqual(made.snapshot, { id: 1, name: 'base' });
  await ok(['clone', 'create', manifest, 'second', 'ci-2']);
  await fails(2, ['clone', 'create', manifest, 'base', 'ci-1'], /a clone named "ci-1" already exists/);
  await fails(2, ['clone', 'create', manifest, 'nope', 'ci-3'], /unknown snapshot "nope"/);
  await fails(2, ['clone', 'create', manifest, 'base', 'bad+name'], /clone name: a snapshot name is 1-128/);
  await fails(2, ['clone', 'create', manifest, 'base', '1234'], /clone name/);

  const list = JSON.parse(await ok(['clone', 'list', manifest, '--json'])) as Listed[];
  assert.deepEqual(list.map((c) => [c.name, c.snapshot.name]), [['ci-1', 'base'], ['ci-2', 'second']]);
  for (const c of list) {
    // `uri` only when a server holds the volume (where the clone is served).
    assert.deepEqual(Object.keys(c).filter((k) => k !== 'uri').sort(), ['createdAt', 'name', 'snapshot', 'usedBytes']);
    assert.ok(Number.isSafeInteger(c.usedBytes) && c.usedBytes > 0, 'usedBytes counts the overlays');
  }
  const human = await ok(['clone', 'list', manifest]);
  assert.match(human, /^ci-1\t1 base\t/m);

  // A snapshot with clones is not deleted: delete exits 2 naming them, and nothing goes.
  await fails(2, ['delete', manifest, 'base'], /snapshot 1 "base" has clones \(ci-1\)/);
  await fails(2, ['delete', manifest, 'second', 'base'], /has clones/);
  const snaps = JSON.parse(await ok(['list', manifest, '--json'])) as { name: string }[];
  assert.deepEqual(snaps.map((s) => s.name), ['base', 'second', 'third']);
  // prune keeps them (as kept, with the reason), deletes the rest, and exits 0
  // (the snapshots here were named, so manual: --include-manual lets prune see them).
  const pruned = JSON.parse(await ok(['prune', manifest, '--keep-last', '0', '--include-manual', '--json'])) as { kept: { name: string; reasons: string[] }[]; deleted: { name: string }[] };
  assert.deepEqual(pruned.deleted.map((d) => d.name), ['third']);
  assert.deepEqual(pruned.kept.map((d) => d.name), ['base', 'second']);
  assert.match(pruned.kept[0].reasons.join(), /has clones \(ci-1\)/);

  await ok(['clone', 'reset', manifest, 'ci-1']);
  await fails(2, ['clone', 'reset', manifest, 'nope'], /unknown clone "nope"/);
  // One unknown name deletes nothing.
  await fails(2, ['clone', 'delete', manifest, 'ci-1', 'nope'], /unknown clone "nope"/);
  assert.deepEqual(fs.readdirSync(path.join(store, 'clones')).sort(), ['ci-1', 'ci-2']);
  await ok(['clone', 'delete', manifest, 'ci-1', 'ci-2']);
  assert.deepEqual(fs.readdirSync(path.join(store, 'clones')), []);
  assert.equal(await ok(['clone', 'list', manifest]), 'no clones\n');
  // Without clones, the snapshot goes.
  await ok(['delete', manifest, 'base']);
}

async function setup(dir: string) {
  const fx = makeFixture(dir);
  await ok(['create', fx.manifest, '--name', 'base']);
  await ok(['write', fx.manifest, '--offset', '0'], Buffer.alloc(fx.blockSize, 1));
  await ok(['create', fx.manifest, '--name', 'second']);
  await ok(['create', fx.manifest, '--name', 'third']);
  const store = (JSON.parse(await ok(['status', fx.manifest, '--json'])) as { store: string }).store;
  return { fx, store };
}

test('clone commands offline: create, list, reset, delete; snapshots with clones are kept by delete and prune', async () => {
  const t = tmpdir();
  try {
    const { fx, store } = await setup(t.dir);
    await catalogueChecks(fx.manifest, store);
    // Leftovers of an interrupted create or delete are invisible, and go at the next create.
    fs.mkdirSync(path.join(store, 'clones', 'x+new'));
    fs.mkdirSync(path.join(store, 'clones', 'y+del'));
    assert.equal(await ok(['clone', 'list', fx.manifest]), 'no clones\n');
    await ok(['clone', 'create', fx.manifest, 'second', 'z']);
    assert.deepEqual(fs.readdirSync(path.join(store, 'clones')), ['z']);
    // A clone directory without its record is damage: exit 3 naming the file.
    fs.mkdirSync(path.join(store, 'clones', 'stray'));
    await fails(3, ['clone', 'list', fx.manifest], /clones\/stray\/clone\.json: the record of clone "stray" is missing/);
    fs.rmdirSync(path.join(store, 'clones', 'stray'));
    // Private like the rest of the store.
    assert.equal(fs.statSync(path.join(store, 'clones', 'z')).mode & 0o777, 0o700);
    for (const f of fs.readdirSync(path.join(store, 'clones', 'z'))) assert.equal(fs.statSync(path.join(store, 'clones', 'z', f)).mode & 0o777, 0o600, f);
  } finally {
    t.cleanup();
  }
});

test('clone commands through a running server\'s control socket', { timeout: 120_000 }, async () => {
  const t = tmpdir();
  let srv: Server | undefined;
  try {
    const { fx, store } = await setup(t.dir);
    srv = await startServe(fx.manifest);
    await catalogueChecks(fx.manifest, store);
    // Through the server, create says where the clone is served.
    const made = JSON.parse(await ok(['clone', 'create', fx.manifest, 'second', 'served', '--json'])) as Listed & { uri?: string };
    assert.equal(made.uri, srv.exportUri('clone/served'));
    await srv.stop();
    srv = undefined;
  } finally {
    srv?.proc.kill('SIGKILL');
    t.cleanup();
  }
});

test('clone create of a stale snapshot exits 3 unless --force', async () => {
  const t = tmpdir();
  try {
    const fx = makeFixture(t.dir);
    await ok(['create', fx.manifest, '--name', 's']);
    // Another program writes into c.img (partitions p2 and p3) behind vsnap's back.
    const fd = fs.openSync(path.join(t.dir, 'c.img'), 'r+');
    fs.writeSync(fd, Buffer.from('foreign'), 0, 7, 100);
    fs.closeSync(fd);
    await fails(3, ['clone', 'create', fx.manifest, 's', 'c'], /stale.*--force/);
    assert.equal(await ok(['clone', 'list', fx.manifest]), 'no clones\n');
    await ok(['clone', 'create', fx.manifest, 's', 'c', '--force']);
    assert.deepEqual((JSON.parse(await ok(['clone', 'list', fx.manifest, '--json'])) as Listed[]).map((c) => c.name), ['c']);
  } finally {
    t.cleanup();
  }
});

test('serve --every with --keep-last never deletes a snapshot that has clones', { timeout: 120_000 }, async () => {
  const t = tmpdir();
  let srv: Server | undefined;
  try {
    const fx = makeFixture(t.dir);
    await ok(['create', fx.manifest, '--name', 'golden']);
    await ok(['clone', 'create', fx.manifest, 'golden', 'keeper']);
    srv = await startServe(fx.manifest, ['--every', '1s', '--keep-last', '1']);
    // Wait for at least two periodic snapshots to have been taken and pruned.
    for (let k = 0; k < 200 && (srv.log().match(/periodic snapshot \d+ taken/g) ?? []).length < 3; k++) await new Promise((r) => setTimeout(r, 100));
    assert.ok((srv.log().match(/periodic snapshot \d+ taken/g) ?? []).length >= 3, srv.log());
    const names = (JSON.parse(await ok(['list', fx.manifest, '--json'])) as { name: string }[]).map((s) => s.name);
    assert.equal(names[0], 'golden', `the cloned snapshot stays: ${names.join(', ')}`);
    assert.ok(names.length <= 3, `the others are pruned: ${names.join(', ')}`);
    assert.doesNotMatch(srv.log(), /periodic snapshot failed/);
    await srv.stop();
    srv = undefined;
  } finally {
    srv?.proc.kill('SIGKILL');
    t.cleanup();
  }
});
