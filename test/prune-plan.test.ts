// The retention planner on crafted timestamps (local time, so the tests build
// dates with local-time constructors and hold in any TZ).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { planPrune, isoWeek, type PrunableSnapshot } from '../src/prune/plan.js';

const at = (y: number, mo: number, d: number, h = 0, mi = 0) => new Date(y, mo - 1, d, h, mi).toISOString();
function snaps(dates: string[], expires: (string | null)[] = []): PrunableSnapshot[] {
  return dates.map((createdAt, i) => ({ id: i + 1, name: `s${i + 1}`, createdAt, expiresAt: expires[i] ?? null }));
}
const ids = (xs: { id: number }[]) => xs.map((x) => x.id);

test('no rules and no expiry keeps everything', () => {
  const p = planPrune(snaps([at(2026, 1, 1), at(2026, 1, 2)]), {}, new Date(2026, 5, 1));
  assert.deepEqual(ids(p.keep), [1, 2]);
  assert.deepEqual(p.delete, []);
});

test('keep-last keeps the N newest', () => {
  const p = planPrune(snaps([at(2026, 1, 1), at(2026, 1, 2), at(2026, 1, 3), at(2026, 1, 4)]), { last: 2 }, new Date(2026, 5, 1));
  assert.deepEqual(ids(p.keep), [3, 4]);
  assert.deepEqual(ids(p.delete), [1, 2]);
});

test('keep-hourly keeps the newest of each of the last N hours with snapshots', () => {
  const s = snaps([at(2026, 3, 1, 10, 5), at(2026, 3, 1, 10, 45), at(2026, 3, 1, 11, 15), at(2026, 3, 1, 13, 0), at(2026, 3, 1, 13, 30)]);
  const p = planPrune(s, { hourly: 2 }, new Date(2026, 3, 2));
  assert.deepEqual(ids(p.keep), [3, 5]);
  const p3 = planPrune(s, { hourly: 3 }, new Date(2026, 3, 2));
  assert.deepEqual(ids(p3.keep), [2, 3, 5]);
});

test('keep-daily buckets by local calendar day, across midnight', () => {
  const s = snaps([at(2026, 3, 1, 23, 59), at(2026, 3, 2, 0, 1), at(2026, 3, 2, 12, 0), at(2026, 3, 3, 8, 0)]);
  const p = planPrune(s, { daily: 7 }, new Date(2026, 4, 1));
  assert.deepEqual(ids(p.keep), [1, 3, 4]);
  assert.deepEqual(ids(p.delete), [2]);
});

test('keep-weekly uses ISO weeks (Monday start; the Thursday decides the year)', () => {
  assert.equal(isoWeek(new Date(2026, 0, 1)), '2026-W01'); // Thursday
  assert.equal(isoWeek(new Date(2027, 0, 1)), '2026-W53'); // Friday, in 2026's last week
  assert.equal(isoWeek(new Date(2024, 11, 30)), '2025-W01'); // Monday
  // Sunday and the next Monday fall in different weeks.
  const s = snaps([at(2026, 3, 1, 12), at(2026, 3, 2, 12), at(2026, 3, 3, 12)]);
  const p = planPrune(s, { weekly: 5 }, new Date(2026, 5, 1));
  assert.deepEqual(ids(p.keep), [1, 3]);
});

test('monthly and yearly', () => {
  const s = snaps([at(2024, 5, 1), at(2025, 1, 10), at(2025, 1, 20), at(2025, 2, 1), at(2026, 1, 1)]);
  assert.deepEqual(ids(planPrune(s, { monthly: 2 }, new Date(2027, 0, 1)).keep), [4, 5]);
  assert.deepEqual(ids(planPrune(s, { yearly: 10 }, new Date(2027, 0, 1)).keep), [1, 4, 5]);
});

test('a snapshot any rule keeps stays; reasons name every rule', () => {
  const s = snaps([at(2026, 1, 1), at(2026, 2, 1), at(2026, 2, 2)]);
  const p = planPrune(s, { last: 1, monthly: 2 }, new Date(2026, 5, 1));
  assert.deepEqual(ids(p.keep), [1, 3]);
  const newest = p.keep.find((k) => k.id === 3)!;
  assert.deepEqual(newest.reasons, ['last 1', 'monthly 2026-02']);
});

test('expired snapshots are deleted even with no flags, and even if a rule would keep them', () => {
  const now = new Date(2026, 5, 1, 12);
  const s = snaps([at(2026, 5, 1), at(2026, 5, 2), at(2026, 5, 3)], [null, new Date(2026, 5, 1, 11).toISOString(), new Date(2026, 5, 1, 13).toISOString()]);
  const p = planPrune(s, {}, now);
  assert.deepEqual(ids(p.delete), [2]);
  assert.deepEqual(ids(p.keep), [1, 3]);
  const q = planPrune(s, { last: 1 }, now);
  // keep-last counts only unexpired snapshots: the newest unexpired is 3.
  assert.deepEqual(ids(q.keep), [3]);
  assert.deepEqual(ids(q.delete), [1, 2]);
});

test('keep-last 0 with no other rule deletes everything not expired too', () => {
  const p = planPrune(snaps([at(2026, 1, 1)]), { last: 0 }, new Date(2026, 5, 1));
  assert.deepEqual(ids(p.delete), [1]);
});

test('a clock stepped back: keep-last counts by id, a bucket stands by its greatest id, the plan lists in id order', () => {
  // Ids are the creation order; snapshot 4 was taken after the clock went back two hours.
  const s = snaps([at(2026, 3, 1, 10, 0), at(2026, 3, 1, 11, 0), at(2026, 3, 1, 12, 0), at(2026, 3, 1, 10, 30)]);
  const now = new Date(2026, 3, 2);
  assert.deepEqual(ids(planPrune(s, { last: 1 }, now).keep), [4]);
  assert.deepEqual(ids(planPrune(s, { last: 2 }, now).keep), [3, 4]);
  // Hours by time; hour 10 holds 1 and 4, and 4 (the later created) stands for it.
  const h = planPrune(s, { hourly: 3 }, now);
  assert.deepEqual(ids(h.keep), [2, 3, 4]);
  assert.deepEqual(ids(h.delete), [1]);
  assert.deepEqual(h.keep.find((d) => d.id === 4)!.reasons, [`hourly ${new Date(2026, 2, 1, 10).getFullYear()}-03-01 10h`]);
  // Deleted and kept are oldest first by id, not by time.
  assert.deepEqual(ids(planPrune(s, { last: 1 }, now).delete), [1, 2, 3]);
  // Equal times: the greater id stands for the bucket.
  const tie = snaps([at(2026, 3, 1, 9, 0), at(2026, 3, 1, 9, 0)]);
  assert.deepEqual(ids(planPrune(tie, { daily: 1 }, now).keep), [2]);
});
