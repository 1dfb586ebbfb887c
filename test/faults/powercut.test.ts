// Simulated power cuts: each operation runs once with io-journal.ts
// preloaded; powercut.ts replays the journal and builds the files as a power
// cut could leave them just after each sync returned (unsynced writes
// dropped, or torn at 512-byte sectors; directory changes since the last
// fsync of their directory undone). On every image the store must open and
// every promise hold: committed snapshots read right, the live volume holds
// old or new data per sector (the acknowledged result once the command has
// exited 0), and the next commands recover by themselves.
//
// The normal suite checks a fixed share of the boundaries
// (VSNAP_POWERCUT_STRIDE); `npm run test:faults` checks every one.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { pathToFileURL, fileURLToPath } from 'node:url';
import { tmpdir } from '../helpers/cli.js';
import { liveFromFiles, type Fixture } from '../helpers/volume-fixture.js';
import { firstDiff } from '../crash/harness.js';
import { prepareGolden, cloneGolden, type Golden, type Model } from './points.js';
import { OPS, opSpec, runOp, checkSectors, checkReads, checkDisk, Broken, type OpName } from './ops.js';
import { DiskModel, readJournal, boundaries, type Variant } from './powercut.js';

const JOURNAL = path.join(path.dirname(fileURLToPath(import.meta.url)), 'io-journal.js');
const FULL = process.env.VSNAP_FAULTS_FULL === '1';
const STRIDE = Number(process.env.VSNAP_POWERCUT_STRIDE ?? 7);
let tmp: { dir: string; cleanup: () => void };
let golden: Golden;

before(async () => {
  tmp = tmpdir('vsnap-powercut-');
  fs.mkdirSync(path.join(tmp.dir, 'golden'));
  golden = await prepareGolden(path.join(tmp.dir, 'golden'));
});
after(() => tmp?.cleanup());

const need = (ok: unknown, promise: string, msg: string): void => {
  if (!ok) throw new Broken(promise, msg);
};

/** Every promise on one crash image; `done`: the cut is after the command exited 0. */
async function checkImage(op: OpName, fx: Fixture, before: Model, spec: ReturnType<typeof opSpec>, done: boolean, createdId: number | undefined): Promise<void> {
  const model: Model = { live: Buffer.from(before.live), snaps: new Map(before.snaps) };
  const ids = [...before.snaps.keys()].sort((a, b) => a - b);
  const now = liveFromFiles(fx);
  if (op === 'write' || op === 'restore') {
    const after = Buffer.from(before.live);
    if (op === 'write') spec.input!.copy(after, Number(spec.args[3]));
    else before.snaps.get(Number(spec.args[2]))!.copy(after);
    if (done) need(now.equals(after), `P3 the ${op} acknowledged before the cut survives it`, firstDiff(now, after));
    else checkSectors(now, before.live, after, `P4 each sector of the interrupted ${op} is old or new`);
    model.live = now;
  } else need(now.equals(before.live), 'P7 create/delete/prune never change the live volume', firstDiff(now, before.live));
  if (op === 'restore' && !done) {
    const r = await runOp(spec, {});
    need(r.code === 0, 'P6 a restore cut by power loss can be re-run', r.stderr);
    model.live = Buffer.from(before.snaps.get(Number(spec.args[2]))!);
  }
  const list = await runOp({ args: ['list', fx.manifest, '--json'] }, {});
  need(list.code === 0, 'P1 the store opens after the power cut (list)', list.stderr);
  const listed = (JSON.parse(list.stdout) as { id: number }[]).map((s) => s.id);
  const maybe = op === 'delete' ? [ids[1]] : op === 'prune' ? ids.slice(0, -1) : [];
  for (const i of ids) need(listed.includes(i) || maybe.includes(i), 'P2 no committed snapshot is lost', `snapshot ${i} missing; listed ${listed}`);
  for (const i of listed) {
    if (ids.includes(i)) continue;
    need(op === 'create' && i === listed[listed.length - 1] && i > ids[ids.length - 1], 'no unknown snapshot appears', `listed ${listed}`);
    model.snaps.set(i, Buffer.from(before.live));
  }
  if (done && op === 'create') need(createdId !== undefined && listed.includes(createdId), 'P2 a reported create survives the cut', `listed ${listed}, reported ${createdId}`);
  if (done) for (const i of maybe) need(!listed.includes(i) || op === 'prune', 'a reported delete survives the cut', `snapshot ${i} is back`);
  for (const i of maybe) if (!listed.includes(i)) model.snaps.delete(i);
  await checkReads(fx, model, 'on the crash image');
  checkDisk(fx, model, 'on the crash image');
  const v = await runOp({ args: ['verify', fx.manifest] }, {});
  need(v.code === 0, 'verify passes on the recovered crash image', `exit ${v.code}: ${v.stderr}${v.stdout}`);
}

for (const op of OPS) {
  test(`${op}: crash images at sync boundaries (unsynced writes dropped or torn, directory changes undone) open and keep every promise`, async (t) => {
    const runDir = path.join(tmp.dir, `${op}-run`);
    const jdir = path.join(tmp.dir, `${op}-journal`);
    fs.mkdirSync(runDir);
    fs.mkdirSync(jdir);
    const { fx, model } = cloneGolden(golden, runDir);
    const disk = new DiskModel(fx.dir);
    const spec = opSpec(op, fx, model);
    const env = { VSNAP_FAULT_ROOT: fx.dir, VSNAP_JOURNAL_DIR: jdir, NODE_OPTIONS: `${process.env.NODE_OPTIONS ?? ''} --import=${pathToFileURL(JOURNAL).href}` };
    const run = await runOp(spec, env);
    assert.equal(run.code, 0, `${op} under the journal failed: ${run.stderr}`);
    const createdId = op === 'create' ? (JSON.parse(run.stdout) as { id: number }).id : undefined;
    const evs = readJournal(jdir);
    const bounds = boundaries(evs);
    assert.ok(bounds.length >= 2 && evs.some((e) => e.ev === 'write'), `${op}: the journal has ${evs.length} events, ${bounds.length} boundaries`);
    // The CI share: every STRIDE-th boundary (alternating variants) and the end in both variants.
    const chosen = new Map<number, Variant[]>();
    bounds.forEach((b, k) => {
      if (FULL || k === bounds.length - 1) chosen.set(b, ['drop', 'torn']);
      else if (k % STRIDE === 0) chosen.set(b, [k % (2 * STRIDE) === 0 ? 'drop' : 'torn']);
    });
    const failures: string[] = [];
    let images = 0;
    for (const [i, e] of evs.entries()) {
      disk.apply(e);
      const variants = chosen.get(i);
      if (!variants) continue;
      for (const v of variants) {
        const dir = path.join(tmp.dir, `${op}-image-${i}-${v}`);
        fs.mkdirSync(dir);
        disk.materialize(dir, v);
        const ifx: Fixture = { ...fx, dir, manifest: path.join(dir, path.basename(fx.manifest)) };
        images++;
        const where = `${op} cut after event ${i} (${e.ev} ${path.relative(fx.dir, e.path)}; boundary ${bounds.indexOf(i) + 1} of ${bounds.length}), ${v}`;
        try {
          await checkImage(op, ifx, model, opSpec(op, ifx, model), i === evs.length - 1, createdId);
          fs.rmSync(dir, { recursive: true, force: true });
        } catch (err) {
          failures.push(`${where}: "${err instanceof Broken ? err.promise : 'harness error'}": ${(err as Error).message.slice(0, 500)}`);
          if (!process.env.VSNAP_FAULTS_KEEP) fs.rmSync(dir, { recursive: true, force: true });
        }
      }
    }
    const summary = `${op}: ${evs.length} journal events, ${bounds.length} sync boundaries, ${images} crash images checked, ${failures.length} broke a promise`;
    t.diagnostic(summary);
    if (process.env.VSNAP_FAULTS_REPORT) fs.appendFileSync(process.env.VSNAP_FAULTS_REPORT, `${JSON.stringify({ powercut: op, events: evs.length, boundaries: bounds.length, images, failures })}\n`);
    assert.equal(failures.length, 0, `${summary}\n${failures.join('\n')}`);
  });
}
