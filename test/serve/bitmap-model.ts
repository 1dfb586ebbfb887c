// A model of which blocks changed between snapshots, built from the writes a
// test makes (never from vsnap), and the small Python/libnbd programs the
// dirty-bitmap and backup tests drive the server with.
import assert from 'node:assert/strict';
import { rng } from '../helpers/volume-fixture.js';
import { runOk, SYSTEM_PYTHON_ENV } from '../nbd/harness.js';

export interface Range {
  offset: number;
  length: number;
}

/** Random writes (seeded) as [offset, length] pairs inside a volume of `size` bytes. */
export function randomWrites(seed: number, size: number, count: number, maxLength: number): [number, number][] {
  const r = rng(seed);
  const out: [number, number][] = [];
  for (let i = 0; i < count; i++) {
    const length = 1 + Math.floor(r() * maxLength);
    const offset = Math.floor(r() * (size - length));
    out.push([offset, length]);
  }
  return out;
}

/** The blocks a set of writes touches. */
export function touchedBlocks(writes: readonly [number, number][], blockSize: number): Set<number> {
  const s = new Set<number>();
  for (const [off, len] of writes) for (let b = Math.floor(off / blockSize); b < Math.ceil((off + len) / blockSize); b++) s.add(b);
  return s;
}

/** A block set as merged byte ranges, clipped to the volume. */
export function blocksToRanges(blocks: Iterable<number>, blockSize: number, size: number): Range[] {
  const sorted = [...new Set(blocks)].sort((a, b) => a - b);
  const out: Range[] = [];
  for (const b of sorted) {
    const offset = b * blockSize;
    const length = Math.min(blockSize, size - offset);
    const last = out[out.length - 1];
    if (last && last.offset + last.length === offset) last.length += length;
    else out.push({ offset, length });
  }
  return out;
}

/** The dirty ranges of `nbdinfo --map=qemu:dirty-bitmap:...` output ("offset length flags description" per line). */
export function dirtyFromNbdinfo(stdout: string): Range[] {
  const out: Range[] = [];
  let expect = 0;
  for (const line of stdout.split('\n')) {
    const m = /^\s*(\d+)\s+(\d+)\s+(\d+)/.exec(line);
    if (!m) continue;
    const [offset, length, flags] = [Number(m[1]), Number(m[2]), Number(m[3])];
    assert.equal(offset, expect, `nbdinfo extents are consecutive (${line})`);
    expect = offset + length;
    if (flags & 1) out.push({ offset, length });
  }
  return out;
}

/** Union of block sets. */
export function union(sets: Iterable<Set<number>>): Set<number> {
  const out = new Set<number>();
  for (const s of sets) for (const b of s) out.add(b);
  return out;
}

/** Write seeded random bytes at each [offset, length] through libnbd (one connection), then flush. */
export async function writeThrough(uri: string, writes: readonly ([number, number] | [number, number, 'zero' | 'trim'])[], seed: number): Promise<void> {
  // [offset, length] writes random bytes; a third element 'zero' or 'trim' sends WRITE_ZEROES or TRIM instead.
  const py = [
    'import nbd, json, random, sys',
    'h = nbd.NBD()',
    'h.connect_uri(sys.argv[1])',
    'r = random.Random(int(sys.argv[3]))',
    'for w in json.loads(sys.argv[2]):',
    '    off, n = w[0], w[1]',
    '    if len(w) > 2 and w[2] == "zero": h.zero(n, off)',
    '    elif len(w) > 2 and w[2] == "trim": h.trim(n, off)',
    '    else: h.pwrite(r.randbytes(n), off)',
    'h.flush()',
    'h.shutdown()',
  ].join('\n');
  await runOk('python3', ['-c', py, uri, JSON.stringify(writes), String(seed)], { env: SYSTEM_PYTHON_ENV });
}

/** One BLOCK_STATUS reply as libnbd delivers it: per context name, each callback's flat [length, flags, ...] list. */
export type StatusReply = Record<string, number[][]>;

/**
 * Connect with these meta contexts and send BLOCK_STATUS for each [offset,
 * length, reqOne]; returns the contexts the server selected and the replies.
 */
export async function blockStatusThrough(uri: string, contexts: string[], requests: [number, number, boolean][]): Promise<{ selected: string[]; replies: StatusReply[] }> {
  const py = [
    'import nbd, json, sys',
    'h = nbd.NBD()',
    'ctxs = json.loads(sys.argv[2])',
    'for c in ctxs: h.add_meta_context(c)',
    'h.connect_uri(sys.argv[1])',
    'out = []',
    'for off, n, one in json.loads(sys.argv[3]):',
    '    got = {}',
    '    def cb(ctx, o, ents, err):',
    '        assert o == off, (o, off)',
    '        got.setdefault(ctx, []).append(list(ents))',
    '        return 0',
    '    h.block_status(n, off, cb, nbd.CMD_FLAG_REQ_ONE if one else 0)',
    '    out.append(got)',
    'print(json.dumps({"selected": [c for c in ctxs if h.can_meta_context(c)], "replies": out}))',
    'h.shutdown()',
  ].join('\n');
  const r = await runOk('python3', ['-c', py, uri, JSON.stringify(contexts), JSON.stringify(requests)], { env: SYSTEM_PYTHON_ENV });
  return JSON.parse(r.stdout);
}

/** The contexts NBD_OPT_LIST_META_CONTEXT answers for an export, for these queries. */
export async function listContextsThrough(uri: string, queries: string[]): Promise<string[]> {
  const py = [
    'import nbd, json, sys',
    'h = nbd.NBD()',
    'h.set_opt_mode(True)',
    'h.connect_uri(sys.argv[1])',
    'for q in json.loads(sys.argv[2]): h.add_meta_context(q)',
    'out = []',
    'h.opt_list_meta_context(lambda name: out.append(name) or 0)',
    'print(json.dumps(out))',
    'h.opt_abort()',
  ].join('\n');
  const r = await runOk('python3', ['-c', py, uri, JSON.stringify(queries)], { env: SYSTEM_PYTHON_ENV });
  return JSON.parse(r.stdout);
}

/**
 * Check one context's extents of a reply against the dirty ranges of the
 * model: consecutive from `offset`, at most `length` in total (exactly one
 * extent with REQ_ONE), block-aligned ends except at the request's end, and
 * each byte dirty exactly where the model says.
 */
export function checkExtents(flat: number[], offset: number, length: number, reqOne: boolean, blockSize: number, dirty: Range[], what: string): void {
  assert.ok(flat.length >= 2 && flat.length % 2 === 0, `${what}: at least one extent`);
  if (reqOne) assert.equal(flat.length, 2, `${what}: REQ_ONE gives one extent`);
  let at = offset;
  for (let i = 0; i < flat.length; i += 2) {
    const [len, flags] = [flat[i], flat[i + 1]];
    assert.ok(len > 0, `${what}: extent lengths are nonzero`);
    const end = at + len;
    assert.ok(end <= offset + length, `${what}: extents stay inside the request (${end} > ${offset + length})`);
    if (end !== offset + length) assert.equal(end % blockSize, 0, `${what}: extent ends at ${end}, not on a block boundary`);
    // Every byte of the extent is dirty iff the model says so: check the extent's ends and every boundary inside.
    const isDirty = (x: number) => dirty.some((r) => x >= r.offset && x < r.offset + r.length);
    for (const x of [at, end - 1, ...dirty.flatMap((r) => [r.offset, r.offset + r.length - 1, r.offset - 1, r.offset + r.length]).filter((x) => x >= at && x < end)]) {
      assert.equal(isDirty(x), (flags & 1) === 1, `${what}: byte ${x} in extent [${at}, ${end}) flags ${flags}`);
    }
    at = end;
  }
}
