// Runs a list of fault cases of one operation, each on a fresh clone of the
// prepared volume, and gathers what broke. Shared by the CLI and serve tests.
import fs from 'node:fs';
import path from 'node:path';
import { cloneGolden, caseName, readPoints, casesOf, shimEnv, type Case, type Golden, type FaultPoint } from './points.js';
import { Broken } from './ops.js';
import type { Fixture } from '../helpers/volume-fixture.js';
import type { Model } from './points.js';

export interface Failure {
  op: string;
  fault: string;
  path: string;
  promise: string;
  message: string;
}

export interface Tally {
  op: string;
  points: number;
  cases: number;
  run: number;
  fired: number;
  swallowed: number;
  failedCases: number;
  failures: Failure[];
}

let seq = 0;
/** A fresh directory for one run's volume clone and shim logs. */
export function workDirs(base: string): { vol: string; log: string; cleanup: () => void } {
  const d = path.join(base, `case-${process.pid}-${seq++}`);
  const vol = path.join(d, 'vol');
  const log = path.join(d, 'log');
  fs.mkdirSync(vol, { recursive: true });
  fs.mkdirSync(log);
  return { vol, log, cleanup: () => fs.rmSync(d, { recursive: true, force: true }) };
}

/** The counting run: the operation on a clone with the shim and no fault. */
export async function countPoints(golden: Golden, base: string, run: (fx: Fixture, model: Model, env: Record<string, string>) => Promise<void>): Promise<FaultPoint[]> {
  const w = workDirs(base);
  try {
    const { fx, model } = cloneGolden(golden, w.vol);
    await run(fx, model, shimEnv(fx.dir, w.log));
    return readPoints(w.log);
  } finally {
    w.cleanup();
  }
}

export async function runCases(
  op: string,
  golden: Golden,
  base: string,
  points: FaultPoint[],
  pick: (all: Case[]) => Case[],
  one: (c: Case, fx: Fixture, model: Model, logDir: string, seen: { fired?: boolean }) => Promise<{ succeeded: boolean; broken: Broken[] }>,
): Promise<Tally> {
  const all = casesOf(points);
  // VSNAP_FAULTS_ONLY=<case>,<case>...: replay just those cases (names as in the failure report).
  const only = process.env.VSNAP_FAULTS_ONLY?.split(',').filter(Boolean);
  const chosen = only ? all.filter((c) => only.includes(caseName(c))) : pick(all);
  const tally: Tally = { op, points: points.length, cases: all.length, run: 0, fired: 0, swallowed: 0, failedCases: 0, failures: [] };
  const jobs = Math.max(1, Number(process.env.VSNAP_FAULTS_JOBS ?? 1));
  let next = 0;
  const worker = async () => {
    while (next < chosen.length) {
      const c = chosen[next++];
      const w = workDirs(base);
      const seen: { fired?: boolean } = {};
      let broken: Broken[];
      let succeeded = false;
      try {
        const { fx, model } = cloneGolden(golden, w.vol);
        const r = await one(c, fx, model, w.log, seen);
        broken = r.broken;
        succeeded = r.succeeded;
      } catch (e) {
        broken = [new Broken('harness error', (e as Error).stack ?? String(e))];
      }
      tally.run++;
      if (seen.fired) tally.fired++;
      if (seen.fired && succeeded) tally.swallowed++;
      if (broken.length) tally.failedCases++;
      for (const b of broken) tally.failures.push({ op, fault: caseName(c), path: c.path, promise: b.promise, message: b.message.slice(0, 700) });
      // Keep the volume of a failed case only when asked (for a post-mortem).
      if (!broken.length || !process.env.VSNAP_FAULTS_KEEP) w.cleanup();
    }
  };
  await Promise.all(Array.from({ length: jobs }, worker));
  recordTally(tally);
  return tally;
}

/** Appends the tally as one JSON line to $VSNAP_FAULTS_REPORT, if set (the full run's record). */
function recordTally(t: Tally): void {
  const f = process.env.VSNAP_FAULTS_REPORT;
  if (f) fs.appendFileSync(f, `${JSON.stringify(t)}\n`);
}

/** One line per failure, grouped: the promise, then the cases and the first message. */
export function describeFailures(t: Tally): string {
  const by = new Map<string, Failure[]>();
  for (const f of t.failures) by.set(f.promise, [...(by.get(f.promise) ?? []), f]);
  return [...by]
    .map(([p, fs_]) => `${t.op}: "${p}" broken in ${fs_.length} case(s): ${fs_.slice(0, 6).map((f) => f.fault).join(', ')}${fs_.length > 6 ? ', ...' : ''}\n    e.g. ${fs_[0].fault} (${fs_[0].path}): ${fs_[0].message.replace(/\n/g, ' | ')}`)
    .join('\n');
}

export function summary(t: Tally): string {
  return `${t.op}: ${t.points} fault points, ${t.cases} cases (call x occurrence x errno), ${t.run} run, ${t.fired} reached their fault, ${t.swallowed} succeeded despite it, ${t.failedCases} broke at least one promise (${t.failures.length} broken promises)`;
}
