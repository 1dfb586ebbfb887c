// npm run bench [-- --only create,write,rss,nbd,clone,restore,restore-loop,restore-cold,export,many --runs N --dir DIR]
// Runs vsnap and its peers side by side in one run and prints medians and ratios.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { printRows, type Row } from './lib.js';
import { benchCreate, benchWrite, benchRss } from './snapshots.js';
import { benchNbd } from './nbd.js';
import { benchRestore, benchRestoreLoop, benchExport } from './workflows.js';
import { benchMany } from './many.js';
import { benchClone } from './clone.js';

function arg(name: string, fallback: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && process.argv[i + 1] ? process.argv[i + 1] : fallback;
}

const only = new Set(arg('only', 'create,write,rss,nbd').split(','));
const runs = Number(arg('runs', '3'));
const base = arg('dir', os.tmpdir());
const dir = fs.mkdtempSync(path.join(base, 'vsnap-bench-'));
const rows: Row[] = [];
process.stderr.write(`benchmarking in ${dir} (${os.cpus().length} cores, node ${process.version}), ${runs} runs each\n`);
try {
  if (only.has('create')) rows.push(...(await benchCreate(dir, runs)));
  if (only.has('write')) rows.push(...(await benchWrite(dir, runs, Number(arg('write-mib', '256')))));
  if (only.has('rss')) rows.push(...(await benchRss(dir, Number(arg('rss-mib', '1024')))));
  // NBD images default to tmpfs (§10 states the goal there); --dir overrides.
  if (only.has('nbd')) rows.push(...(await benchNbd(arg('dir', '/dev/shm'), runs)));
  if (only.has('clone')) rows.push(...(await benchClone(arg('dir', '/dev/shm'), runs)));
  if (only.has('restore')) rows.push(...(await benchRestore(dir, runs)));
  if (only.has('restore-loop')) rows.push(...(await benchRestoreLoop(dir, Number(arg('rounds', '20')))));
  if (only.has('restore-cold')) rows.push(...(await benchRestore(dir, runs, true)));
  if (only.has('export')) rows.push(...(await benchExport(dir, runs)));
  if (only.has('many')) rows.push(...(await benchMany(dir, runs)));
  printRows(`vsnap benchmarks (medians of ${runs} runs; files in ${base})`, rows);
} finally {
  fs.rmSync(dir, { recursive: true, force: true });
}
