// Unit tests of src/size.ts: the size and duration syntax of design.md §3/§8.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { parseSize, formatSize, formatExactSize, parseDuration, MAX_SIZE } from '../src/size.js';

function ok(v: unknown): number {
  const r = parseSize(v);
  assert.ok(r.ok, `parseSize(${JSON.stringify(v)}) failed: ${r.ok ? '' : r.message}`);
  return r.value;
}

function fails(v: unknown, message: RegExp): void {
  const r = parseSize(v);
  assert.equal(r.ok, false, `parseSize(${JSON.stringify(v)}) should fail`);
  if (!r.ok) assert.match(r.message, message);
}

test('parseSize: plain bytes and binary units, short and long, any case', () => {
  const cases: [unknown, number][] = [
    [0, 0],
    [512, 512],
    ['512', 512],
    ['512B', 512],
    ['4K', 4096],
    ['4k', 4096],
    ['4KiB', 4096],
    ['4kib', 4096],
    ['64KiB', 65536],
    ['3M', 3 * 2 ** 20],
    ['1GiB', 2 ** 30],
    ['2T', 2 * 2 ** 40],
    ['2TiB', 2 * 2 ** 40],
    ['7P', 7 * 2 ** 50],
    [' 4 KiB ', 4096],
    ['0010', 10],
    [MAX_SIZE, MAX_SIZE],
    [String(MAX_SIZE), MAX_SIZE],
  ];
  for (const [input, want] of cases) assert.equal(ok(input), want, JSON.stringify(input));
});

test('parseSize: refuses fractions, signs, unknown units, non-sizes and anything over 2^53-1', () => {
  fails('1.5GiB', /fractions are not allowed/);
  fails('.5K', /fractions are not allowed/);
  fails(1.5, /non-negative integer/);
  fails(-1, /non-negative integer/);
  fails('-512', /integer with an optional binary unit/);
  fails('+512', /integer with an optional binary unit/);
  fails('64KB', /unknown unit "KB"/);
  fails('4 kilobytes', /unknown unit "kilobytes"/);
  fails('1e3', /integer with an optional binary unit/);
  fails('', /integer with an optional binary unit/);
  fails('K', /integer with an optional binary unit/);
  fails('0x1000', /integer with an optional binary unit/);
  fails(MAX_SIZE + 1, /at most 2\^53-1/);
  fails(Infinity, /at most 2\^53-1/);
  fails(Number.NaN, /non-negative integer/);
  fails('8P', /at most 2\^53-1/);
  fails('9007199254740992', /at most 2\^53-1/);
  fails('99999999999999999999999T', /at most 2\^53-1/);
  fails(true, /a number of bytes or a string/);
  fails(null, /a number of bytes or a string/);
  fails({ bytes: 1 }, /a number of bytes or a string/);
});

test('formatExactSize round-trips through parseSize and picks the largest exact unit', () => {
  assert.equal(formatExactSize(0), 0);
  assert.equal(formatExactSize(1000), 1000);
  assert.equal(formatExactSize(1536), 1536);
  assert.equal(formatExactSize(65536), '64KiB');
  assert.equal(formatExactSize(3 * 2 ** 30), '3GiB');
  assert.equal(formatExactSize(2 ** 40 + 2 ** 10), '1073741825KiB');
  fc.assert(
    fc.property(fc.integer({ min: 0, max: MAX_SIZE }), (n) => {
      assert.equal(ok(formatExactSize(n)), n);
    }),
  );
});

test('formatSize: readable binary units, never "1024 KiB"', () => {
  assert.equal(formatSize(0), '0 B');
  assert.equal(formatSize(1023), '1023 B');
  assert.equal(formatSize(1024), '1 KiB');
  assert.equal(formatSize(1536), '1.5 KiB');
  assert.equal(formatSize(64 * 1024), '64 KiB');
  assert.equal(formatSize(100.5 * 1024), '101 KiB');
  assert.equal(formatSize(2 ** 20 - 1), '1.0 MiB');
  assert.equal(formatSize(3 * 2 ** 30), '3 GiB');
  assert.equal(formatSize(2 * 2 ** 40), '2 TiB');
  assert.equal(formatSize(MAX_SIZE), '8.0 PiB');
  // Whatever the input, the number shown is below 1024 and the unit is known.
  fc.assert(
    fc.property(fc.integer({ min: 0, max: 2 ** 50 - 1 }), (n) => {
      const m = /^(\d+(?:\.\d)?) (B|KiB|MiB|GiB|TiB|PiB)$/.exec(formatSize(n));
      assert.ok(m, formatSize(n));
      assert.ok(Number(m[1]) < 1024, formatSize(n));
    }),
  );
});

test('parseDuration: s m h d w into milliseconds; rejects zero, other units and overflow', () => {
  assert.equal(parseDuration('30s'), 30_000);
  assert.equal(parseDuration('15m'), 900_000);
  assert.equal(parseDuration('1h'), 3_600_000);
  assert.equal(parseDuration('7d'), 7 * 86_400_000);
  assert.equal(parseDuration('2w'), 14 * 86_400_000);
  assert.equal(parseDuration(' 1h '), 3_600_000);
  for (const bad of ['0s', '1', 'h', '1.5h', '-1h', '1H', '1y', '1h30m', '', '99999999999999999999w']) {
    assert.equal(parseDuration(bad), undefined, bad);
  }
});
