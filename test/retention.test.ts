// Retention that never surprises (issue 10 item 3), through the real binary:
// the README's cron line keeps a snapshot a person named, held snapshots
// survive prune and delete until released, and list says which is which.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { vsnap, tmpdir } from './helpers/cli.js';
import { makeFixture, type Fixture } from './helpers/volume-fixture.js';
import { storeOf } from './helpers/many-snapshots.js';
import { decodeRecord, encodeRecord } from '../src/formats/record-json.js';
import { SNAPSHOT_KIND } from '../src/store/store.js';
import { snapshotDir, snapshotRecordFile } from '../src/store/layout.js';
import { BUCKETS } from '../src/prune/plan.js';

interface Listed {
  id: number;
  name: string;
  createdAt: string;
  manual: boolean;
  held: boolean;
}

async function create(fx: Fixture, args: string[] = []): Promise<{ id: number; name: string }> {
  const r = await vsnap(['create', fx.manifest, ...args, '--json']);
  assert.equal(r.code, 0, r.stderr);
  return JSON.parse(r.stdout) as { id: number; name: string };
}

async function list(fx: Fixture): Promise<Listed[]> {
  const r = await vsnap(['list', fx.manifest, '--json']);
  assert.equal(r.code, 0, r.stderr);
  return JSON.parse(r.stdout) as Listed[];
}

test("the README's cron prune (--keep-hourly 24) keeps a snapshot named before-upgrade; --include-manual lets it go; output only when something goes", async () => {
  const t = tmpdir();
  const fx = makeFixture(t.dir);
  try {
    const manual = await create(fx, ['--name', 'before-upgrade']);
    const autos = [];
    for (let i = 0; i < 3; i++) autos.push(await create(fx));
    assert.ok(autos.every((a) => /^\d{8}T\d{6}Z(-\d+)?$/.test(a.name)), 'automatic snapshots get the default name');
    // Which automatic snapshots the hourly rule keeps: the newest of each local hour (the test may straddle one).
    const all = await list(fx);
    const newestOfHour = new Map<string, number>();
    for (const s of all.filter((x) => !x.manual)) newestOfHour.set(BUCKETS.hourly(new Date(s.createdAt)), s.id);
    const expectDeleted = all.filter((s) => !s.manual && ![...newestOfHour.values()].includes(s.id));
    assert.ok(expectDeleted.length >= 1);

    const dry = await vsnap(['prune', fx.manifest, '--keep-hourly', '24', '--dry-run']);
    assert.equal(dry.code, 0, dry.stderr);
    assert.deepEqual(dry.stdout.trim().split('\n'), expectDeleted.map((s) => `would delete ${s.id} ${s.name} (no rule keeps it)`));
    const run = await vsnap(['prune', fx.manifest, '--keep-hourly', '24']);
    assert.equal(run.code, 0, run.stderr);
    assert.deepEqual(run.stdout.trim().split('\n'), expectDeleted.map((s) => `deleted ${s.id} ${s.name} (no rule keeps it)`));
    assert.match(run.stderr, /1 manual left alone/);
    const left = await list(fx);
    assert.ok(left.some((s) => s.id === manual.id && s.name === 'before-upgrade'), 'the manual snapshot survives the cron line');

    // Nothing left to delete: nothing on stdout, so cron mails nothing (the summary is stderr, silenced by -q).
    const again = await vsnap(['prune', fx.manifest, '--keep-hourly', '24']);
    assert.equal(again.code, 0, again.stderr);
    assert.equal(again.stdout, '');
    assert.match(again.stderr, /kept, 0 deleted/);

    // --include-manual: the rules consider it like any other; keep-last 1 keeps only the newest.
    const incl = await vsnap(['prune', fx.manifest, '--keep-last', '1', '--include-manual', '--json']);
    assert.equal(incl.code, 0, incl.stderr);
    const j = JSON.parse(incl.stdout) as { deleted: { id: number; manual: boolean }[] };
    assert.ok(j.deleted.some((d) => d.id === manual.id && d.manual), JSON.stringify(j));
    assert.deepEqual((await list(fx)).map((s) => s.id), [autos[2].id]);
  } finally {
    t.cleanup();
  }
});

test('held snapshots survive prune (also --include-manual, also expired) and delete until released', async () => {
  const t = tmpdir();
  const fx = makeFixture(t.dir);
  try {
    const m1 = await create(fx, ['--name', 'bootable']);
    const a1 = await create(fx);
    const a2 = await create(fx);
    const e1 = await create(fx, ['--expires', '1s']);
    const h = await vsnap(['hold', fx.manifest, 'bootable', String(a1.id), String(e1.id), '--json']);
    assert.equal(h.code, 0, h.stderr);
    assert.deepEqual(JSON.parse(h.stdout), { held: [m1, a1, e1].map(({ id, name }) => ({ id, name })), alreadyHeld: [] });
    // Holding twice changes nothing.
    const holdsFile = path.join(storeOf(fx.manifest), 'holds.json');
    const before = fs.readFileSync(holdsFile, 'utf8');
    const h2 = await vsnap(['hold', fx.manifest, 'bootable']);
    assert.equal(h2.code, 0, h2.stderr);
    assert.match(h2.stderr, /snapshot \d+ "bootable" was already held/);
    assert.equal(fs.readFileSync(holdsFile, 'utf8'), before, 'holds.json is unchanged by a second hold');
    // An unknown name among the refs holds nothing.
    const typo = await vsnap(['hold', fx.manifest, String(a2.id), 'no-such']);
    assert.equal(typo.code, 2);
    assert.match(typo.stderr, /unknown snapshot "no-such"/);
    assert.equal((await list(fx)).find((s) => s.id === a2.id)?.held, false);

    await new Promise((r) => setTimeout(r, 1200)); // e1 expires
    const p = await vsnap(['prune', fx.manifest, '--keep-last', '0', '--include-manual', '--json']);
    assert.equal(p.code, 0, p.stderr);
    const pj = JSON.parse(p.stdout) as { kept: { id: number; protectedBy: string[]; reasons: string[] }[]; deleted: { id: number }[] };
    assert.deepEqual(pj.deleted.map((d) => d.id), [a2.id]);
    assert.deepEqual(pj.kept.map((k) => k.id), [m1.id, a1.id, e1.id]);
    for (const k of pj.kept) assert.deepEqual(k.protectedBy, ['held']);
    assert.match(pj.kept[2].reasons.join('; '), /^held; would go: expired at /);

    // Human output names what the hold saved.
    await create(fx); // something for the rule to delete
    const hp = await vsnap(['prune', fx.manifest, '--keep-last', '0', '--include-manual']);
    assert.equal(hp.code, 0, hp.stderr);
    assert.match(hp.stderr, new RegExp(`kept ${a1.id} ${a1.name}: held; would go: no rule keeps it \\(vsnap release frees it\\)`));
    assert.match(hp.stdout, /^deleted \d+ /);

    // delete of a held snapshot: exit 2, naming it and the way out; with others named, nothing goes.
    const ids = (await list(fx)).map((s) => s.id);
    const d = await vsnap(['delete', fx.manifest, 'bootable']);
    assert.equal(d.code, 2);
    assert.match(d.stderr, new RegExp(`snapshot ${m1.id} "bootable" is held; \`vsnap release ${fx.manifest.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')} bootable\` frees it \\(nothing was deleted\\)`));
    const d2 = await vsnap(['delete', fx.manifest, String(e1.id), String(a1.id)]);
    assert.equal(d2.code, 2);
    assert.match(d2.stderr, /snapshots .* are held/);
    assert.deepEqual((await list(fx)).map((s) => s.id), ids, 'a delete that names a held snapshot deletes nothing');

    // release; releasing what is not held says so and exits 0.
    const r = await vsnap(['release', fx.manifest, 'bootable', String(e1.id), '--json']);
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(JSON.parse(r.stdout), { released: [m1, e1].map(({ id, name }) => ({ id, name })), notHeld: [] });
    const r2 = await vsnap(['release', fx.manifest, 'bootable']);
    assert.equal(r2.code, 0, r2.stderr);
    assert.match(r2.stderr, /snapshot \d+ "bootable" was not held: nothing to release/);
    // Freed: the expired one goes at the next prune, the manual one with delete.
    const p2 = JSON.parse((await vsnap(['prune', fx.manifest, '--json'])).stdout) as { deleted: { id: number }[] };
    assert.deepEqual(p2.deleted.map((x) => x.id), [e1.id]);
    assert.equal((await vsnap(['delete', fx.manifest, 'bootable'])).code, 0);
    assert.deepEqual((await list(fx)).map((s) => [s.id, s.held]), [[a1.id, true]]);
  } finally {
    t.cleanup();
  }
});

test('list shows kind and held (human and JSON); records of older versions: manual unless the name has the default form', async () => {
  const t = tmpdir();
  const fx = makeFixture(t.dir);
  try {
    const m = await create(fx, ['--name', 'golden']);
    const a = await create(fx);
    assert.equal((await vsnap(['hold', fx.manifest, String(a.id)])).code, 0);
    const j = await list(fx);
    assert.deepEqual(j.map((s) => [s.id, s.manual, s.held]), [[m.id, true, false], [a.id, false, true]]);
    for (const s of j) assert.deepEqual(Object.keys(s).slice(0, 4), ['id', 'name', 'createdAt', 'changedBytes'], 'the stable keys of design §8 come first');
    const human = await vsnap(['list', fx.manifest]);
    assert.equal(human.code, 0, human.stderr);
    const rows = human.stdout.trim().split('\n').map((l) => l.split('\t'));
    assert.deepEqual(rows[0].slice(-2), ['kind', 'held']);
    assert.deepEqual(rows.slice(1).map((r) => r.slice(-2)), [['manual', '-'], ['auto', 'held']]);
    const show = JSON.parse((await vsnap(['show', fx.manifest, String(a.id), '--json'])).stdout) as Listed;
    assert.equal(show.manual, false);
    assert.equal(show.held, true);

    // Older records have no `manual`: rewrite both without it, as an older vsnap wrote them.
    for (const id of [m.id, a.id]) {
      const file = snapshotRecordFile(snapshotDir(storeOf(fx.manifest), id));
      const rec = decodeRecord<Record<string, unknown>>(SNAPSHOT_KIND, fs.readFileSync(file, 'utf8'), file);
      delete rec.manual;
      fs.writeFileSync(file, encodeRecord(SNAPSHOT_KIND, rec));
    }
    assert.deepEqual((await list(fx)).map((s) => [s.name, s.manual]), [['golden', true], [a.name, false]]);
    // And prune treats them so: the default-named one goes, the named one stays.
    assert.equal((await vsnap(['release', fx.manifest, String(a.id)])).code, 0);
    const p = JSON.parse((await vsnap(['prune', fx.manifest, '--keep-last', '0', '--json'])).stdout) as { deleted: { id: number }[] };
    assert.deepEqual(p.deleted.map((d) => d.id), [a.id]);
  } finally {
    t.cleanup();
  }
});
