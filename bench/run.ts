// npm run bench [-- --only GROUP,... --runs N --dir DIR --vsnap PATH]
//
// Runs vsnap and its peers side by side in one run and prints, for every
// row, the median, min and max of its runs, and the goal issue 11 or
// design.md §10 sets for it with "met" or "missed" (judged on the median).
// Ratios are the median (min, max) of per-run ratios: both sides of a run
// ran back to back.
//
// Groups (default: create,write,rss,nbd,cli, about 10 minutes on 2 cores):
//   create write rss nbd cli                      the default
//   nbd-read multiconn many-read clone            more NBD (images on /dev/shm unless --dir)
//   restore restore-loop restore-cold export many workflows and in-process many snapshots
//   issue11                                       every row issue 11 sets a goal for:
//                                                 nbd,nbd-read,multiconn,many-read,cli,restore,export
//
// Options:
//   --runs N        runs per measurement (default 3)
//   --cli-runs N    rounds of the cli group (default the larger of 20 and --runs)
//   --dir DIR       where the volumes go (default os.tmpdir(); NBD groups: /dev/shm)
//   --vsnap PATH    the bin/vsnap to measure (default this repo's). Point it
//                   at a built checkout of an older commit to get a "before"
//                   table from the same bench: every group that runs the CLI
//                   or `vsnap serve` uses it. rss and many run in-process and
//                   always measure this checkout's build.
//   --write-mib N, --rss-mib N, --rounds N   sizes of write, rss, restore-loop
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { printRows, setVsnap, must, VSNAP, type Row } from './lib.js';
import { benchCreate, benchWrite, benchRss } from './snapshots.js';
import { benchNbd } from './nbd.js';
import { benchReads } from './reads.js';
import { benchMultiConn } from './multiconn.js';
import { benchCli } from './cli.js';
import { benchRestore, benchRestoreLoop, benchExport } from './workflows.js';
import { benchMany, benchManyRead } from './many.js';
import { benchClone } from './clone.js';

const GROUPS = ['create', 'write', 'rss', 'nbd', 'cli', 'nbd-read', 'multiconn', 'many-read', 'clone', 'restore', 'restore-loop', 'restore-cold', 'export', 'many'];

function arg(name: string, fallback: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && process.argv[i + 1] ? process.argv[i + 1] : fallback;
}

const ALIASES: Record<string, string[]> = { issue11: ['nbd', 'nbd-read', 'multiconn', 'many-read', 'cli', 'restore', 'export'] };
const only = new Set(arg('only', 'create,write,rss,nbd,cli').split(',').flatMap((g) => ALIASES[g] ?? [g]));
const unknown = [...only].filter((g) => !GROUPS.includes(g));
if (unknown.length) {
  process.stderr.write(`unknown group ${unknown.join(', ')}; groups: ${GROUPS.join(', ')}, ${Object.keys(ALIASES).join(', ')}\n`);
  process.exit(2);
}
const runs = Number(arg('runs', '3'));
if (process.argv.includes('--vsnap')) {
  const p = arg('vsnap', '');
  if (!p || !fs.existsSync(p)) {
    process.stderr.write(`--vsnap: no file ${p || '(missing value)'}\n`);
    process.exit(2);
  }
  setVsnap(p);
}
const base = arg('dir', os.tmpdir());
// NBD images default to tmpfs (§10 states the goal there); --dir overrides.
const shm = arg('dir', '/dev/shm');
const dir = fs.mkdtempSync(path.join(base, 'vsnap-bench-'));
const rows: Row[] = [];
const version = (await must(process.execPath, [VSNAP, '--version'])).stdout.trim();
const header = `vsnap ${version} at ${VSNAP}`;
process.stderr.write(`benchmarking ${header} in ${dir} (${os.cpus().length} cores, node ${process.version}), ${runs} runs each\n`);
try {
  if (only.has('create')) rows.push(...(await benchCreate(dir, runs)));
  if (only.has('write')) rows.push(...(await benchWrite(dir, runs, Number(arg('write-mib', '256')))));
  if (only.has('rss')) rows.push(...(await benchRss(dir, Number(arg('rss-mib', '1024')))));
  if (only.has('nbd')) rows.push(...(await benchNbd(shm, runs)));
  if (only.has('cli')) rows.push(...(await benchCli(dir, Number(arg('cli-runs', String(Math.max(20, runs)))))));
  if (only.has('nbd-read')) rows.push(...(await benchReads(shm, runs)));
  if (only.has('multiconn')) rows.push(...(await benchMultiConn(shm, runs)));
  if (only.has('many-read')) rows.push(...(await benchManyRead(shm, runs)));
  if (only.has('clone')) rows.push(...(await benchClone(shm, runs)));
  if (only.has('restore')) rows.push(...(await benchRestore(dir, runs)));
  if (only.has('restore-loop')) rows.push(...(await benchRestoreLoop(dir, Number(arg('rounds', '20')))));
  if (only.has('restore-cold')) rows.push(...(await benchRestore(dir, runs, true)));
  if (only.has('export')) rows.push(...(await benchExport(dir, runs)));
  if (only.has('many')) rows.push(...(await benchMany(dir, runs)));
  printRows(`${header}: medians of ${runs} runs with min and max; ratios: median (min, max) of per-run ratios; files in ${base}`, rows);
} finally {
  fs.rmSync(dir, { recursive: true, force: true });
}
