// The control socket of a running `vsnap serve` under malformed and hostile
// requests, sent with a raw client: each gets one clean usage-error reply
// naming the problem (never "internal error"), the server keeps serving,
// and list/create from the CLI still go through it afterwards.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { vsnap, tmpdir } from '../helpers/cli.js';
import { makeFixture } from '../helpers/volume-fixture.js';
import { startServe } from './harness.js';

const TIMEOUT_MS = 1500;

interface Answer {
  text: string;
  reply: { ok: boolean; value?: unknown; error?: { kind: string; message: string } };
  ms: number;
}

/** Send raw bytes (optionally half-closing), collect everything until the server closes. */
function ask(socket: string, data: string | Buffer, o: { end?: boolean } = {}): Promise<Answer> {
  const t0 = Date.now();
  return new Promise((resolve, reject) => {
    const conn = net.createConnection(socket);
    const got: Buffer[] = [];
    let done = false;
    const finish = () => {
      if (done) return;
      done = true;
      const text = Buffer.concat(got).toString();
      try {
        resolve({ text, reply: JSON.parse(text.split('\n')[0]), ms: Date.now() - t0 });
      } catch {
        reject(new Error(`no JSON reply line: ${JSON.stringify(text)}`));
      }
    };
    conn.on('connect', () => {
      // A big write the server stops reading may fail with EPIPE: that is fine.
      if (data.length) conn.write(data, () => {});
      if (o.end) conn.end();
    });
    conn.on('data', (d: Buffer) => got.push(d));
    conn.on('error', () => finish());
    conn.on('close', () => finish());
    setTimeout(() => reject(new Error(`no answer within 20 s to ${String(data).slice(0, 60)}`)), 20_000).unref();
  });
}

function assertRefused(a: Answer, re: RegExp, what: string): void {
  assert.equal(a.reply.ok, false, `${what}: ${a.text}`);
  assert.equal(a.reply.error?.kind, 'usage', `${what}: ${a.text}`);
  assert.match(a.reply.error!.message, re, what);
  assert.doesNotMatch(a.text, /internal|stack|at .*\.js:/i, what);
  assert.equal(a.text.split('\n').filter(Boolean).length, 1, `${what}: one reply line`);
}

test('malformed control requests get a clean usage error and the server keeps serving', async () => {
  const t = tmpdir();
  const fx = makeFixture(t.dir);
  const srv = await startServe(fx.manifest, [], { VSNAP_CONTROL_TIMEOUT_MS: String(TIMEOUT_MS) });
  try {
    const st = await vsnap(['status', fx.manifest, '--json']);
    assert.equal(st.code, 0, st.stderr);
    const control = JSON.parse(st.stdout).heldBy.socket as string;
    assert.equal(JSON.parse(st.stdout).heldBy.pid, srv.proc.pid);

    // A connection that never finishes its line is open the whole time: it must not block the others.
    const stalled = ask(control, '{"cmd":"li');
    stalled.catch(() => {}); // awaited below; not an unhandled rejection if an earlier assertion fails

    const cases: [string | Buffer, RegExp][] = [
      ['not json\n', /the request is not JSON/],
      ['[1,2]\n', /must be a JSON object/],
      ['{"cmd":"frobnicate"}\n', /cmd: unknown command "frobnicate" \(expected one of create, list, show, delete, prune, status, cloneCreate, cloneList, cloneReset, cloneDelete, hold, release\)/],
      ['{"cmd":"constructor"}\n', /unknown command "constructor"/],
      ['{"cmd":"show","ref":42}\n', /show: ref must be a string \(got 42\)/],
      ['{"cmd":"show"}\n', /show: ref is required/],
      ['{"cmd":"delete","refs":"1"}\n', /delete: refs must be an array \(got "1"\)/],
      ['{"cmd":"create","expiresInMs":"1h"}\n', /create: expiresInMs must be a number \(got "1h"\)/],
      ['{"cmd":"prune","rules":{"last":"3"},"dryRun":false}\n', /prune: rules\.last must be a number \(got "3"\)/],
      ['{"cmd":"list","all":true}\n', /list: unknown field "all"/],
      ['{"cmd":"create","name":"../evil"}\n', /--name/],
      ['{"cmd":"show","ref":"no-such-snapshot"}\n', /no-such-snapshot/],
      [Buffer.from([0xff, 0xfe, 0x00, 0x0a]), /the request is not JSON/],
    ];
    for (const [data, re] of cases) assertRefused(await ask(control, data), re, String(data).trim());

    // Longer than the limit, no newline: refused once the limit is passed, not after reading it all.
    const huge = await ask(control, Buffer.alloc(3 << 20, 0x78));
    assertRefused(huge, /request longer than 1048576 bytes/, 'huge line');
    // A client that closes without asking anything.
    assertRefused(await ask(control, '', { end: true }), /the connection ended without a request/, 'empty');

    // Meanwhile the CLI still goes through the server.
    const l0 = await vsnap(['list', fx.manifest, '--json']);
    assert.equal(l0.code, 0, l0.stderr);
    assert.deepEqual(JSON.parse(l0.stdout), []);

    const s = await stalled;
    assertRefused(s, /no complete request \(one JSON line ending in a newline\) within 1500 ms/, 'never-ending line');
    assert.ok(s.ms >= TIMEOUT_MS - 100, `timed out after ${s.ms} ms`);

    // A request whose client half-closes instead of sending a newline is still answered.
    const half = await ask(control, '{"cmd":"list"}', { end: true });
    assert.equal(half.reply.ok, true, half.text);
    assert.deepEqual(half.reply.value, []);

    // And nothing reached the server's log as an internal error; create and list work.
    const c = await vsnap(['create', fx.manifest, '--name', 'after', '--json']);
    assert.equal(c.code, 0, c.stderr);
    assert.equal(JSON.parse(c.stdout).name, 'after');
    const l1 = await vsnap(['list', fx.manifest, '--json']);
    assert.equal(l1.code, 0, l1.stderr);
    assert.deepEqual(
      JSON.parse(l1.stdout).map((x: { name: string }) => x.name),
      ['after'],
    );
    // A bad request through the CLI path keeps its exit code.
    const bad = await vsnap(['show', fx.manifest, 'nope']);
    assert.equal(bad.code, 2, bad.stderr);
    assert.doesNotMatch(srv.log(), /internal error|please report/i);
    assert.equal(srv.proc.exitCode, null, 'server still running');
    // Shutdown does not wait for a client that never finishes asking.
    const idle = ask(control, '{').then(
      (a) => a.text,
      () => 'closed unanswered',
    );
    await new Promise((r) => setTimeout(r, 100));
    const t0 = Date.now();
    await srv.stop();
    assert.equal(await idle, 'closed unanswered');
    assert.ok(Date.now() - t0 < 10_000, 'stopped promptly');
  } finally {
    if (srv.proc.exitCode === null) srv.proc.kill('SIGKILL');
    t.cleanup();
  }
});
