// The retention planner (pure): which snapshots a prune keeps and deletes.
//
// Vocabulary and rules as restic and sanoid use them:
//   --keep-last N      the N newest snapshots (by id: the order they were
//                      created in, whatever the clock said);
//   --keep-hourly N    the newest snapshot of each of the N most recent hours
//                      that have snapshots (likewise daily, weekly, monthly,
//                      yearly); buckets are in local time (the TZ of the
//                      process), weeks are ISO weeks starting on Monday; a
//                      bucket's snapshot is its greatest id, and the most
//                      recent buckets are those with the greatest ids.
// A snapshot any rule keeps stays. Expiry (create --expires) wins over every
// rule: an expired snapshot is always deleted, so CI snapshots cannot pile up
// behind a keep-last. With no keep rule at all, only expired snapshots go.
//
// Retention never surprises (design §5 "automatic and manual"):
// - the rules consider automatic snapshots only (created without --name);
//   manual ones are kept and do not count towards any rule, unless
//   includeManual. An expiry is an explicit request, so a manual snapshot
//   created with --expires still goes when it expires.
// - protected snapshots (held; the caller may add other reasons, such as
//   "has clones") are kept whatever the rules or expiry say, with the
//   reasons reported. They still count towards the rules: a held snapshot
//   that is the newest of its hour is that hour's snapshot.

export interface PrunableSnapshot {
  id: number;
  name: string;
  createdAt: string;
  expiresAt: string | null;
  /** Created with --name; absent counts as automatic (callers derive old records with store/names isManual). */
  manual?: boolean;
}

/** The reason a manual snapshot is kept when the rules leave it alone. */
export const MANUAL_REASON = 'manual (--include-manual lets the rules consider it)';
/** Prefix of the reason a protected snapshot carries when the rules or its expiry would have deleted it. */
export const WOULD_GO = 'would go: ';

/** Why a snapshot may not be deleted at all, by id: "held", "has clones ...". One entry per reason. */
export type Protection = ReadonlyMap<number, readonly string[]>;

/** Merge protection sets from several sources (holds, clones) into one. */
export function protection(...sources: Protection[]): Protection {
  const out = new Map<number, string[]>();
  for (const src of sources) for (const [id, why] of src) out.set(id, [...(out.get(id) ?? []), ...why]);
  return out;
}

export interface PruneOptions {
  /** Let the rules consider manual snapshots too (--include-manual). */
  includeManual?: boolean;
  protect?: Protection;
}

export interface KeepRules {
  last?: number;
  hourly?: number;
  daily?: number;
  weekly?: number;
  monthly?: number;
  yearly?: number;
}

export interface PruneDecision {
  id: number;
  name: string;
  createdAt: string;
  reasons: string[];
  /** Whether it was created with --name (retention leaves it alone unless --include-manual). */
  manual: boolean;
  /** The protections that kept it (held, has clones); empty when none applied. */
  protectedBy: string[];
}

export interface PrunePlan {
  keep: PruneDecision[];
  delete: PruneDecision[];
}

const pad = (n: number, w = 2) => String(n).padStart(w, '0');

/** ISO-8601 week of a local date: "2026-W48". */
export function isoWeek(d: Date): string {
  const t = new Date(d.getFullYear(), d.getMonth(), d.getDate());
  const day = (t.getDay() + 6) % 7; // Monday = 0
  t.setDate(t.getDate() - day + 3); // the Thursday of this week decides the year
  const firstThursday = new Date(t.getFullYear(), 0, 4);
  const week = 1 + Math.round(((t.getTime() - firstThursday.getTime()) / 86400000 - 3 + ((firstThursday.getDay() + 6) % 7)) / 7);
  return `${t.getFullYear()}-W${pad(week)}`;
}

export const BUCKETS: Record<Exclude<keyof KeepRules, 'last'>, (d: Date) => string> = {
  hourly: (d) => `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}h`,
  daily: (d) => `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}`,
  weekly: isoWeek,
  monthly: (d) => `${d.getFullYear()}-${pad(d.getMonth() + 1)}`,
  yearly: (d) => `${d.getFullYear()}`,
};

export function hasRules(r: KeepRules): boolean {
  return Object.values(r).some((v) => v !== undefined);
}

/**
 * Pure: the buckets (hours, days, ...) that have snapshots, most recent
 * first, each with the snapshot that stands for it. Which bucket a snapshot
 * falls in is a matter of its time; the one that stands for a bucket is its
 * greatest id (the last created, even if the clock stepped back). Buckets
 * are ordered by that id too, not by time: after a clock stepped back, the
 * snapshot just made lands in an old hour or day, and ordering by time would
 * make `--keep-daily N` delete it at once. With a clock that only goes
 * forward the two orders are the same.
 */
export function newestBuckets<T extends { id: number; createdAt: string }>(snaps: readonly T[], bucket: (d: Date) => string): { key: string; keep: T; latest: number }[] {
  const by = new Map<string, { key: string; keep: T; latest: number }>();
  for (const s of snaps) {
    const key = bucket(new Date(s.createdAt));
    const t = Date.parse(s.createdAt);
    const b = by.get(key);
    if (!b) by.set(key, { key, keep: s, latest: t });
    else {
      if (s.id > b.keep.id) b.keep = s;
      b.latest = Math.max(b.latest, t);
    }
  }
  return [...by.values()].sort((a, b) => b.keep.id - a.keep.id);
}

export function planPrune(snapshots: readonly PrunableSnapshot[], rules: KeepRules, now: Date, o: PruneOptions = {}): PrunePlan {
  // Newest first by id: ids are assigned in creation order, clocks may step back.
  const sorted = [...snapshots].sort((a, b) => b.id - a.id);
  const reasons = new Map<number, string[]>(sorted.map((s) => [s.id, []]));
  const expired = new Set(sorted.filter((s) => s.expiresAt !== null && Date.parse(s.expiresAt) <= now.getTime()).map((s) => s.id));
  const skipped = (s: PrunableSnapshot) => s.manual === true && o.includeManual !== true;
  const candidates = sorted.filter((s) => !expired.has(s.id) && !skipped(s));
  if (rules.last !== undefined) candidates.slice(0, rules.last).forEach((s, i) => reasons.get(s.id)!.push(`last ${i + 1}`));
  for (const [rule, bucket] of Object.entries(BUCKETS) as [keyof typeof BUCKETS, (d: Date) => string][]) {
    const n = rules[rule];
    if (n === undefined) continue;
    for (const b of newestBuckets(candidates, bucket).slice(0, n)) reasons.get(b.keep.id)!.push(`${rule} ${b.key}`);
  }
  const ruled = hasRules(rules);
  const plan: PrunePlan = { keep: [], delete: [] };
  for (const s of [...sorted].reverse()) {
    const r = reasons.get(s.id)!;
    const protectedBy = [...(o.protect?.get(s.id) ?? [])];
    const base = { id: s.id, name: s.name, createdAt: s.createdAt, manual: s.manual === true, protectedBy };
    // What the rules and expiry alone would do; a protection then overrides a deletion.
    let verdict: { keep: boolean; reasons: string[] };
    if (expired.has(s.id)) verdict = { keep: false, reasons: [`expired at ${s.expiresAt}`] };
    else if (skipped(s)) verdict = { keep: true, reasons: [MANUAL_REASON] };
    else if (r.length) verdict = { keep: true, reasons: r };
    else if (!ruled) verdict = { keep: true, reasons: ['no keep rule given'] };
    else verdict = { keep: false, reasons: ['no rule keeps it'] };
    if (verdict.keep) plan.keep.push({ ...base, reasons: [...protectedBy, ...verdict.reasons] });
    else if (protectedBy.length) plan.keep.push({ ...base, reasons: [...protectedBy, `${WOULD_GO}${verdict.reasons.join('; ')}`] });
    else plan.delete.push({ ...base, reasons: verdict.reasons });
  }
  return plan;
}
