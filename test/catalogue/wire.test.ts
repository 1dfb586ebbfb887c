// The control socket's request parser (src/catalogue/wire.ts): every
// malformed request is a UsageError naming the field and the value; good
// requests come out typed by method, and encode/parse round-trip.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { UsageError, IntegrityError, OperationError, serializeError } from '../../src/errors.js';
import { parseRequest, encodeRequest, encodeReply, parseReply } from '../../src/catalogue/wire.js';
import { METHODS } from '../../src/catalogue/catalogue.js';

const BAD: [string, RegExp][] = [
  ['not json', /^control socket: the request is not JSON \(.*"not json".*\)$/],
  ['', /the request is not JSON/],
  ['[1,2]', /must be a JSON object such as \{"cmd":"list"\} \(got \[1,2\]\)/],
  ['null', /must be a JSON object .*\(got null\)/],
  ['"list"', /must be a JSON object .*\(got "list"\)/],
  ['{}', /^control socket: cmd: missing \(expected one of create, list, show, delete, prune, status, cloneCreate, cloneList, cloneReset, cloneDelete, hold, release\)$/],
  ['{"cmd":"frobnicate"}', /cmd: unknown command "frobnicate" \(expected one of create, list/],
  ['{"cmd":"toString"}', /cmd: unknown command "toString"/],
  ['{"cmd":"__proto__"}', /cmd: unknown command "__proto__"/],
  ['{"cmd":7}', /cmd: unknown command 7/],
  ['{"cmd":"show"}', /^control socket: show: ref is required \(a string\)$/],
  ['{"cmd":"show","ref":42}', /^control socket: show: ref must be a string \(got 42\)$/],
  ['{"cmd":"delete","refs":"1"}', /^control socket: delete: refs must be an array \(got "1"\)$/],
  ['{"cmd":"delete","refs":[1]}', /^control socket: delete: refs\.0 must be a string \(got 1\)$/],
  ['{"cmd":"create","expiresInMs":"1h"}', /^control socket: create: expiresInMs must be a number \(got "1h"\)$/],
  ['{"cmd":"create","expiresInMs":-5}', /^control socket: create: expiresInMs: .* \(got -5\)$/],
  ['{"cmd":"create","expiresInMs":1.5}', /^control socket: create: expiresInMs must be an integer \(got 1\.5\)$/],
  ['{"cmd":"create","name":{"a":1}}', /create: name must be a string \(got \{"a":1\}\)/],
  ['{"cmd":"prune","rules":{"last":"3"},"dryRun":true}', /^control socket: prune: rules\.last must be a number \(got "3"\)$/],
  ['{"cmd":"prune","rules":{"lasst":3},"dryRun":true}', /prune: unknown field "rules\.lasst"/],
  ['{"cmd":"prune","rules":{}}', /prune: dryRun is required \(a boolean\)/],
  ['{"cmd":"prune","rules":{},"dryRun":true,"includeManual":"yes"}', /^control socket: prune: includeManual must be a boolean \(got "yes"\)$/],
  ['{"cmd":"hold"}', /^control socket: hold: refs is required \(an array\)$/],
  ['{"cmd":"hold","refs":[]}', /^control socket: hold: refs: .*\(got \[\]\)$/],
  ['{"cmd":"release","refs":[3]}', /^control socket: release: refs\.0 must be a string \(got 3\)$/],
  ['{"cmd":"list","extra":1}', /^control socket: list: unknown field "extra"$/],
  ['{"cmd":"cloneCreate","snap":"base"}', /^control socket: cloneCreate: name is required \(a string\)$/],
  ['{"cmd":"cloneDelete","names":"c"}', /^control socket: cloneDelete: names must be an array \(got "c"\)$/],
  ['{"cmd":"status","a":1,"b":2}', /status: unknown fields "a", "b"/],
];

test('malformed control requests are usage errors naming the field and the value', () => {
  for (const [line, re] of BAD) {
    assert.throws(
      () => parseRequest(line),
      (err: unknown) => {
        assert.ok(err instanceof UsageError, `${line}: ${String(err)}`);
        assert.match(err.message, re, line);
        return true;
      },
    );
  }
});

test('a long hostile value is shortened in the message', () => {
  assert.throws(() => parseRequest(JSON.stringify({ cmd: 'show', ref: ['x'.repeat(100_000)] })), (err: Error) => err.message.length < 200);
});

test('well-formed requests come out typed by method, and encodeRequest round-trips', () => {
  assert.deepEqual(parseRequest('{"cmd":"list"}'), { method: 'list', args: {} });
  assert.deepEqual(parseRequest('{"cmd":"create","name":"a","expiresInMs":60000}\r'), { method: 'create', args: { name: 'a', expiresInMs: 60000 } });
  const cases = [
    encodeRequest('create', {}),
    encodeRequest('create', { name: 'n', expiresInMs: undefined }),
    encodeRequest('show', { ref: 'latest' }),
    encodeRequest('delete', { refs: ['1', 'x'] }),
    encodeRequest('prune', { rules: { last: 3, daily: 0 }, dryRun: true }),
    encodeRequest('prune', { rules: { hourly: 24 }, dryRun: false, includeManual: true }),
    encodeRequest('hold', { refs: ['before-upgrade', '3'] }),
    encodeRequest('release', { refs: ['latest'] }),
    encodeRequest('status', {}),
    encodeRequest('list', {}),
    encodeRequest('cloneCreate', { snap: 'latest', name: 'c', force: true }),
    encodeRequest('cloneList', {}),
    encodeRequest('cloneReset', { name: 'c' }),
    encodeRequest('cloneDelete', { names: ['c', 'd'] }),
  ];
  for (const line of cases) {
    assert.ok(line.endsWith('\n') && line.indexOf('\n') === line.length - 1, 'one line');
    const r = parseRequest(line);
    assert.deepEqual({ cmd: r.method, ...r.args }, JSON.parse(line));
  }
  assert.deepEqual(new Set(cases.map((l) => parseRequest(l).method)), new Set(METHODS), 'every method has a schema');
});

test('replies keep their error type; a foreign answer is an operation error', () => {
  assert.deepEqual(parseReply('list', encodeReply({ ok: true, value: [] }), '/s'), []);
  assert.throws(() => parseReply('list', encodeReply({ ok: false, error: serializeError(new IntegrityError('bad crc')) }), '/s'), (e: Error) => e instanceof IntegrityError && e.message === 'bad crc');
  assert.throws(() => parseReply('list', encodeReply({ ok: false, error: serializeError(new UsageError('no such snapshot')) }), '/s'), UsageError);
  assert.throws(() => parseReply('list', '', '/s'), /the server closed its control socket \/s without an answer/);
  assert.throws(() => parseReply('list', '{"ok":"yes"}', '/s'), (e: Error) => e instanceof OperationError && /not a vsnap reply/.test(e.message));
});
