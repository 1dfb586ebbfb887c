// Metadata contexts beyond base:allocation over a raw socket, with the server
// in-process and a device that offers two bitmap-like contexts: LIST and SET
// semantics, context ids, reply framing (one chunk per context, DONE on the
// last), flag masking, errors, and the EXTENDED_HEADERS refusal.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { BlockError, type BlockDevice, type BlockExtent, type MetaContext } from '../../src/block.js';
import { MiB, pattern } from './harness.js';
import { withInProcess } from './inprocess.js';
import { CMD, FLAG, OPT, REP, RawClient, expectType, infoData, metaData, type Chunk } from './raw-client.js';

const EXTENDED_HEADERS = 11;
const live = pattern(MiB, 5);

/** Context "a" (alias "1"): dirty in [64 KiB, 192 KiB), with a stray bit the mask must drop; "bad" always fails. */
function withContexts(d: BlockDevice): BlockDevice {
  const a: MetaContext = {
    flagMask: 1,
    async status(offset: number, length: number): Promise<BlockExtent[]> {
      const out: BlockExtent[] = [];
      for (const [start, end, flags] of [[0, 65536, 4], [65536, 196608, 5], [196608, MiB, 0]] as const) {
        const s = Math.max(start, offset);
        const e = Math.min(end, offset + length);
        if (e > s) out.push({ length: e - s, flags });
      }
      return out;
    },
  };
  const bad: MetaContext = {
    flagMask: 1,
    status: async () => {
      throw new BlockError('EIO', 'snapshot 9 was deleted');
    },
  };
  const ctx: Record<string, MetaContext> = { 'qemu:dirty-bitmap:a': a, 'qemu:dirty-bitmap:1': a, 'qemu:dirty-bitmap:bad': bad };
  return Object.assign(Object.create(d) as BlockDevice, {
    metaContexts: () => ['qemu:dirty-bitmap:a', 'qemu:dirty-bitmap:bad'],
    metaContext: (name: string) => ctx[name],
  });
}

async function fixed(socket: string): Promise<RawClient> {
  const c = await RawClient.connect(socket);
  await c.greeting();
  c.clientFlags(3);
  return c;
}

/** Replies to one LIST/SET: [id, name] per META_CONTEXT, up to the ACK. */
async function contextReplies(c: RawClient): Promise<[number, string][]> {
  const out: [number, string][] = [];
  for (;;) {
    const r = await c.optionReply();
    if (r.type === REP.ACK) return out;
    expectType(r, REP.META_CONTEXT);
    out.push([r.data.readUInt32BE(0), r.data.subarray(4).toString()]);
  }
}

function extentsOf(ch: Chunk): { id: number; extents: number[] } {
  const extents: number[] = [];
  for (let at = 4; at < ch.payload.length; at += 4) extents.push(ch.payload.readUInt32BE(at));
  return { id: ch.payload.readUInt32BE(0), extents };
}

test('LIST_META_CONTEXT: everything for no query, prefixes, exact names and aliases; unknown export is ERR_UNKNOWN; EXTENDED_HEADERS is refused', async () => {
  await withInProcess({ live, wrap: withContexts }, async (s) => {
    const c = await fixed(s.socket);
    c.sendOption(EXTENDED_HEADERS);
    const eh = expectType(await c.optionReply(), REP.ERR_UNSUP);
    assert.equal(eh.option, EXTENDED_HEADERS);
    c.sendOption(OPT.LIST_META, metaData('', []));
    assert.deepEqual(await contextReplies(c), [[0, 'base:allocation'], [0, 'qemu:dirty-bitmap:a'], [0, 'qemu:dirty-bitmap:bad']]);
    c.sendOption(OPT.LIST_META, metaData('', ['qemu:']));
    assert.deepEqual(await contextReplies(c), [[0, 'qemu:dirty-bitmap:a'], [0, 'qemu:dirty-bitmap:bad']]);
    c.sendOption(OPT.LIST_META, metaData('', ['qemu:dirty-bitmap:', 'base:']));
    assert.deepEqual(await contextReplies(c), [[0, 'qemu:dirty-bitmap:a'], [0, 'qemu:dirty-bitmap:bad'], [0, 'base:allocation']]);
    c.sendOption(OPT.LIST_META, metaData('', ['qemu:dirty-bitmap:1', 'qemu:dirty-bitmap:zz', 'x-other:thing']));
    assert.deepEqual(await contextReplies(c), [[0, 'qemu:dirty-bitmap:1']]);
    c.sendOption(OPT.LIST_META, metaData('no-such-export', []));
    expectType(await c.optionReply(), REP.ERR_UNKNOWN);
    // After all that, the connection still negotiates normally.
    c.sendOption(OPT.GO, infoData('', []));
    expectType(await c.optionReply(), REP.INFO);
    expectType(await c.optionReply(), REP.ACK);
    c.destroy();
  });
});

test('SET_META_CONTEXT selects several with distinct ids; BLOCK_STATUS sends one chunk each, DONE on the last, flags masked, REQ_ONE honoured', async () => {
  await withInProcess({ live, wrap: withContexts }, async (s) => {
    const c = await fixed(s.socket);
    c.sendOption(OPT.STRUCTURED_REPLY);
    expectType(await c.optionReply(), REP.ACK);
    c.sendOption(OPT.SET_META, metaData('', ['qemu:dirty-bitmap:a', 'base:allocation', 'qemu:dirty-bitmap:1', 'qemu:dirty-bitmap:a', 'qemu:', 'x:y']));
    const sel = await contextReplies(c);
    assert.deepEqual(sel.map(([, n]) => n), ['qemu:dirty-bitmap:a', 'base:allocation', 'qemu:dirty-bitmap:1'], 'exact names once each, names echoed as asked');
    const ids = sel.map(([id]) => id);
    assert.equal(new Set(ids).size, 3, 'distinct ids');
    assert.ok(ids.every((id) => id !== 0), 'nonzero ids');
    c.sendOption(OPT.GO, infoData('', []));
    for (;;) if ((await c.optionReply()).type === REP.ACK) break;

    c.request(CMD.BLOCK_STATUS, { cookie: 7n, offset: 4096, length: 300_000 });
    const chunks = [await c.chunk(), await c.chunk(), await c.chunk()];
    assert.deepEqual(chunks.map((ch) => [ch.type, ch.flags, ch.cookie]), [[5, 0, 7n], [5, 0, 7n], [5, 1, 7n]]);
    const byId = new Map(chunks.map((ch) => [extentsOf(ch).id, extentsOf(ch).extents]));
    assert.deepEqual(byId.get(ids[0]), [61440, 0, 131072, 1, 300_000 - 61440 - 131072, 0], 'stray flag bits dropped');
    assert.deepEqual(byId.get(ids[2]), byId.get(ids[0]));
    assert.deepEqual(byId.get(ids[1]), [300_000, 0]);

    c.request(CMD.BLOCK_STATUS, { cookie: 8n, flags: FLAG.REQ_ONE, offset: 100_000, length: 300_000 });
    const one = [await c.chunk(), await c.chunk(), await c.chunk()];
    assert.equal(one[2].flags, 1);
    const oneById = new Map(one.map((ch) => [extentsOf(ch).id, extentsOf(ch).extents]));
    assert.deepEqual(oneById.get(ids[0]), [96608, 1]);
    assert.deepEqual(oneById.get(ids[1]), [300_000, 0]);
    c.destroy();
  });
});

test('a failing context makes the whole BLOCK_STATUS one error chunk; contexts set for another export do not carry over', async () => {
  await withInProcess({ live, wrap: withContexts }, async (s) => {
    const c = await fixed(s.socket);
    c.sendOption(OPT.STRUCTURED_REPLY);
    expectType(await c.optionReply(), REP.ACK);
    c.sendOption(OPT.SET_META, metaData('', ['base:allocation', 'qemu:dirty-bitmap:bad']));
    assert.equal((await contextReplies(c)).length, 2);
    c.sendOption(OPT.GO, infoData('', []));
    for (;;) if ((await c.optionReply()).type === REP.ACK) break;
    c.request(CMD.BLOCK_STATUS, { cookie: 9n, offset: 0, length: 4096 });
    const err = await c.chunk();
    assert.deepEqual([err.type, err.flags, err.cookie, err.payload.readUInt32BE(0)], [0x8001, 1, 9n, 5]);
    // The connection goes on.
    c.request(CMD.READ, { cookie: 10n, offset: 0, length: 16 });
    const rd = await c.chunk();
    assert.equal(rd.cookie, 10n);
    c.destroy();

    const d = await fixed(s.socket);
    d.sendOption(OPT.STRUCTURED_REPLY);
    expectType(await d.optionReply(), REP.ACK);
    d.sendOption(OPT.SET_META, metaData('live', ['qemu:dirty-bitmap:a']));
    assert.equal((await contextReplies(d)).length, 1);
    d.sendOption(OPT.GO, infoData('', []));
    for (;;) if ((await d.optionReply()).type === REP.ACK) break;
    d.request(CMD.BLOCK_STATUS, { cookie: 11n, offset: 0, length: 4096 });
    const e = await d.chunk();
    assert.deepEqual([e.type, e.payload.readUInt32BE(0)], [0x8001, 22]);
    d.destroy();
  });
});
