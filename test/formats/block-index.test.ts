import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { BlockIndex } from '../../src/formats/block-index.js';

test('add assigns dense slots; get/has/blockAt/iteration agree', () => {
  const ix = new BlockIndex();
  const blocks = [5, 0, 1_000_000, 2 ** 32 - 1, 17, 2 ** 32, 2 ** 53 - 1];
  blocks.forEach((b, i) => assert.equal(ix.add(b), i));
  assert.equal(ix.size, blocks.length);
  blocks.forEach((b, i) => {
    assert.equal(ix.get(b), i);
    assert.equal(ix.has(b), true);
    assert.equal(ix.blockAt(i), b);
  });
  assert.deepEqual([...ix], blocks);
  assert.equal(ix.get(6), -1);
  assert.equal(ix.has(2 ** 32 + 1), false);
});

test('adding a present block, a negative, fractional or unsafe number is refused', () => {
  const ix = new BlockIndex();
  ix.add(3);
  assert.throws(() => ix.add(3), /already present/);
  for (const bad of [-1, 1.5, NaN, 2 ** 53]) assert.throws(() => ix.add(bad), RangeError);
  assert.throws(() => ix.blockAt(1), RangeError);
  assert.equal(ix.size, 1);
});

test('truncate drops the newest slots and keeps lookups right', () => {
  const ix = new BlockIndex();
  for (let b = 0; b < 1000; b++) ix.add(b * 7);
  ix.truncate(600);
  assert.equal(ix.size, 600);
  assert.equal(ix.get(599 * 7), 599);
  assert.equal(ix.get(600 * 7), -1);
  assert.equal(ix.add(600 * 7), 600);
  assert.throws(() => ix.truncate(602), RangeError);
});

test('property: behaves like a Map under random inserts and lookups', () => {
  const block = fc.oneof(fc.nat({ max: 5000 }), fc.nat({ max: 2 ** 40 }), fc.constantFrom(0, 2 ** 32 - 1, 2 ** 32, 2 ** 53 - 1));
  const op = fc.oneof(
    fc.record({ kind: fc.constant('add' as const), block }),
    fc.record({ kind: fc.constant('get' as const), block }),
    fc.record({ kind: fc.constant('truncate' as const), keep: fc.double({ min: 0, max: 1, noNaN: true }) }),
  );
  fc.assert(
    fc.property(fc.array(op, { maxLength: 2000 }), fc.nat({ max: 3000 }), (ops, presize) => {
      const ix = new BlockIndex(presize);
      let model: number[] = []; // slot -> block
      let where = new Map<number, number>();
      for (const o of ops) {
        if (o.kind === 'add') {
          if (where.has(o.block)) {
            assert.throws(() => ix.add(o.block));
          } else {
            assert.equal(ix.add(o.block), model.length);
            where.set(o.block, model.length);
            model.push(o.block);
          }
        } else if (o.kind === 'get') {
          assert.equal(ix.get(o.block), where.get(o.block) ?? -1);
        } else {
          const n = Math.floor(o.keep * model.length);
          ix.truncate(n);
          model = model.slice(0, n);
          where = new Map(model.map((b, s) => [b, s]));
        }
      }
      assert.equal(ix.size, model.length);
      assert.deepEqual([...ix], model);
      for (const [b, s] of where) assert.equal(ix.get(b), s);
    }),
    { numRuns: 300 },
  );
});

test('memory: 1M entries cost well under the 16 bytes per logged block the design allows', (t) => {
  const N = 1_000_000;
  const grown = new BlockIndex();
  // Scattered blocks (a random-write workload), not just 0..N-1.
  for (let i = 0; i < N; i++) grown.add((i * 2654435761) % 2 ** 31);
  const presized = new BlockIndex(N);
  for (let i = 0; i < N; i++) presized.add(i);
  const grownPer = grown.byteSize / N;
  const presizedPer = presized.byteSize / N;
  t.diagnostic(`BlockIndex bytes/entry at 1M entries: ${grownPer.toFixed(2)} grown by adds, ${presizedPer.toFixed(2)} presized (as open does)`);
  assert.ok(grownPer < 16, `grown index uses ${grownPer} bytes/entry`);
  assert.ok(presizedPer < 14, `presized index uses ${presizedPer} bytes/entry`);
  // Sanity: lookups at this size still find everything.
  for (let i = 0; i < N; i += 9973) assert.equal(grown.get((i * 2654435761) % 2 ** 31), i);
  assert.equal(grown.get(2 ** 31 + 5), -1);
});

test('memory: blocks beyond 2^32 promote keys to 8 bytes (partitions of 16 TiB+ at 4 KiB blocks)', (t) => {
  const N = 1_000_000;
  const ix = new BlockIndex(N);
  ix.add(1);
  const small = ix.byteSize;
  for (let i = 1; i < N; i++) ix.add(2 ** 32 + i * 3);
  // Promotion doubles only the key array; the hash table is unchanged.
  assert.ok(ix.byteSize - small >= N * 4);
  t.diagnostic(`BlockIndex bytes/entry at 1M entries with 64-bit keys: ${(ix.byteSize / N).toFixed(2)}`);
  assert.ok(ix.byteSize / N < 17, `${ix.byteSize / N}`);
  assert.equal(ix.get(2 ** 32 + 3 * 1234), 1234);
  assert.equal(ix.get(1), 0);
});
