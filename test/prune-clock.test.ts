// prune after the clock stepped back, through the real binary: the newest
// snapshot (greatest id) is the one `--keep-last` keeps, whatever createdAt
// says; hourly buckets go by time but each keeps its greatest id. The
// createdAt of the newest snapshot is rewritten (a well-formed record) to
// an hour before the others, as a clock stepped back would have written it.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { vsnap, vsnapOk as ok, storeOf, tmpdir } from './helpers/cli.js';
import { makeFixture } from './helpers/volume-fixture.js';
import { writeRecord } from '../src/formats/record-json.js';

/** Rewrite snapshot `id`'s createdAt (snapshot.json is a checksummed record: re-encoded whole). */
async function setCreatedAt(store: string, id: number, createdAt: string): Promise<void> {
  const file = path.join(store, 'snapshots', String(id).padStart(8, '0'), 'snapshot.json');
  const fields = JSON.parse(fs.readFileSync(file, 'utf8')) as Record<string, unknown>;
  for (const k of ['format', 'version', 'checksum']) delete fields[k];
  await writeRecord(file, 'vsnap-snapshot', { ...fields, createdAt });
}

interface Pruned {
  kept: { id: number; reasons: string[] }[];
  deleted: { id: number }[];
}

test('prune --keep-last keeps the newest snapshot by id after the clock stepped back; hourly keeps each hour\'s greatest id', async () => {
  const t = tmpdir();
  try {
    const fx = makeFixture(t.dir);
    for (let i = 0; i < 4; i++) await ok(['create', fx.manifest]);
    const store = await storeOf(fx.manifest);
    const hour = new Date();
    hour.setMinutes(0, 0, 0);
    // 1, 2, 3 an hour apart; 4, the newest, at 1's hour (the clock went back).
    await setCreatedAt(store, 1, new Date(hour.getTime() - 3 * 3600_000 + 60_000).toISOString());
    await setCreatedAt(store, 2, new Date(hour.getTime() - 2 * 3600_000).toISOString());
    await setCreatedAt(store, 3, new Date(hour.getTime() - 3600_000).toISOString());
    await setCreatedAt(store, 4, new Date(hour.getTime() - 3 * 3600_000).toISOString());
    const listed = JSON.parse(await ok(['list', fx.manifest, '--json'])) as { id: number; createdAt: string }[];
    assert.ok(Date.parse(listed.find((s) => s.id === 4)!.createdAt) < Date.parse(listed.find((s) => s.id === 1)!.createdAt), 'the fixture has the clock going back');

    const dry = JSON.parse(await ok(['prune', fx.manifest, '--keep-last', '1', '--dry-run', '--json'])) as Pruned;
    assert.deepEqual(dry.kept.map((k) => k.id), [4]);
    assert.deepEqual(dry.deleted.map((k) => k.id), [1, 2, 3]);
    // The most recent hour is the one holding the greatest id: --keep-hourly 1
    // keeps 4, the snapshot just made, not 3 (whose hour is later by the clock).
    const one = JSON.parse(await ok(['prune', fx.manifest, '--keep-hourly', '1', '--dry-run', '--json'])) as Pruned;
    assert.deepEqual(one.kept.map((k) => k.id), [4]);
    assert.deepEqual(one.deleted.map((k) => k.id), [1, 2, 3]);
    // Hours by time: three hours hold snapshots; the oldest hour holds 1 and 4, and 4 stands for it.
    const hourly = JSON.parse(await ok(['prune', fx.manifest, '--keep-hourly', '3', '--json'])) as Pruned;
    assert.deepEqual(hourly.kept.map((k) => k.id), [2, 3, 4]);
    assert.deepEqual(hourly.deleted.map((k) => k.id), [1]);
    const last = JSON.parse(await ok(['prune', fx.manifest, '--keep-last', '1', '--json'])) as Pruned;
    assert.deepEqual(last.deleted.map((k) => k.id), [2, 3]);
    assert.deepEqual((JSON.parse(await ok(['list', fx.manifest, '--json'])) as { id: number }[]).map((s) => s.id), [4]);
  } finally {
    t.cleanup();
  }
});
