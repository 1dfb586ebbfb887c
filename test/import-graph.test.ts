// The layering of src/ (README "Development"), checked by
// scripts/import-graph.mjs: no import runs from a lower layer up, and a
// forked worker loads only worker modules and the layers below them.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const script = path.join(repo, 'scripts', 'import-graph.mjs');

function graph(...args: string[]): { code: number | null; out: string } {
  const r = spawnSync(process.execPath, [script, ...args], { cwd: repo, encoding: 'utf8' });
  return { code: r.status, out: r.stdout + r.stderr };
}

test('src/: every layering rule holds (ground floor, worker, coordinator, store/io/transport, commands<->serve) and no cycle', () => {
  const r = graph();
  process.stdout.write(r.out);
  assert.equal(r.code, 0, r.out);
  assert.doesNotMatch(r.out, /^\s+\[[a-z-]+\] /m);
  assert.match(r.out, /cycles between modules: none/);
  assert.match(r.out, /cycles between folders: none/);
  // What a worker loads at start-up: worker/ and the layers below only.
  const loads = /a worker \(worker\/main\) loads \d+ modules at start-up:\n((?:  .*\n)+)/.exec(r.out);
  assert.ok(loads, 'the script lists what a worker loads');
  for (const folder of ['coordinator', 'commands', 'serve', 'nbd', 'manifest', 'cli', 'session']) {
    assert.doesNotMatch(loads[1], new RegExp(`^  ${folder}\\b`, 'm'), `a worker loads ${folder}`);
  }
});

test('the script finds an upward import, a cycle and what a worker loads through it', () => {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'vsnap-graph-'));
  try {
    const write = (rel: string, text: string) => {
      fs.mkdirSync(path.dirname(path.join(root, rel)), { recursive: true });
      fs.writeFileSync(path.join(root, rel), text);
    };
    write('worker/main.ts', "import { a } from './engine.js';\nimport type { T } from '../commands/types.js';\n");
    write('worker/engine.ts', "import { hook } from '../coordinator/cluster.js';\nexport const a = 1;\n");
    write('coordinator/cluster.ts', "import { a } from '../worker/engine.js';\nexport const hook = 2;\n");
    write('commands/types.ts', 'export type T = number;\n');
    write('errors.ts', "import '../x/elsewhere.js';\n");
    const r = graph('--root', root, '--enforce', 'worker');
    assert.equal(r.code, 1, r.out);
    assert.match(r.out, /\[worker\] worker\/engine -> coordinator\/cluster/);
    assert.match(r.out, /\[worker\] worker\/main -> commands\/types \(type only\)/);
    assert.match(r.out, /\[worker\] worker\/main loads coordinator\/cluster at start-up/);
    assert.doesNotMatch(r.out, /loads commands\/types/, 'a type-only import loads nothing');
    assert.match(r.out, /cycles between modules: \n  coordinator\/cluster <-> worker\/engine/);
    const all = graph('--root', root, '--enforce', 'coordinator');
    assert.equal(all.code, 0, 'violations of rules not enforced are printed, not fatal');
    assert.match(all.out, /\[worker\] \(not enforced\) worker\/engine -> coordinator\/cluster/);
  } finally {
    fs.rmSync(root, { recursive: true, force: true });
  }
});

test('no source file is over 400 lines', () => {
  const long: string[] = [];
  const walk = (dir: string) => {
    for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
      const p = path.join(dir, e.name);
      if (e.isDirectory()) walk(p);
      else if (e.name.endsWith('.ts') && fs.readFileSync(p, 'utf8').split('\n').length - 1 > 400) long.push(path.relative(repo, p));
    }
  };
  walk(path.join(repo, 'src'));
  assert.deepEqual(long, []);
});
