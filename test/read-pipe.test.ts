// `vsnap read` into a pipe whose reader stops early (`| head -c 100`, `| true`),
// through the real binary in a shell with `set -o pipefail`: exit 0 with
// nothing on stderr (the reader has what it wanted, docs/decisions.md "A
// closed stdout pipe"), no worker process left behind, and every partition
// closed in order (status says clean, not "recovered after crash"). The
// bytes that did arrive are the volume's.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import { BIN, vsnap, tmpdir } from './helpers/cli.js';
import { makeFixture, liveFromFiles } from './helpers/volume-fixture.js';

/** Run a bash pipeline; resolves with its exit code, stdout and stderr. */
function sh(script: string, env: Record<string, string>): Promise<{ code: number; stdout: Buffer; stderr: string }> {
  return new Promise((resolve) => {
    execFile('bash', ['-c', `set -o pipefail\n${script}`], { env: { ...process.env, NO_COLOR: '1', ...env }, encoding: 'buffer', maxBuffer: 64 << 20 }, (err, stdout, stderr) => {
      resolve({ code: err ? ((err as { code?: number }).code ?? -1) : 0, stdout, stderr: stderr.toString() });
    });
  });
}

/** Pids of this user's processes whose environment holds `tag` (the vsnap run and the workers it forked). */
function tagged(tag: string): number[] {
  const out: number[] = [];
  for (const d of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      if (fs.readFileSync(`/proc/${d}/environ`).includes(`VSNAP_PIPE_TAG=${tag}`)) out.push(Number(d));
    } catch {
      /* gone, or another user's */
    }
  }
  return out;
}

async function noneLeft(tag: string): Promise<void> {
  // The workers are closed before vsnap exits; a moment for the kernel to reap them.
  for (let i = 0; i < 40 && tagged(tag).length; i++) await new Promise((r) => setTimeout(r, 50));
  assert.deepEqual(tagged(tag), [], 'processes of the vsnap run still alive');
}

test('vsnap read | head -c 100 (and | true) under pipefail: exit 0, quiet, no worker left, partitions clean', { timeout: 120_000 }, async () => {
  const t = tmpdir();
  try {
    const fx = makeFixture(t.dir, { scale: 64 });
    assert.ok(fx.size > 1 << 20, 'more than a pipe buffer, so the reader really goes away mid-stream');
    const c = await vsnap(['create', fx.manifest]);
    assert.equal(c.code, 0, c.stderr);
    const live = liveFromFiles(fx);
    const read = `node ${JSON.stringify(BIN)} read ${JSON.stringify(fx.manifest)} --offset 0 --length ${fx.size}`;
    const cases: [string, string, Buffer][] = [
      ['head', `${read} | head -c 100`, live.subarray(0, 100)],
      ['head of a snapshot', `${read} --snapshot latest | head -c 70000`, live.subarray(0, 70000)],
      ['true', `${read} | true`, Buffer.alloc(0)],
      // The whole stream still arrives when the reader wants it all.
      ['cat', `${read} | cat`, live],
    ];
    for (const [what, script, want] of cases) {
      const tag = randomBytes(8).toString('hex');
      const r = await sh(script, { VSNAP_PIPE_TAG: tag });
      assert.equal(r.code, 0, `${what}: exit ${r.code}, stderr: ${r.stderr}`);
      assert.equal(r.stderr, '', `${what}: stderr`);
      assert.ok(r.stdout.equals(want), `${what}: ${r.stdout.length} bytes, not the volume's first ${want.length}`);
      await noneLeft(tag);
      const s = await vsnap(['status', fx.manifest, '--json']);
      assert.equal(s.code, 0, s.stderr);
      const parts = (JSON.parse(s.stdout) as { partitions: { id: string; clean: boolean }[] }).partitions;
      assert.deepEqual(parts.filter((p) => !p.clean).map((p) => p.id), [], `${what}: partitions left unclean (workers not closed in order)`);
      assert.doesNotMatch((await vsnap(['status', fx.manifest])).stdout, /recovered after crash/);
    }
    // No spool or temporary file left beside the volume either.
    assert.deepEqual(fs.readdirSync(t.dir).filter((n) => /tmp/.test(n)), []);
  } finally {
    t.cleanup();
  }
});
