// nbdinfo (libnbd): INFO before GO, LIST + INFO per export + ABORT, and the
// base:allocation map.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { requireTool } from '../helpers/cli.js';
import { MiB, pattern, patternWithZeroes, runOk, withServer } from './harness.js';

const skip = requireTool('nbdinfo', 'libnbd-bin');
const SIZE = 8 * MiB;

interface ExportJson {
  'export-name': string;
  'export-size': number;
  is_read_only: boolean;
  can_flush: boolean;
  can_fua: boolean;
  can_trim: boolean;
  can_zero: boolean;
  can_fast_zero: boolean;
  can_multi_conn: boolean;
  can_df: boolean;
  contexts: string[];
  block_size_minimum: number;
  block_size_preferred: number;
  block_size_maximum: number;
}

async function info(args: string[]): Promise<{ structured: boolean; exports: ExportJson[] }> {
  return JSON.parse((await runOk('nbdinfo', ['--json', ...args])).stdout) as { structured: boolean; exports: ExportJson[] };
}

test('nbdinfo describes the live export as writable, multi-conn, with sane block sizes', { skip }, async () => {
  await withServer({ live: pattern(SIZE, 21) }, async (s) => {
    const r = await info([s.uri('live')]);
    assert.equal(r.structured, true);
    const e = r.exports[0];
    assert.equal(e['export-size'], SIZE);
    assert.equal(e.is_read_only, false);
    for (const k of ['can_flush', 'can_fua', 'can_trim', 'can_zero', 'can_fast_zero', 'can_multi_conn', 'can_df'] as const) assert.equal(e[k], true, k);
    assert.deepEqual(e.contexts, ['base:allocation']);
    assert.equal(e.block_size_minimum, 1);
    assert.equal(e.block_size_preferred, 65536);
    assert.equal(e.block_size_maximum, 32 * MiB);
  });
});

test('nbdinfo describes a snapshot export as read-only with no write features', { skip }, async () => {
  await withServer({ live: pattern(SIZE, 22), snapshots: { s1: pattern(SIZE, 23) } }, async (s) => {
    const e = (await info([s.uri('snapshot/s1')])).exports[0];
    assert.equal(e['export-name'], 'snapshot/s1');
    assert.equal(e.is_read_only, true);
    for (const k of ['can_fua', 'can_trim', 'can_zero', 'can_fast_zero'] as const) assert.equal(e[k], false, k);
    assert.equal(e.can_multi_conn, true);
  });
});

test('nbdinfo --list lists every export', { skip }, async () => {
  await withServer({ live: pattern(SIZE, 24), snapshots: { a: pattern(SIZE, 25), 'b.2': pattern(SIZE, 26) } }, async (s) => {
    const r = await info(['--list', s.uri()]);
    assert.deepEqual(
      r.exports.map((e) => [e['export-name'], e.is_read_only]),
      [
        ['', false],
        ['live', false],
        ['snapshot/a', true],
        ['snapshot/b.2', true],
      ],
    );
  });
});

test('nbdinfo --map reports the zero runs of a snapshot', { skip }, async () => {
  const runs: Array<[number, number]> = [
    [MiB, 3 * MiB],
    [7 * MiB + 64 * 1024, 64 * 1024],
  ];
  await withServer({ live: pattern(SIZE, 27), snapshots: { s1: patternWithZeroes(SIZE, 28, runs) } }, async (s) => {
    const map = JSON.parse((await runOk('nbdinfo', ['--map', '--json', s.uri('snapshot/s1')])).stdout) as Array<{ offset: number; length: number; type: number }>;
    let at = 0;
    for (const e of map) {
      assert.equal(e.offset, at);
      at += e.length;
    }
    assert.equal(at, SIZE);
    assert.deepEqual(
      map.filter((e) => e.type === 2).map((e) => [e.offset, e.length]),
      runs,
    );
    assert.ok(map.every((e) => e.type === 0 || e.type === 2), 'no holes in a plain file');
  });
});
