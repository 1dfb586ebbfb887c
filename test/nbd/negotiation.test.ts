// Option haggling over a raw socket: every option the server knows, the ones
// it does not, and the limits that keep a client from hogging a connection.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { MiB, pattern } from './harness.js';
import { withInProcess } from './inprocess.js';
import { OPT, REP, RawClient, expectType, infoData, metaData, str32 } from './raw-client.js';

const SIZE = MiB;
const live = pattern(SIZE, 90);

async function fixed(socket: string): Promise<RawClient> {
  const c = await RawClient.connect(socket);
  assert.equal(await c.greeting(), 3, 'FIXED_NEWSTYLE | NO_ZEROES');
  c.clientFlags(3);
  return c;
}

test('client flags the server did not offer drop the connection', async () => {
  await withInProcess({ live }, async (s) => {
    const c = await RawClient.connect(s.socket);
    await c.greeting();
    c.clientFlags(1 | 4);
    assert.equal(await c.closesWithin(2000), true);
  });
});

test('unknown options, STARTTLS and bad option data are refused and negotiation goes on', async () => {
  await withInProcess({ live }, async (s) => {
    const c = await fixed(s.socket);
    c.sendOption(4, Buffer.from('peek'));
    expectType(await c.optionReply(), REP.ERR_UNSUP);
    c.sendOption(11);
    expectType(await c.optionReply(), REP.ERR_UNSUP);
    c.sendOption(0x7fff, Buffer.alloc(300, 1));
    expectType(await c.optionReply(), REP.ERR_UNSUP);
    c.sendOption(OPT.STARTTLS);
    expectType(await c.optionReply(), REP.ERR_UNSUP);
    c.sendOption(OPT.LIST, Buffer.from('x'));
    expectType(await c.optionReply(), REP.ERR_INVALID);
    c.sendOption(OPT.STRUCTURED_REPLY, Buffer.from('x'));
    expectType(await c.optionReply(), REP.ERR_INVALID);
    // INFO whose length disagrees with its content (one info request announced, none sent).
    c.sendOption(OPT.INFO, Buffer.concat([str32('live'), Buffer.from([0, 1])]));
    const bad = expectType(await c.optionReply(), REP.ERR_INVALID);
    assert.ok(bad.data.length > 0 && bad.data.length <= 4096, 'error carries a message');
    c.sendOption(OPT.INFO, infoData('no-such-export', []));
    expectType(await c.optionReply(), REP.ERR_UNKNOWN);
    // ...and the connection still reaches transmission.
    c.sendOption(OPT.GO, infoData('live', []));
    const info = expectType(await c.optionReply(), REP.INFO);
    assert.equal(info.data.readBigUInt64BE(2), BigInt(SIZE));
    expectType(await c.optionReply(), REP.ACK);
    c.destroy();
  });
});

test('INFO always carries INFO_EXPORT and, when asked, block sizes QEMU accepts', async () => {
  await withInProcess({ live }, async (s) => {
    const c = await fixed(s.socket);
    c.sendOption(OPT.INFO, infoData('', [3, 1]));
    const infos = new Map<number, Buffer>();
    for (;;) {
      const r = await c.optionReply();
      if (r.type === REP.ACK) break;
      expectType(r, REP.INFO);
      infos.set(r.data.readUInt16BE(0), r.data);
    }
    const exp = infos.get(0);
    assert.ok(exp, 'INFO_EXPORT sent unasked');
    assert.equal(exp.readBigUInt64BE(2), BigInt(SIZE));
    assert.equal(exp.readUInt16BE(10), 0x0d6d, 'live flags without structured replies');
    assert.equal(infos.get(1)?.subarray(2).toString(), '', 'INFO_NAME');
    const bs = infos.get(3);
    assert.ok(bs);
    const [min, pref, max] = [bs.readUInt32BE(2), bs.readUInt32BE(6), bs.readUInt32BE(10)];
    const pow2 = (n: number) => n > 0 && (n & (n - 1)) === 0;
    assert.ok(pow2(min) && pow2(pref) && pref >= min && max >= min && max % min === 0 && SIZE % min === 0, `${min} ${pref} ${max}`);
    assert.deepEqual([min, pref, max], [1, 65536, 32 * MiB]);
    // INFO stays in negotiation: a LIST still works.
    c.sendOption(OPT.LIST);
    const names: string[] = [];
    for (;;) {
      const r = await c.optionReply();
      if (r.type === REP.ACK) break;
      expectType(r, REP.SERVER);
      names.push(r.data.subarray(4, 4 + r.data.readUInt32BE(0)).toString());
    }
    assert.deepEqual(names, ['', 'live']);
    c.destroy();
  });
});

test('meta contexts: LIST answers base:allocation, SET needs structured replies and selects only an exact match', async () => {
  await withInProcess({ live }, async (s) => {
    const c = await fixed(s.socket);
    c.sendOption(OPT.SET_META, metaData('', ['base:allocation']));
    expectType(await c.optionReply(), REP.ERR_INVALID);
    for (const queries of [[], ['base:']]) {
      c.sendOption(OPT.LIST_META, metaData('', queries));
      const r = expectType(await c.optionReply(), REP.META_CONTEXT);
      assert.equal(r.data.readUInt32BE(0), 0);
      assert.equal(r.data.subarray(4).toString(), 'base:allocation');
      expectType(await c.optionReply(), REP.ACK);
    }
    c.sendOption(OPT.STRUCTURED_REPLY);
    expectType(await c.optionReply(), REP.ACK);
    c.sendOption(OPT.SET_META, metaData('', ['qemu:dirty-bitmap:x', 'base:']));
    expectType(await c.optionReply(), REP.ACK);
    c.sendOption(OPT.SET_META, metaData('', ['x-foo:bar', 'base:allocation']));
    const sel = expectType(await c.optionReply(), REP.META_CONTEXT);
    assert.notEqual(sel.data.readUInt32BE(0), 0, 'SET hands out a nonzero id');
    expectType(await c.optionReply(), REP.ACK);
    c.sendOption(OPT.SET_META, Buffer.concat([metaData('', ['base:allocation']), Buffer.from([1])]));
    expectType(await c.optionReply(), REP.ERR_INVALID);
    c.destroy();
  });
});

test('plain newstyle: only EXPORT_NAME is valid, and its reply is padded with 124 zeroes', async () => {
  await withInProcess({ live }, async (s) => {
    const c = await RawClient.connect(s.socket);
    await c.greeting();
    c.clientFlags(0);
    c.sendOption(OPT.LIST);
    expectType(await c.optionReply(), REP.ERR_INVALID);
    c.sendOption(OPT.EXPORT_NAME, Buffer.from('live'));
    const r = await c.read(10 + 124);
    assert.equal(r.readBigUInt64BE(0), BigInt(SIZE));
    assert.equal(r.readUInt16BE(8), 0x0d6d);
    assert.ok(r.subarray(10).equals(Buffer.alloc(124)));
    c.destroy();
  });
});

test('EXPORT_NAME for an unknown export closes the connection', async () => {
  await withInProcess({ live }, async (s) => {
    const c = await fixed(s.socket);
    c.sendOption(OPT.EXPORT_NAME, Buffer.from('snapshot/missing'));
    assert.equal(await c.closesWithin(2000), true);
    assert.ok(s.logs.some((l) => /unknown export "snapshot\/missing"/.test(l)));
  });
});

test('ABORT is acknowledged and the connection closed', async () => {
  await withInProcess({ live }, async (s) => {
    const c = await fixed(s.socket);
    c.sendOption(OPT.ABORT);
    expectType(await c.optionReply(), REP.ACK);
    assert.equal(await c.closesWithin(2000), true);
    assert.ok(!s.logs.some((l) => /socket error|negotiation ended/.test(l)), s.logs.join('\n'));
  });
});

test('a client past the option limit is refused and dropped', async () => {
  await withInProcess({ live, server: { maxOptions: 5 } }, async (s) => {
    const c = await fixed(s.socket);
    for (let i = 0; i < 5; i++) {
      c.sendOption(OPT.STRUCTURED_REPLY);
      expectType(await c.optionReply(), REP.ACK);
    }
    c.sendOption(OPT.STRUCTURED_REPLY);
    expectType(await c.optionReply(), REP.ERR_POLICY);
    assert.equal(await c.closesWithin(2000), true);
  });
});

test('an option announcing megabytes of data is dropped without reading them', async () => {
  await withInProcess({ live }, async (s) => {
    const c = await fixed(s.socket);
    c.sendOption(0x1234, Buffer.alloc(0), 16 * MiB);
    expectType(await c.optionReply(), REP.ERR_TOO_BIG);
    assert.equal(await c.closesWithin(2000), true);
  });
});
