// The pure parts of retention and staleness, on plain objects: the prune
// planner with manual snapshots and protections, the hold planner, the
// automatic/manual rule for older records, and stale marks per file with
// accept.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { planPrune, protection, MANUAL_REASON, type PrunableSnapshot } from '../src/prune/plan.js';
import { planHold, planRelease, heldIds, type Hold } from '../src/store/holds.js';
import { isManual, isDefaultName, defaultName } from '../src/store/names.js';
import { planAccept, planStale, stalePerPartition, staleFiles, describeChange, type BackingIdentity, type BackingRecord } from '../src/store/backing.js';
import type { Volume } from '../src/manifest/layout.js';

const at = (d: number, h = 12) => new Date(2026, 2, d, h).toISOString();
const ids = (xs: { id: number }[]) => xs.map((x) => x.id);
const snap = (id: number, manual: boolean, createdAt = at(id), expiresAt: string | null = null): PrunableSnapshot => ({ id, name: `s${id}`, createdAt, expiresAt, manual });
const NOW = new Date(2026, 5, 1);

test('the rules consider automatic snapshots only: manual ones are kept and do not count', () => {
  const s = [snap(1, false), snap(2, true), snap(3, false), snap(4, true)];
  const p = planPrune(s, { last: 1 }, NOW);
  assert.deepEqual(ids(p.delete), [1]);
  assert.deepEqual(ids(p.keep), [2, 3, 4]);
  assert.deepEqual(p.keep.find((k) => k.id === 4)!.reasons, [MANUAL_REASON]);
  assert.deepEqual(p.keep.find((k) => k.id === 3)!.reasons, ['last 1'], 'the newest automatic one is "last 1", though a manual one is newer');
  const all = planPrune(s, { last: 1 }, NOW, { includeManual: true });
  assert.deepEqual(ids(all.delete), [1, 2, 3]);
  assert.equal(all.delete.find((d) => d.id === 2)!.manual, true);
});

test('an expired manual snapshot goes (the expiry was asked for); an expired held one stays', () => {
  const s = [snap(1, true, at(1), at(2)), snap(2, false, at(2), at(3)), snap(3, false)];
  const p = planPrune(s, {}, NOW, { protect: new Map([[2, ['held']]]) });
  assert.deepEqual(ids(p.delete), [1]);
  const k2 = p.keep.find((k) => k.id === 2)!;
  assert.deepEqual(k2.protectedBy, ['held']);
  assert.match(k2.reasons.join('; '), /^held; would go: expired at /);
});

test('protected snapshots are kept whatever the rules say, still count towards them, with every reason', () => {
  const s = [snap(1, false), snap(2, false), snap(3, false)];
  const protect = protection(new Map([[1, ['held']]]), new Map([[1, ['has clones ci-1']], [3, ['has clones ci-2']]]));
  const p = planPrune(s, { last: 1 }, NOW, { protect });
  assert.deepEqual(ids(p.delete), [2]);
  assert.deepEqual(p.keep.find((k) => k.id === 1)!.protectedBy, ['held', 'has clones ci-1']);
  assert.deepEqual(p.keep.find((k) => k.id === 3)!.reasons, ['has clones ci-2', 'last 1']);
  // keep-last 0 with everything protected deletes nothing.
  const all = planPrune(s, { last: 0 }, NOW, { protect: new Map(s.map((x) => [x.id, ['held']])), includeManual: true });
  assert.deepEqual(all.delete, []);
});

test('hold is idempotent, release of what is not held is reported, holds of vanished snapshots are dropped', () => {
  const existing = [{ id: 1 }, { id: 2 }, { id: 3 }];
  const holds: Hold[] = [{ id: 2, name: 'b', heldAt: '2026-01-01T00:00:00.000Z' }, { id: 9, name: 'gone', heldAt: '2026-01-01T00:00:00.000Z' }];
  const h = planHold(holds, existing, [{ id: 2, name: 'b' }, { id: 3, name: 'c' }, { id: 3, name: 'c' }], new Date('2026-02-02T00:00:00Z'));
  assert.deepEqual(h.changed, [{ id: 3, name: 'c' }]);
  assert.deepEqual(h.unchanged, [{ id: 2, name: 'b' }]);
  assert.deepEqual(h.next, [
    { id: 2, name: 'b', heldAt: '2026-01-01T00:00:00.000Z' },
    { id: 3, name: 'c', heldAt: '2026-02-02T00:00:00.000Z' },
  ]);
  assert.deepEqual([...heldIds(holds, existing)], [2]);
  const r = planRelease(h.next, existing, [{ id: 1, name: 'a' }, { id: 3, name: 'c' }]);
  assert.deepEqual(r.changed, [{ id: 3, name: 'c' }]);
  assert.deepEqual(r.unchanged, [{ id: 1, name: 'a' }]);
  assert.deepEqual(ids(r.next), [2]);
});

test('records without `manual`: automatic only for the default name form', () => {
  const now = new Date('2026-11-29T16:48:27.241Z');
  const d = defaultName(now, new Set());
  assert.equal(d, '20261129T164827Z');
  assert.ok(isDefaultName(d) && isDefaultName(defaultName(now, new Set([d]))));
  assert.equal(isManual({ name: d }), false);
  assert.equal(isManual({ name: `${d}-3` }), false);
  for (const n of ['before-upgrade', '20261129T164827', '20261129T164827Z-x', 'x20261129T164827Z', '2026-11-29T16:48:27Z']) assert.equal(isManual({ name: n }), true, n);
  assert.equal(isManual({ name: 'before-upgrade', manual: false }), false, 'the recorded field wins');
  assert.equal(isManual({ name: d, manual: true }), true);
});

// Two files; p0 on a, p1 on a and b.
const VOLUME = {
  partitions: [
    { id: 'p0', extents: [{ path: '/v/a.img' }] },
    { id: 'p1', extents: [{ path: '/v/a.img' }, { path: '/v/b.img' }] },
  ],
} as unknown as Volume;
const id = (path: string, mtimeMs: number, o: Partial<BackingIdentity> = {}): BackingIdentity => ({ path, dev: 1, ino: path.length, size: 100, mtimeMs, ctimeMs: mtimeMs, ...o });

test('a change of ctime alone is not a write; dev/ino, size and mtime are', () => {
  const a = id('/v/a.img', 1000);
  assert.equal(describeChange(a, { ...a, ctimeMs: 5000 }), undefined);
  assert.match(describeChange(a, { ...a, mtimeMs: 900 })!, /a\.img was modified outside vsnap/);
  assert.match(describeChange(a, { ...a, size: 101 })!, /changed size from 100 to 101/);
  assert.match(describeChange(a, { ...a, ino: 77 })!, /was replaced by another file/);
});

test('stale marks are kept per partition and file; accept clears one file and records it as it is now', () => {
  const prev: BackingRecord = { clean: true, files: [id('/v/a.img', 1), id('/v/b.img', 1)], stale: [] };
  const now = [id('/v/a.img', 2), id('/v/b.img', 3)];
  const stale = planStale(VOLUME, prev, now, [1, 2]);
  assert.deepEqual(
    stale.map((s) => [s.partition, s.file, s.snapshots]),
    [['p0', '/v/a.img', [1, 2]], ['p1', '/v/a.img', [1, 2]], ['p1', '/v/b.img', [1, 2]]],
  );
  // What status and the workers see: one entry per partition with every reason.
  const merged = stalePerPartition(stale);
  assert.deepEqual(merged.map((m) => m.partition), ['p0', 'p1']);
  assert.match(merged[1].reason, /a\.img .*; .*b\.img/);

  const acc = planAccept(VOLUME, { ...prev, stale }, ['/v/a.img'], now);
  assert.deepEqual(acc.cleared.map((c) => [c.partition, c.file]), [['p0', '/v/a.img'], ['p1', '/v/a.img']]);
  assert.deepEqual(acc.record.stale.map((s) => [s.partition, s.file]), [['p1', '/v/b.img']]);
  assert.deepEqual(acc.record.files, [now[0], prev.files[1]], 'only the accepted file is recorded anew');
  assert.equal(acc.record.clean, true);
  // Re-opened with the accepted record: a is not marked again; b's mark stays.
  assert.deepEqual(planStale(VOLUME, acc.record, now, [1, 2]).map((s) => [s.partition, s.file]), [['p1', '/v/b.img']]);
});

test('marks written before `file` existed: the file their reason names, else every file of the partition', () => {
  const named = { partition: 'p1', snapshots: [1], reason: '/v/b.img changed size from 1 to 2' };
  const vague = { partition: 'p1', snapshots: [1], reason: 'something else' };
  assert.deepEqual(staleFiles(VOLUME, named), ['/v/b.img']);
  assert.deepEqual(staleFiles(VOLUME, vague), ['/v/a.img', '/v/b.img']);
  const prev: BackingRecord = { clean: true, files: [], stale: [named, vague] };
  const onlyA = planAccept(VOLUME, prev, ['/v/a.img'], []);
  assert.equal(onlyA.cleared.length, 0, 'an entry on several files needs them all accepted');
  const both = planAccept(VOLUME, prev, ['/v/a.img', '/v/b.img'], []);
  assert.deepEqual(both.cleared.map((c) => c.file), ['/v/b.img', '/v/a.img, /v/b.img']);
  assert.deepEqual(both.record.stale, []);
});
