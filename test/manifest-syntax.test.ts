// Unit tests of the pure helpers behind validate's messages: the JSON syntax
// locator (src/manifest/json-syntax.ts), checked against JSON.parse itself,
// and the "did you mean" guess (src/manifest/suggest.ts).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { findJsonSyntaxError } from '../src/manifest/json-syntax.js';
import { closestKey, editDistance } from '../src/manifest/suggest.js';
import { KNOWN_KEYS } from '../src/manifest/schema.js';

function parses(text: string): boolean {
  try {
    JSON.parse(text);
    return true;
  } catch {
    return false;
  }
}

test('the locator finds an error exactly when JSON.parse refuses the text', () => {
  // Texts near JSON: valid documents with one character inserted, removed or replaced.
  const near = fc
    .tuple(fc.json(), fc.nat(), fc.constantFrom('insert', 'delete', 'replace'), fc.constantFrom(...'{}[],:"\'\\ \n\t0-.eEtfnu1a\u00e9\ufeff\u0001'.split('')))
    .map(([doc, at, op, ch]) => {
      const i = doc.length ? at % doc.length : 0;
      if (op === 'insert') return doc.slice(0, i) + ch + doc.slice(i);
      if (op === 'delete') return doc.slice(0, i) + doc.slice(i + 1);
      return doc.slice(0, i) + ch + doc.slice(i + 1);
    });
  fc.assert(
    fc.property(fc.oneof(near, fc.json(), fc.string()), (text) => {
      const err = findJsonSyntaxError(text);
      assert.equal(err === undefined, parses(text), `${JSON.stringify(text)}: ${JSON.stringify(err)}`);
      if (err) {
        const lines = text.split('\n');
        assert.ok(err.line >= 1 && err.line <= lines.length, JSON.stringify(err));
        assert.ok(err.column >= 1 && err.column <= lines[err.line - 1].length + 1, JSON.stringify(err));
      }
    }),
    { numRuns: 3000 },
  );
});

test('the locator names the line, the column, what it found and what it expected', () => {
  const cases: [string, number, number, string, RegExp][] = [
    ['{\n  "name": "x",\n  "partitions": [],\n}\n', 4, 1, '"}"', /no trailing comma/],
    // Node 20 gives no position at all for this one.
    ['{"a":}', 1, 6, '"}"', /a value/],
    ['{\n  "name": \'x\'\n}', 2, 11, '"\'"', /double quotes/],
    ['{"name": "x"', 1, 13, 'end of file', /"," or "}"/],
    ['{"name": "x\ny"}', 1, 12, 'a line break', /escape/],
    ['\ufeff{}', 1, 1, 'a byte-order mark U+FEFF', /a value/],
    ['{"a": [1, 2,]}', 1, 13, '"]"', /no trailing comma/],
    ['{"a": tru}', 1, 10, '"}"', /"true"/],
    ['{} {}', 1, 4, '"{"', /end of the file/],
    ['[01]', 1, 3, '"1"', /"," or "]"/],
  ];
  for (const [text, line, column, found, expected] of cases) {
    const e = findJsonSyntaxError(text);
    assert.ok(e, text);
    assert.deepEqual([e.line, e.column, e.found], [line, column, found], JSON.stringify(text));
    assert.match(e.expected, expected, JSON.stringify(text));
  }
  assert.equal(findJsonSyntaxError('{"a": [1, {"b": null}], "c": "\\u00e9"}'), undefined);
  // Hostile nesting is reported, not a stack overflow.
  assert.match(findJsonSyntaxError('['.repeat(100_000))!.expected, /nesting at most/);
});

test('did you mean: close typos of known keys, nothing for unrelated words or ties', () => {
  assert.equal(editDistance('lenght', 'length'), 1, 'a swap of neighbours is one edit');
  assert.equal(editDistance('', 'abc'), 3);
  const m = KNOWN_KEYS.manifest;
  assert.equal(closestKey('blocksize', m), 'blockSize');
  assert.equal(closestKey('BlockSize', m), 'blockSize');
  assert.equal(closestKey('blokSize', m), 'blockSize');
  assert.equal(closestKey('partition', m), 'partitions');
  assert.equal(closestKey('nmae', m), 'name');
  assert.equal(closestKey('stor', m), 'store');
  assert.equal(closestKey('description', m), undefined);
  assert.equal(closestKey('blockSize', m), undefined, 'a known key needs no guess');
  assert.equal(closestKey('workers', KNOWN_KEYS.partition), 'worker');
  assert.equal(closestKey('extent', KNOWN_KEYS.partition), 'extents');
  assert.equal(closestKey('ofset', KNOWN_KEYS.extent), 'offset');
  assert.equal(closestKey('lenght', KNOWN_KEYS.extent), 'length');
  assert.equal(closestKey('fromat', KNOWN_KEYS.extent), 'format');
  assert.equal(closestKey('size', KNOWN_KEYS.extent), undefined, '"size" is two edits from "file": too far for 4 letters');
  assert.equal(closestKey('x', ['a', 'b']), undefined, 'a tie guesses nothing');
});
