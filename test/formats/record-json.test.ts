import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import fc from 'fast-check';
import { IntegrityError } from '../../src/errors.js';
import { canonicalJson, decodeRecord, encodeRecord, readRecord, writeRecord } from '../../src/formats/record-json.js';
import { rejectsIntegrity, tempDir } from './util.js';

const FILE = '/store/volume.json';

function throwsIntegrity(fn: () => unknown, ...patterns: RegExp[]): void {
  assert.throws(fn, (e: unknown) => {
    assert.ok(e instanceof IntegrityError, `expected IntegrityError, got ${String(e)}`);
    for (const re of patterns) assert.match(e.message, re);
    return true;
  });
}

test('canonicalJson sorts keys recursively and drops whitespace', () => {
  assert.equal(canonicalJson({ b: 1, a: [{ d: 2, c: 'x' }, null, true], e: { z: {}, y: [] } }), '{"a":[{"c":"x","d":2},null,true],"b":1,"e":{"y":[],"z":{}}}');
  assert.equal(canonicalJson({ u: undefined, s: 'é"\n' }), '{"s":"é\\"\\n"}');
  assert.throws(() => canonicalJson({ n: NaN }), /non-finite/);
  assert.throws(() => canonicalJson({ f: () => 1 }), /cannot encode/);
});

test('encodeRecord: layout, pretty printing, and a checksum anyone can recompute', () => {
  const text = encodeRecord('vsnap-volume', { name: 'ci-disks', nextSnapshotId: 3 });
  assert.ok(text.endsWith('}\n'));
  assert.match(text, /^\{\n  "format": "vsnap-volume",\n  "version": 1,\n  "name": "ci-disks",/);
  const obj = JSON.parse(text);
  const { checksum, ...rest } = obj;
  const expected = 'sha256:' + createHash('sha256').update('{"format":"vsnap-volume","name":"ci-disks","nextSnapshotId":3,"version":1}').digest('hex');
  assert.equal(checksum, expected);
  assert.deepEqual(Object.keys(rest), ['format', 'version', 'name', 'nextSnapshotId']);
});

test('encodeRecord refuses reserved field names (a caller bug)', () => {
  for (const k of ['format', 'version', 'checksum']) {
    assert.throws(() => encodeRecord('k', { [k]: 1 }), /reserved/);
  }
});

test('decodeRecord round-trips the fields and ignores formatting and key order', () => {
  const fields = { name: 'v', mapping: { blockSize: 65536, partitions: [{ id: 'p', extents: [{ file: 'a', offset: 0, length: 512 }] }] }, expiresAt: null };
  const text = encodeRecord('vsnap-volume', fields);
  assert.deepEqual(decodeRecord('vsnap-volume', text, FILE), fields);
  // Re-indented and keys reordered: the canonical form, hence the checksum, is unchanged.
  const obj = JSON.parse(text);
  const reordered = Object.fromEntries(Object.entries(obj).reverse());
  assert.deepEqual(decodeRecord('vsnap-volume', JSON.stringify(reordered), FILE), fields);
});

test('decodeRecord: every kind of damage is an IntegrityError naming the file', () => {
  const text = encodeRecord('vsnap-volume', { name: 'v', nextSnapshotId: 1 });
  throwsIntegrity(() => decodeRecord('vsnap-volume', text.replace('"v"', '"w"'), FILE), /\/store\/volume\.json/, /checksum mismatch/);
  throwsIntegrity(() => decodeRecord('vsnap-volume', text.replace('"nextSnapshotId": 1', '"nextSnapshotId": 2'), FILE), /checksum mismatch/);
  throwsIntegrity(() => decodeRecord('vsnap-snapshot', text, FILE), /\/store\/volume\.json/, /format is "vsnap-volume", expected "vsnap-snapshot"/);
  throwsIntegrity(() => decodeRecord('vsnap-volume', text.replace('"version": 1', '"version": 2'), FILE), /unsupported vsnap-volume version 2/);
  throwsIntegrity(() => decodeRecord('vsnap-volume', text.slice(0, 40), FILE), /\/store\/volume\.json/, /not valid JSON/);
  throwsIntegrity(() => decodeRecord('vsnap-volume', '[1]', FILE), /expected a JSON object/);
  const noSum = JSON.parse(text);
  delete noSum.checksum;
  throwsIntegrity(() => decodeRecord('vsnap-volume', JSON.stringify(noSum), FILE), /missing or malformed checksum/);
  // An added field changes the canonical form.
  const extra = JSON.parse(text);
  extra.sneaky = true;
  throwsIntegrity(() => decodeRecord('vsnap-volume', JSON.stringify(extra), FILE), /checksum mismatch/);
});

test('decodeRecord names the byte offset of a JSON syntax error', () => {
  const text = '{"format": "k", "version": 1, x}';
  throwsIntegrity(() => decodeRecord('k', text, FILE), /at offset \d+/);
});

test('property: any single-character change to a record is detected or harmless', () => {
  const text = encodeRecord('vsnap-partition-state', { clean: true, pid: 1234, logs: { '1': 4096, '2': 12384 }, updatedAt: '2024-01-01T00:00:00.000Z' });
  const original = decodeRecord('vsnap-partition-state', text, FILE);
  fc.assert(
    fc.property(fc.nat({ max: text.length - 1 }), fc.integer({ min: 32, max: 126 }), (pos, code) => {
      const mutated = text.slice(0, pos) + String.fromCharCode(code) + text.slice(pos + 1);
      try {
        // Accepted only when the change did not alter any value (e.g. whitespace).
        assert.deepEqual(decodeRecord('vsnap-partition-state', mutated, FILE), original);
      } catch (e) {
        assert.ok(e instanceof IntegrityError, String(e));
      }
    }),
    { numRuns: 500 },
  );
});

test('writeRecord/readRecord go through the disk; ENOENT is not an integrity error', async () => {
  const { dir, cleanup } = tempDir();
  try {
    const p = path.join(dir, 'snapshot.json');
    await writeRecord(p, 'vsnap-snapshot', { id: 12, name: 'before-upgrade' });
    assert.deepEqual(await readRecord(p, 'vsnap-snapshot'), { id: 12, name: 'before-upgrade' });
    fs.writeFileSync(p, fs.readFileSync(p, 'utf8').replace('12', '13'));
    await rejectsIntegrity(readRecord(p, 'vsnap-snapshot'), new RegExp(p.replace(/[.]/g, '\\.')), /checksum mismatch/);
    await assert.rejects(readRecord(path.join(dir, 'none.json'), 'vsnap-snapshot'), { code: 'ENOENT' });
  } finally {
    cleanup();
  }
});

test('a damaged digit that makes a number non-finite is an integrity error, not a crash', () => {
  const text = encodeRecord('vsnap-partition-state', { clean: true, pid: 1234, logs: { '2': 12384 } });
  throwsIntegrity(() => decodeRecord('vsnap-partition-state', text.replace('12384', '1E384'), FILE), /damaged value/);
});
