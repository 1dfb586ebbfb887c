// qemu-img (and qemu-nbd --list) against the server: metadata, the
// allocation map through BLOCK_STATUS with REQ_ONE, and bulk copies both ways.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { requireTool } from '../helpers/cli.js';
import { MiB, assertSameBytes, pattern, patternWithZeroes, run, runOk, withServer } from './harness.js';

const skip = requireTool('qemu-img', 'qemu-utils');
const SIZE = 8 * MiB;
const ZERO_RUNS: Array<[number, number]> = [
  [2 * MiB, MiB],
  [5 * MiB, 192 * 1024],
];

test('qemu-img info reports the export size', { skip }, async () => {
  await withServer({ live: pattern(SIZE, 11) }, async (s) => {
    const r = await runOk('qemu-img', ['info', '-f', 'raw', '--output=json', s.uri()]);
    const info = JSON.parse(r.stdout) as { 'virtual-size': number; format: string };
    assert.equal(info['virtual-size'], SIZE);
    assert.equal(info.format, 'raw');
  });
});

test('qemu-img map shows exactly the zero runs the test wrote', { skip }, async () => {
  await withServer({ live: patternWithZeroes(SIZE, 12, ZERO_RUNS) }, async (s) => {
    const r = await runOk('qemu-img', ['map', '-f', 'raw', '--output=json', s.uri()]);
    const map = JSON.parse(r.stdout) as Array<{ start: number; length: number; zero: boolean; data: boolean }>;
    let at = 0;
    const zeroes: Array<[number, number]> = [];
    for (const e of map) {
      assert.equal(e.start, at, 'extents are consecutive');
      assert.equal(e.data, true, 'a plain file has no holes');
      if (e.zero) zeroes.push([e.start, e.length]);
      at += e.length;
    }
    assert.equal(at, SIZE);
    assert.deepEqual(zeroes, ZERO_RUNS);
  });
});

test('qemu-img convert into the live export, then compare both ways', { skip }, async () => {
  await withServer({ live: pattern(SIZE, 13) }, async (s) => {
    const src = path.join(s.dir, 'src.img');
    const srcData = patternWithZeroes(SIZE, 14, ZERO_RUNS);
    fs.writeFileSync(src, srcData);
    await runOk('qemu-img', ['convert', '-n', '-f', 'raw', '-O', 'raw', src, s.uri()]);
    await runOk('qemu-img', ['compare', '-f', 'raw', '-F', 'raw', src, s.uri()]);
    await runOk('qemu-img', ['compare', '-f', 'raw', '-F', 'raw', s.uri(), src]);
    assertSameBytes(s.readLive(), srcData, 'live file after convert');
  });
});

test('qemu-img compare notices a one-byte difference', { skip }, async () => {
  await withServer({ live: pattern(SIZE, 15) }, async (s) => {
    const other = Buffer.from(s.liveData);
    other[SIZE - 3] ^= 0xff;
    const p = path.join(s.dir, 'other.img');
    fs.writeFileSync(p, other);
    const r = await run('qemu-img', ['compare', '-f', 'raw', '-F', 'raw', s.uri(), p]);
    assert.equal(r.code, 1, `compare must report a difference: ${r.stdout}${r.stderr}`);
    // qemu-img reports the 512-byte sector holding the difference.
    assert.match(r.stdout, new RegExp(`offset ${SIZE - 512}!`));
  });
});

test('qemu-img convert copies a snapshot export out to a file', { skip }, async () => {
  const snap = patternWithZeroes(SIZE, 16, ZERO_RUNS);
  await withServer({ live: pattern(SIZE, 17), snapshots: { s1: snap } }, async (s) => {
    const out = path.join(s.dir, 'out.img');
    await runOk('qemu-img', ['convert', '-f', 'raw', '-O', 'raw', s.uri('snapshot/s1'), out]);
    assertSameBytes(fs.readFileSync(out), snap, 'converted snapshot');
    assertSameBytes(s.readLive(), s.liveData, 'live file untouched');
  });
});

test('qemu-nbd --list shows every export with its flags', { skip: skip ?? requireTool('qemu-nbd', 'qemu-utils') }, async () => {
  await withServer({ live: pattern(SIZE, 18), snapshots: { s1: pattern(SIZE, 19) } }, async (s) => {
    const r = await runOk('qemu-nbd', ['--list', '-k', s.socket]);
    assert.match(r.stdout, /exports available: 3/);
    const blocks = r.stdout.split(/\n(?= export: )/).slice(1);
    const byName = new Map(blocks.map((b) => [/export: '([^']*)'/.exec(b)?.[1], b]));
    assert.deepEqual([...byName.keys()], ['', 'live', 'snapshot/s1']);
    assert.match(byName.get('live') ?? '', /flags: 0xded /);
    assert.match(byName.get('snapshot/s1') ?? '', /flags: 0x587 \( readonly/);
    assert.match(byName.get('') ?? '', /base:allocation/);
  });
});
