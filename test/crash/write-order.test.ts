// Write ordering, the part of crash safety a kill -9 cannot show: a killed
// process loses nothing from the page cache, so a missing fdatasync would
// pass every kill test. Here the real CLI runs with io-trace.ts preloaded
// (into its workers too), and the trace of each `vsnap write` and `vsnap
// restore` is checked against design §5: an in-place write of block b starts
// only when b's old content is in the newest change log durably, i.e. b was
// there before the command, or the writev that appended b returned and a
// datasync of that log started after it and returned, all before the write.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { pathToFileURL, fileURLToPath } from 'node:url';
import { tmpdir } from '../helpers/cli.js';
import { Scenario, runCli, readClogFile, storeDirOf } from './harness.js';

const TRACER = path.join(path.dirname(fileURLToPath(import.meta.url)), 'io-trace.js');
const ROUNDS = Number(process.env.VSNAP_CRASH_ORDER_ROUNDS ?? 10);

/** Partition blocks a write of [pos, pos+len) in `file` touches. */
function blocksOf(sc: Scenario, file: string, pos: number, len: number): { p: string; b: number }[] {
  const out: { p: string; b: number }[] = [];
  for (const p of sc.fx.partitions) {
    let po = 0;
    for (const e of p.extents) {
      if (path.join(sc.fx.dir, e.file) === file) {
        const s = Math.max(pos, e.offset);
        const z = Math.min(pos + len, e.offset + e.length);
        if (s < z) {
          const a = po + (s - e.offset);
          const bz = po + (z - e.offset);
          for (let b = Math.floor(a / sc.fx.blockSize); b < Math.ceil(bz / sc.fx.blockSize); b++) out.push({ p: p.id, b });
        }
      }
      po += e.length;
    }
  }
  return out;
}

/** Blocks of each partition already in the newest snapshot's logs. */
function newestLogged(sc: Scenario): Map<string, Set<number>> {
  const id = sc.ids[sc.ids.length - 1];
  const m = new Map<string, Set<number>>();
  for (const p of sc.fx.partitions) {
    const f = path.join(storeDirOf(sc.fx), 'snapshots', String(id).padStart(8, '0'), `${p.id}.clog`);
    m.set(p.id, new Set(readClogFile(f, sc.fx.blockSize, id).blocks.keys()));
  }
  return m;
}

/** Check every trace file of one command; returns how many in-place block writes were checked and how many were copied first. */
function checkTraces(sc: Scenario, traceDir: string, before: Map<string, Set<number>>, what: string): { writes: number; copied: number } {
  let writes = 0;
  let copied = 0;
  for (const f of fs.readdirSync(traceDir)) {
    const lines = fs.readFileSync(path.join(traceDir, f), 'utf8').trim().split('\n').filter(Boolean).map((l) => l.split(' '));
    // block key -> seq at which its record became durable (Infinity: not yet)
    const durable = new Map<string, number>();
    const pendingAppend = new Map<string, { keys: string[]; doneSeq?: number }[]>();
    const syncStarts = new Map<string, number[]>();
    for (const [seqS, ev, p, ...rest] of lines) {
      const seq = Number(seqS);
      if (p.endsWith('.clog')) {
        const part = path.basename(p, '.clog');
        if (ev === 'A' && rest[1] !== '-') {
          const keys = rest[1].split(',').map((b) => `${part}:${b}`);
          for (const k of keys) durable.set(k, Infinity);
          pendingAppend.set(p, [...(pendingAppend.get(p) ?? []), { keys }]);
        } else if (ev === 'a') {
          const first = (pendingAppend.get(p) ?? []).find((x) => x.doneSeq === undefined);
          if (first) first.doneSeq = seq;
        } else if (ev === 'D') {
          syncStarts.set(p, [...(syncStarts.get(p) ?? []), seq]);
        } else if (ev === 'S') {
          const started = (syncStarts.get(p) ?? []).shift()!;
          for (const ap of pendingAppend.get(p) ?? []) {
            if (ap.doneSeq !== undefined && ap.doneSeq < started) for (const k of ap.keys) if (durable.get(k) === Infinity) durable.set(k, seq);
          }
        }
        continue;
      }
      if (ev !== 'W' || !p.startsWith(sc.fx.dir + path.sep) || p.includes(`${path.sep}.vsnap${path.sep}`)) continue;
      for (const { p: part, b } of blocksOf(sc, p, Number(rest[0]), Number(rest[1]))) {
        writes++;
        if (before.get(part)!.has(b)) continue;
        const at = durable.get(`${part}:${b}`);
        assert.ok(at !== undefined, `${what}: trace ${f} seq ${seq}: in-place write of ${part} block ${b} with no copy of its old content in the newest log`);
        assert.ok(at < seq, `${what}: trace ${f} seq ${seq}: in-place write of ${part} block ${b} starts before its change-log record is durable (${at === Infinity ? 'never synced' : `synced at seq ${at}`})`);
        copied++;
      }
    }
  }
  return { writes, copied };
}

test(`in-place writes wait for durable change-log records (traced write and restore, ${ROUNDS} rounds)`, async (t) => {
  const tmp = tmpdir('vsnap-crash-order-');
  const sc = Scenario.create(tmp.dir, Number(process.env.VSNAP_CRASH_SEED ?? 1), 'write-order');
  const none = { target: 'none' } as const;
  let writes = 0;
  let copied = 0;
  try {
    await sc.create(none);
    await sc.write(none);
    for (let r = 0; r < ROUNDS; r++) {
      sc.label = `write-order round ${r}`;
      if (r % 4 === 0) await sc.create(none);
      const traceDir = fs.mkdtempSync(path.join(tmp.dir, 'trace-'));
      const before = newestLogged(sc);
      const env = { VSNAP_IO_TRACE_DIR: traceDir, NODE_OPTIONS: `${process.env.NODE_OPTIONS ?? ''} --import=${pathToFileURL(TRACER).href}` };
      let what: string;
      if (r % 5 === 4) {
        const id = sc.ids[0];
        const run = await runCli(['restore', sc.fx.manifest, String(id)], { env });
        assert.equal(run.code, 0, run.stderr);
        sc.live = Buffer.from(sc.snaps.get(id)!);
        what = `restore of ${id}`;
      } else {
        const w = sc.randomWrite();
        const run = await runCli(['write', sc.fx.manifest, '--offset', String(w.off)], { env, input: w.data });
        assert.equal(run.code, 0, run.stderr);
        w.data.copy(sc.live, w.off);
        what = `write ${w.off}+${w.data.length}`;
      }
      assert.ok(fs.readdirSync(traceDir).length >= 2, `${what}: the tracer ran in the CLI and its workers`);
      const c = checkTraces(sc, traceDir, before, `${sc.label}: ${what}`);
      writes += c.writes;
      copied += c.copied;
      sc.checkAll(`after ${what}`);
    }
    t.diagnostic(`checked ${writes} in-place block writes, ${copied} of them copied first`);
    assert.ok(copied >= ROUNDS, `only ${copied} copy-on-write block writes were checked`);
  } finally {
    tmp.cleanup();
  }
});
