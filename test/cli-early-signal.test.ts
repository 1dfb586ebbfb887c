// Ctrl-C in a command's first instants (formerly known gap E2 in
// docs/reliability.md): a signal to the whole process group while a worker
// node was still starting killed the worker before its handler existed, and
// the command ended with exit 1 ("worker 0 exited on signal SIGINT") instead
// of 130. The worker program now ignores SIGINT/SIGTERM as its first
// statement, and a worker killed by one of them before READY is replaced
// (coordinator/prefork.ts readyWorker), so the command stops in order.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { spawn } from 'node:child_process';
import { vsnap, tmpdir, BIN } from './helpers/cli.js';
import { readyWorker } from '../src/coordinator/prefork.js';

/** Pids of live processes in process group pgid (from /proc). */
function groupMembers(pgid: number): number[] {
  const out: number[] = [];
  for (const e of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(e)) continue;
    try {
      const stat = fs.readFileSync(`/proc/${e}/stat`, 'utf8');
      const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      // f[0] state, f[1] ppid, f[2] pgrp; a zombie has ended.
      if (Number(f[2]) === pgid && f[0] !== 'Z') out.push(Number(e));
    } catch {
      /* ended meanwhile */
    }
  }
  return out;
}

/** Run vsnap in a process group of its own, SIGINT the group after `delay` ms; how it ended, or 'done' if it ended first. */
async function interruptAt(args: string[], delay: number): Promise<{ how: string; stderr: string }> {
  const child = spawn(process.execPath, [BIN, ...args], { detached: true, stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, NO_COLOR: '1' } });
  let stderr = '';
  child.stderr!.on('data', (d: Buffer) => (stderr += d));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((r) => child.once('exit', (code, signal) => r({ code, signal })));
  await new Promise((r) => setTimeout(r, delay));
  let sent = false;
  if (child.exitCode === null && child.signalCode === null) {
    process.kill(-child.pid!, 'SIGINT');
    sent = true;
  }
  const end = await exited;
  // Nothing of the command outlives it for long: workers end in order, or on the closed link.
  const deadline = Date.now() + 10_000;
  while (groupMembers(child.pid!).length) {
    assert.ok(Date.now() < deadline, `processes of ${args[0]} left after it ended: ${groupMembers(child.pid!).join(', ')}`);
    await new Promise((r) => setTimeout(r, 20));
  }
  if (!sent) return { how: 'done', stderr };
  // Killed by the signal itself (before its handlers were installed: nothing was locked or started) is 130 to a shell too.
  return { how: end.signal === 'SIGINT' ? 'exit 130' : `exit ${end.code}`, stderr };
}

test('SIGINT to the process group in the first instants of create and restore: 130 (or done), never a worker death, nothing left', async (t) => {
  const { dir, cleanup } = tmpdir('vsnap-early-signal-');
  t.after(cleanup);
  const init = await vsnap(['init', dir, '--files', '1', '--file-size', '4MiB', '--partitions', '3', '--workers', '2']);
  assert.equal(init.code, 0, init.stderr);
  const manifest = path.join(dir, 'volume.json');
  assert.equal((await vsnap(['create', manifest, '--name', 'base'])).code, 0);
  let delivered = 0;
  for (const args of [['create', manifest], ['restore', manifest, 'base']]) {
    for (const delay of [0, 10, 25, 40, 60, 80, 110, 150, 200, 300, 450]) {
      const r = await interruptAt(args, delay);
      if (r.how === 'done') continue;
      delivered++;
      // 0: the signal came as the command was exiting (node had stopped handling signals); never 1, a worker's death.
      assert.ok(r.how === 'exit 130' || r.how === 'exit 0', `${args[0]}, SIGINT after ${delay} ms: ${r.how}: ${r.stderr}`);
      assert.doesNotMatch(r.stderr, /worker \d+ .*exited/, `${args[0]}, ${delay} ms`);
    }
    // The volume is usable afterwards: the lock was released, states recover if they must.
    const list = await vsnap(['list', manifest, '--json']);
    assert.equal(list.code, 0, list.stderr);
  }
  assert.ok(delivered >= 8, `only ${delivered} signals reached a running command`);
});

test('a worker killed by SIGINT or SIGTERM before READY is replaced; one that died otherwise is handed back dead', async (t) => {
  const { dir, cleanup } = tmpdir('vsnap-ready-worker-');
  t.after(cleanup);
  const marker = path.join(dir, 'started');
  // Dies of `signal` at its first start, says READY at its second.
  const program = (signal: string) => {
    const main = path.join(dir, `w-${signal}.cjs`);
    fs.writeFileSync(
      main,
      `const fs = require('node:fs');\nconst m = ${JSON.stringify(marker + signal)};\nif (!fs.existsSync(m)) { fs.writeFileSync(m, ''); process.kill(process.pid, ${JSON.stringify(signal)}); }\nelse { process.send({ t: 'ready', pid: process.pid }); process.on('disconnect', () => process.exit(0)); }\n`,
    );
    return main;
  };
  for (const sig of ['SIGINT', 'SIGTERM']) {
    const w = await readyWorker(program(sig));
    assert.equal(w.alive, true, `${sig}: the replacement is alive`);
    w.proc.kill();
    assert.equal(await w.proc.ended, 'on signal SIGKILL');
  }
  // SIGKILL (an OOM kill, say) is not a group's Ctrl-C: reported, not hidden.
  const dead = await readyWorker(program('SIGKILL'));
  assert.equal(await dead.proc.ended, 'on signal SIGKILL');
  assert.equal(dead.alive, false);
});
