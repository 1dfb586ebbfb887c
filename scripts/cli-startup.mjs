// The CLI's fixed cost, part by part (docs/performance.md "Fixed cost of the
// CLI"): wall time of `node -e 0`, `vsnap --version`, `vsnap list` and
// `vsnap create` on a small volume, the worker's fork -> READY, and where a
// run's time goes (VSNAP_STARTUP_TRACE marks, src/cli/startup-trace.ts).
//
//   npm run build && node scripts/cli-startup.mjs [--runs 20] [ROOT...]
//
// ROOT is a built checkout (default: this one); with several (e.g. a build
// of an older commit), their runs alternate, so a machine busy with other
// work slows them alike. Prints medians. The volume (3 x 64 MiB files, 4
// partitions, 2 workers) lives on /dev/shm when there is one; `create` runs
// on a fresh copy of it each time (the copy is not timed), `list` on one
// with a single snapshot.
import { spawnSync, fork } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const argv = process.argv.slice(2);
let runs = 20;
const roots = [];
for (let i = 0; i < argv.length; i++) {
  if (argv[i] === '--runs') runs = Number(argv[++i]);
  else roots.push(path.resolve(argv[i]));
}
if (!Number.isInteger(runs) || runs < 1) {
  process.stderr.write(`--runs: a positive integer (got ${runs})\n`);
  process.exit(2);
}
if (roots.length === 0) roots.push(path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..'));

const median = (xs) => {
  const t = [...xs].sort((a, b) => a - b);
  return t.length % 2 ? t[(t.length - 1) / 2] : (t[t.length / 2 - 1] + t[t.length / 2]) / 2;
};

/** The code cache uses the traced runs reported. */
const caches = new Set();

/** Run `node args`, returning wall ms and the trace marks found on stderr. */
function timed(args, env = {}) {
  const t0 = process.hrtime.bigint();
  const r = spawnSync(process.execPath, args, { encoding: 'utf8', env: { ...process.env, NO_COLOR: '1', ...env } });
  const ms = Number(process.hrtime.bigint() - t0) / 1e6;
  if (r.status !== 0) throw new Error(`node ${args.join(' ')} exited ${r.status}: ${r.stderr}`);
  const marks = {};
  const line = /^vsnap-trace (.*)$/m.exec(r.stderr);
  for (const kv of line ? line[1].split(' ') : []) {
    const [k, v] = kv.split('=');
    // cache=hit|none|...: what became of the bundle's code cache (src/cli/bundle-loader.ts).
    if (k === 'cache') caches.add(v);
    else marks[k] = Number(v);
  }
  return { ms, marks };
}

/** The worker entry a root's CLI forks: its bundle when built, else the compiled module. */
function workerMain(root) {
  for (const b of ['worker.cjs', 'worker.js'].map((f) => path.join(root, 'dist', 'bundle', f))) if (fs.existsSync(b)) return b;
  return path.join(root, 'dist', 'src', 'worker', 'main.js');
}

/** fork -> READY of one worker, as the coordinator forks it (IPC plus the data pipe on fd 4). */
function workerReady(main) {
  return new Promise((resolve, reject) => {
    const t0 = process.hrtime.bigint();
    const child = fork(main, [], { stdio: ['ignore', 'ignore', 'inherit', 'ipc', 'pipe'], serialization: 'advanced' });
    let ms = -1;
    child.on('message', (m) => {
      if (m?.t !== 'ready') return;
      ms = Number(process.hrtime.bigint() - t0) / 1e6;
      child.disconnect();
    });
    child.on('error', reject);
    child.on('exit', (code, sig) => (ms >= 0 ? resolve(ms) : reject(new Error(`${main} exited (${sig ?? code}) before READY`))));
  });
}

const base = fs.mkdtempSync(path.join(fs.existsSync('/dev/shm') ? '/dev/shm' : os.tmpdir(), 'vsnap-startup-'));
process.on('exit', () => fs.rmSync(base, { recursive: true, force: true }));
const bin = (root) => path.join(root, 'bin', 'vsnap');
const vsnapOk = (root, args) => {
  const r = spawnSync(process.execPath, [bin(root), ...args], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`vsnap ${args.join(' ')}: ${r.stderr}`);
};
const template = path.join(base, 'template');
vsnapOk(roots[0], ['init', template, '--file-size', '64MiB']);
const listVol = path.join(base, 'list');
fs.cpSync(template, listVol, { recursive: true });
vsnapOk(roots[0], ['create', path.join(listVol, 'volume.json')]);
const createVol = path.join(base, 'create');

const cases = ['node -e 0', '--version', 'list', 'create', 'worker fork->READY'];
const res = roots.map(() => Object.fromEntries(cases.map((c) => [c, { ms: [], marks: [] }])));
const add = (d, c, r) => {
  res[d][c].ms.push(r.ms);
  res[d][c].marks.push(r.marks);
};
const trace = { VSNAP_STARTUP_TRACE: '1' };
for (let k = 0; k < runs; k++) {
  for (let d = 0; d < roots.length; d++) {
    add(d, 'node -e 0', timed(['-e', '0']));
    add(d, '--version', timed([bin(roots[d]), '--version']));
    add(d, 'list', timed([bin(roots[d]), 'list', path.join(listVol, 'volume.json')], trace));
    fs.rmSync(createVol, { recursive: true, force: true });
    fs.cpSync(template, createVol, { recursive: true });
    add(d, 'create', timed([bin(roots[d]), 'create', path.join(createVol, 'volume.json')], trace));
    add(d, 'worker fork->READY', { ms: await workerReady(workerMain(roots[d])), marks: {} });
  }
}

if (caches.size) console.log(`code cache (all roots): ${[...caches].join(', ')}`);
for (let d = 0; d < roots.length; d++) {
  const r = res[d];
  const node = median(r['node -e 0'].ms);
  console.log(`${roots[d]} (${runs} runs, medians in ms; worker: ${path.relative(roots[d], workerMain(roots[d]))})`);
  for (const c of cases) {
    const m = median(r[c].ms);
    const parts = ['main', 'parsed', 'loaded', 'done'].filter((k) => r[c].marks.some((x) => k in x));
    const at = parts.map((k) => `${k} ${median(r[c].marks.map((x) => x[k])).toFixed(1)}`).join(', ');
    const ratio = c === 'node -e 0' || c.startsWith('worker') ? '' : `  ${(m / node).toFixed(2)}x node -e 0`;
    console.log(`  ${c.padEnd(20)} ${m.toFixed(1).padStart(7)}${ratio}${at ? `  (marks at: ${at})` : ''}`);
  }
}
