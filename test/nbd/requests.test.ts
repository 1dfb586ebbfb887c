// Pure parts of the server: request checks, advertised flags and block
// sizes, extent normalisation, reply encoding. No sockets.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { blockSizes, transmissionFlags } from '../../src/nbd/export-info.js';
import { checkRequest, type ExportState, type Request } from '../../src/nbd/requests.js';
import { limitedUtf8, readChunks } from '../../src/nbd/replies.js';
import { normaliseExtents } from '../../src/nbd/transmission.js';

const live: ExportState = { size: 1 << 20, flags: transmissionFlags({ readOnly: false }, true), structuredReplies: true, metaContext: true };
const ro: ExportState = { ...live, flags: transmissionFlags({ readOnly: true }, true) };
const req = (r: Partial<Request>): Request => ({ flags: 0, type: 0, cookie: 1n, offset: 0n, length: 512, ...r });
const errnoOf = (r: Partial<Request>, e: ExportState = live) => {
  const v = checkRequest(req(r), e);
  return v.ok ? 'ok' : v.errno;
};

test('advertised flags match nbd-notes: 0x0DED live, 0x0D6D without structured replies, 0x0587 read-only', () => {
  assert.equal(transmissionFlags({ readOnly: false }, true), 0x0ded);
  assert.equal(transmissionFlags({ readOnly: false }, false), 0x0d6d);
  assert.equal(transmissionFlags({ readOnly: true }, true), 0x0587);
  assert.equal(transmissionFlags({ readOnly: true }, false), 0x0507);
});

test('preferred block size becomes a power of two between 512 and 32 MiB', () => {
  assert.deepEqual(blockSizes({ preferredBlockSize: 65536 }), { minimum: 1, preferred: 65536, maximum: 32 << 20 });
  assert.equal(blockSizes({ preferredBlockSize: 100 }).preferred, 512);
  assert.equal(blockSizes({ preferredBlockSize: 3000 }).preferred, 4096);
  assert.equal(blockSizes({ preferredBlockSize: 1 << 30 }).preferred, 32 << 20);
  assert.equal(blockSizes({ preferredBlockSize: 0 }).preferred, 4096);
});

test('bounds: reads past the end are EINVAL, writes ENOSPC, exactly at the end is fine', () => {
  assert.equal(errnoOf({ type: 0, offset: BigInt((1 << 20) - 512) }), 'ok');
  assert.equal(errnoOf({ type: 0, offset: BigInt((1 << 20) - 511) }), 'EINVAL');
  assert.equal(errnoOf({ type: 1, offset: BigInt(1 << 20), length: 1 }), 'ENOSPC');
  assert.equal(errnoOf({ type: 6, offset: 2n ** 64n - 1n, length: 2 }), 'ENOSPC');
  assert.equal(errnoOf({ type: 4, offset: 0n, length: (1 << 20) + 1 }), 'EINVAL');
  assert.equal(errnoOf({ type: 5, offset: BigInt(1 << 20), length: 1 }), 'EINVAL');
  assert.equal(errnoOf({ type: 7, offset: 0n, length: 0xffffffff }), 'EINVAL');
  assert.equal(errnoOf({ type: 1, offset: BigInt(1 << 20), length: 0 }), 'ok');
});

test('read-only exports refuse every write-ish command with EPERM, before any other check', () => {
  for (const type of [1, 4, 6]) assert.equal(errnoOf({ type, offset: 2n ** 63n, flags: 0xffff }, ro), 'EPERM');
  assert.equal(errnoOf({ type: 3, length: 0 }, ro), 'ok');
  assert.equal(errnoOf({ type: 5 }, ro), 'ok');
  assert.equal(errnoOf({ type: 0, flags: 1 }, ro), 'EINVAL', 'FUA is not advertised read-only');
});

test('flags are checked against the command and what was advertised', () => {
  assert.equal(errnoOf({ type: 1, flags: 1 }), 'ok');
  assert.equal(errnoOf({ type: 6, flags: 1 | 2 | 16 }), 'ok');
  assert.equal(errnoOf({ type: 7, flags: 8 }), 'ok');
  assert.equal(errnoOf({ type: 0, flags: 4 }), 'ok');
  assert.equal(errnoOf({ type: 1, flags: 2 }), 'EINVAL');
  assert.equal(errnoOf({ type: 0, flags: 8 }), 'EINVAL');
  assert.equal(errnoOf({ type: 1, flags: 4 }), 'EINVAL');
  assert.equal(errnoOf({ type: 0, flags: 4 }, { ...live, structuredReplies: false, flags: transmissionFlags({ readOnly: false }, false) }), 'EINVAL');
  assert.equal(errnoOf({ type: 0, flags: 32 }), 'EINVAL');
  assert.equal(errnoOf({ type: 7 }, { ...live, metaContext: false }), 'EINVAL');
  assert.equal(errnoOf({ type: 2 }), 'EINVAL', 'DISC is handled before checking');
  assert.equal(errnoOf({ type: 8 }), 'EINVAL');
  assert.equal(errnoOf({ type: 3, length: 0, offset: 1n }), 'EINVAL');
});

test('payload limits: 64 MiB accepted, more is EOVERFLOW; DF reads over 32 MiB are EOVERFLOW', () => {
  const big: ExportState = { ...live, size: 2 ** 40 };
  assert.equal(errnoOf({ type: 1, length: 64 << 20 }, big), 'ok');
  assert.equal(errnoOf({ type: 0, length: (64 << 20) + 1 }, big), 'EOVERFLOW');
  assert.equal(errnoOf({ type: 0, length: (32 << 20) + 1, flags: 4 }, big), 'EOVERFLOW');
  assert.equal(errnoOf({ type: 6, length: 0xffffffff }, big), 'ok', 'WRITE_ZEROES carries no payload');
  const v = checkRequest(req({ type: 0, offset: 2n ** 40n - 512n }), big);
  assert.deepEqual(v, { ok: true, offset: 2 ** 40 - 512 });
});

test('extents are clipped, merged, stripped of unknown bits, and cut to one with REQ_ONE', () => {
  const ext = [
    { length: 100, flags: 0 },
    { length: 0, flags: 2 },
    { length: 50, flags: 4 },
    { length: 200, flags: 3 },
    { length: 999, flags: 0 },
  ];
  assert.deepEqual(normaliseExtents(ext, 300, false), [
    { length: 150, flags: 0 },
    { length: 150, flags: 3 },
  ]);
  assert.deepEqual(normaliseExtents(ext, 120, true), [{ length: 120, flags: 0 }]);
  assert.throws(() => normaliseExtents([], 10, false), /no extents/);
  assert.throws(() => normaliseExtents([{ length: -1, flags: 0 }], 10, false), /length -1/);
});

test('messages are cut at 4096 bytes on a character boundary', () => {
  const b = limitedUtf8('a' + '€'.repeat(2000));
  assert.ok(b.length <= 4096);
  assert.equal(b.toString('utf8'), 'a' + '€'.repeat(1365));
});

test('read data is split into chunks of the given maximum with DONE only on the last', () => {
  const data = Buffer.from('abcdefghij');
  const out = readChunks(5n, 1000, data, 4);
  const chunks: Array<[number, number, string]> = [];
  for (let at = 0; at < out.length; ) {
    const len = out.readUInt32BE(at + 16);
    chunks.push([out.readUInt16BE(at + 4), Number(out.readBigUInt64BE(at + 20)), out.subarray(at + 28, at + 20 + len).toString()]);
    assert.equal(out.readBigUInt64BE(at + 8), 5n);
    at += 20 + len;
  }
  assert.deepEqual(chunks, [
    [0, 1000, 'abcd'],
    [0, 1004, 'efgh'],
    [1, 1008, 'ij'],
  ]);
});
