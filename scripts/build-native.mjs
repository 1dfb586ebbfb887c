// Builds the native addon (native/, binding.gyp) with node-gyp: run by
// `npm ci`/`npm install` (the install script) and by `npm run build`, so a
// fresh clone and a work tree that predates the addon both get it.
// Skips the compile when every build/Release/*.node it makes is newer than
// the sources. Never downloads headers: it builds against the running Node's own
// (<prefix>/include/node) unless npm's nodedir says otherwise.
import { existsSync, statSync, readdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { spawnSync } from 'node:child_process';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
// image_lock.c -> vsnap_native.node, sparse.c -> vsnap_sparse.node (binding.gyp).
const outputs = ['vsnap_native', 'vsnap_sparse'].map((t) => join(root, 'build', 'Release', `${t}.node`));
const sources = [join(root, 'binding.gyp'), ...readdirSync(join(root, 'native')).map((n) => join(root, 'native', n))];

if (outputs.every((o) => existsSync(o)) && process.env.VSNAP_REBUILD_NATIVE !== '1') {
  const built = Math.min(...outputs.map((o) => statSync(o).mtimeMs));
  if (sources.every((s) => statSync(s).mtimeMs <= built)) process.exit(0);
}

/** node-gyp as npm ships it: on PATH inside npm scripts, else beside npm itself. */
function nodeGyp() {
  const candidates = [];
  if (process.env.npm_execpath) candidates.push(join(dirname(process.env.npm_execpath), '..', 'node_modules', 'node-gyp', 'bin', 'node-gyp.js'));
  candidates.push(join(dirname(process.execPath), '..', 'lib', 'node_modules', 'npm', 'node_modules', 'node-gyp', 'bin', 'node-gyp.js'));
  try {
    candidates.push(createRequire(import.meta.url).resolve('node-gyp/bin/node-gyp.js'));
  } catch {
    // not a dependency of the project: fine
  }
  return candidates.find((c) => existsSync(c));
}

const args = ['rebuild'];
const prefix = join(dirname(process.execPath), '..');
if (!process.env.npm_config_nodedir && existsSync(join(prefix, 'include', 'node', 'node_api.h'))) args.push(`--nodedir=${prefix}`);
const gyp = nodeGyp();
const r = gyp
  ? spawnSync(process.execPath, [gyp, ...args], { cwd: root, stdio: 'inherit' })
  : spawnSync('node-gyp', args, { cwd: root, stdio: 'inherit' });
if (r.status !== 0) {
  console.error(`vsnap: building the native addon failed (${r.error?.message ?? `exit ${r.status}`}); it needs python3, make, a C compiler and Node's headers`);
  process.exit(1);
}
