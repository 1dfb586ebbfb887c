// Worker start-up time: fork dist/src/worker/main.js as the coordinator does
// (IPC channel plus the data pipe on fd 4) and time fork -> READY.
//
//   npm run build && node scripts/worker-startup.mjs [--runs 20] [DIST...]
//
// Prints the median, min and max in milliseconds of wall time, and the median
// CPU time the worker used until READY (all its threads, from
// /proc/<pid>/task/*/schedstat on Linux: steadier than wall time on a busy
// machine), for this repository's
// dist/ or for each DIST directory given (e.g. a build of an older commit):
// with several, their runs alternate, so a machine busy with other work
// slows them alike. Start-up is dominated by loading modules, so this is the
// number the layering keeps small: a worker loads only worker modules and
// the ground floor below them (scripts/import-graph.mjs lists them).
import { fork } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const argv = process.argv.slice(2);
let runs = 20;
const dists = [];
for (let i = 0; i < argv.length; i++) {
  if (argv[i] === '--runs') runs = Number(argv[++i]);
  else dists.push(path.resolve(argv[i]));
}
if (!Number.isInteger(runs) || runs < 1) {
  process.stderr.write(`--runs: a positive integer (got ${runs})\n`);
  process.exit(2);
}
if (dists.length === 0) dists.push(path.join(path.dirname(fileURLToPath(import.meta.url)), '..', 'dist'));

/** CPU time of all threads of `pid` so far, in ms (NaN where /proc is missing). */
function cpuMs(pid) {
  try {
    let ns = 0;
    for (const t of fs.readdirSync(`/proc/${pid}/task`)) ns += Number(fs.readFileSync(`/proc/${pid}/task/${t}/schedstat`, 'utf8').split(' ')[0]);
    return ns / 1e6;
  } catch {
    return NaN;
  }
}

const median = (xs) => {
  const t = [...xs].sort((a, b) => a - b);
  return t.length % 2 ? t[(t.length - 1) / 2] : (t[t.length / 2 - 1] + t[t.length / 2]) / 2;
};

function once(main) {
  return new Promise((resolve, reject) => {
    const t0 = process.hrtime.bigint();
    const child = fork(main, [], { stdio: ['ignore', 'ignore', 'inherit', 'ipc', 'pipe'], serialization: 'advanced' });
    let ms = -1;
    let cpu = NaN;
    child.on('message', (m) => {
      if (m?.t !== 'ready') return;
      ms = Number(process.hrtime.bigint() - t0) / 1e6;
      cpu = cpuMs(child.pid);
      child.disconnect(); // a worker exits when its coordinator goes away
    });
    child.on('error', reject);
    child.on('exit', (code, sig) => (ms >= 0 ? resolve({ ms, cpu }) : reject(new Error(`${main} exited (${sig ?? code}) before READY`))));
  });
}

const times = dists.map(() => []);
for (let k = 0; k < runs; k++) {
  for (let d = 0; d < dists.length; d++) times[d].push(await once(path.join(dists[d], 'src', 'worker', 'main.js')));
}
for (let d = 0; d < dists.length; d++) {
  const t = times[d].map((x) => x.ms).sort((a, b) => a - b);
  const cpu = median(times[d].map((x) => x.cpu));
  console.log(
    `${dists[d]}: worker start-up (fork -> READY), ${runs} runs: median ${median(t).toFixed(1)} ms (min ${t[0].toFixed(1)}, max ${t[runs - 1].toFixed(1)}), CPU until READY median ${cpu.toFixed(1)} ms`,
  );
}
