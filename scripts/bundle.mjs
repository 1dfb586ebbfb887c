// Bundle the compiled CLI and worker (dist/src, made by tsc) into a few
// files under dist/bundle, so that a run of vsnap resolves and reads a
// handful of files instead of ~250 (docs/performance.md "Fixed cost of the
// CLI": module loading was most of `vsnap list`).
//
//   node scripts/bundle.mjs          (part of `npm run build`)
//
// dist/bundle/vsnap.cjs  the CLI as one CommonJS script: bin/vsnap runs it
//                        through vm.Script with a V8 code cache
//                        (src/cli/bundle-loader.ts). Each command's
//                        `await import()` stays lazy: its modules are only
//                        initialised (and their functions compiled) when run.
// dist/bundle/cache/     that code cache, made here by running `list` on a
//                        scratch volume (with and without bin/vsnap's #!
//                        flags, which V8 counts in the cache's key).
// dist/bundle/loader.cjs src/cli/bundle-loader.ts as CommonJS: bin/vsnap,
//                        itself CommonJS, requires it (no ES module loader).
// dist/bundle/worker.cjs the worker process the bundled CLI forks: it runs
//                        dist/bundle/worker-main.cjs (the worker as one
//                        CommonJS script) through the loader, with its own
//                        code cache (made here by a `create`).
// dist/bundle/inputs.json the compiled files the bundles were made from, with
//                        their SHA-256: test/bundle.test.ts fails when the
//                        bundle no longer matches what tsc made.
//
// Modules that find files relative to themselves (import.meta.url: the
// native addons, package.json) keep their compiled location: each module's
// import.meta.url is rewritten to the URL of its dist/src file, which is
// shipped beside the bundle.
import { createHash } from 'node:crypto';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const SRC = path.join(ROOT, 'dist', 'src');
const OUT = path.join(ROOT, 'dist', 'bundle');

let esbuild;
try {
  esbuild = await import('esbuild');
} catch (err) {
  process.stderr.write(`scripts/bundle.mjs: esbuild is not installed (${err.message.split('\n')[0]}); run \`npm install\` (it is a devDependency)\n`);
  process.exit(1);
}

/** Rewrite import.meta.url in each vsnap module to its compiled file's URL, relative to the bundle (whose URL is `base`). */
const keepModuleUrls = (base) => ({
  name: 'keep-module-urls',
  setup(build) {
    build.onLoad({ filter: /\.js$/ }, async (args) => {
      if (!args.path.startsWith(SRC + path.sep)) return undefined;
      const text = await fs.promises.readFile(args.path, 'utf8');
      if (!text.includes('import.meta.url')) return undefined;
      const rel = path.relative(OUT, args.path).split(path.sep).join('/');
      return { contents: text.replaceAll('import.meta.url', `new URL(${JSON.stringify(rel)}, ${base}).href`), loader: 'js' };
    });
  },
});

const common = {
  bundle: true,
  platform: 'node',
  format: 'esm',
  target: 'node20',
  outdir: OUT,
  absWorkingDir: ROOT,
  metafile: true,
  logLevel: 'warning',
  legalComments: 'none',
  plugins: [keepModuleUrls('import.meta.url')],
  // Packages written for CommonJS (commander, cli-table3) call require() on
  // node builtins; in an ES module that needs a require of its own.
  banner: { js: "import { createRequire as __vsnapCreateRequire } from 'node:module'; const require = __vsnapCreateRequire(import.meta.url);" },
};

fs.rmSync(OUT, { recursive: true, force: true });
// The CLI: one CommonJS script (a V8 code cache needs a script, and
// vm.Script compiles none but CommonJS). Its worker is the bundled one
// beside it (src/coordinator/prefork.ts reads this global).
const cli = await esbuild.build({
  ...common,
  format: 'cjs',
  entryPoints: { vsnap: path.join(SRC, 'main.js') },
  outExtension: { '.js': '.cjs' },
  plugins: [keepModuleUrls('__vsnapBundleUrl')],
  banner: { js: "const __vsnapBundleUrl = require('node:url').pathToFileURL(__filename).href;\nglobalThis.vsnapWorkerMain ??= require('node:path').join(__dirname, 'worker.cjs');" },
});
// The worker loads everything it has at start: one CommonJS script, run with
// its own code cache by worker.cjs, the file the CLI forks (node can run it
// as it is: test/worker/stream-link.test.ts starts it with --stdio).
const worker = await esbuild.build({
  ...common,
  format: 'cjs',
  entryPoints: { 'worker-main': path.join(SRC, 'worker', 'main.js') },
  outExtension: { '.js': '.cjs' },
  plugins: [keepModuleUrls('__vsnapBundleUrl')],
  banner: { js: "const __vsnapBundleUrl = require('node:url').pathToFileURL(__filename).href;" },
});
fs.writeFileSync(
  path.join(OUT, 'worker.cjs'),
  "'use strict';\n// A worker process (scripts/bundle.mjs): its code, worker-main.cjs, with its V8 code cache.\n" +
    '// First of all, a worker ignores SIGINT and SIGTERM (the coordinator closes it in order: worker/main.ts):\n' +
    '// a Ctrl-C to the process group while its code loads would otherwise kill it (docs/reliability.md).\n' +
    "process.on('SIGINT', () => {});\nprocess.on('SIGTERM', () => {});\n" +
    "require('./loader.cjs').runBundle(require('node:path').join(__dirname, 'worker-main.cjs'));\n",
);

// The loader that runs the CLI bundle with its code cache.
const loader = await esbuild.build({ ...common, format: 'cjs', banner: {}, plugins: [], entryPoints: { loader: path.join(SRC, 'cli', 'bundle-loader.js') }, outExtension: { '.js': '.cjs' } });

const inputs = {};
for (const meta of [cli.metafile, worker.metafile, loader.metafile]) {
  for (const file of Object.keys(meta.inputs)) {
    const abs = path.resolve(ROOT, file);
    if (!abs.startsWith(SRC + path.sep)) continue;
    inputs[path.relative(ROOT, abs).split(path.sep).join('/')] = createHash('sha256').update(fs.readFileSync(abs)).digest('hex');
  }
}
fs.writeFileSync(path.join(OUT, 'inputs.json'), `${JSON.stringify({ inputs }, null, 1)}\n`);

// The code caches, as a user's runs would make them: the workers' after a
// `create` (they write theirs as they exit), the CLI's after a `list` (so it
// holds what list compiles, and what every command shares), once with node's
// default flags (`node bin/vsnap`, as scripts and tests run it) and once with
// bin/vsnap's #! flags (run as a program; its workers drop them).
const shebang = /^#!\/usr\/bin\/env -S node (.*)$/m.exec(fs.readFileSync(path.join(ROOT, 'bin', 'vsnap'), 'utf8'));
const scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'vsnap-bundle-cache-'));
try {
  const run = (flags, args, env = {}) => {
    const r = spawnSync(process.execPath, [...flags, path.join(ROOT, 'bin', 'vsnap'), ...args], { encoding: 'utf8', env: { ...process.env, ...env } });
    if (r.status !== 0) throw new Error(`vsnap ${args.join(' ')} exited ${r.status}: ${r.stderr.trim().split('\n')[0]}`);
  };
  run([], ['-q', 'init', path.join(scratch, 'vol'), '--files', '1', '--file-size', '1MiB', '--partitions', '1', '--workers', '1'], { VSNAP_CODE_CACHE: 'off' });
  try {
    run([], ['-q', 'create', path.join(scratch, 'vol', 'volume.json')], { VSNAP_CODE_CACHE: 'write' });
  } catch (err) {
    // On a fresh checkout the native addons are built after this step, and create needs them.
    process.stderr.write(`scripts/bundle.mjs: the workers' code cache was not made (${err.message}); the first create makes it\n`);
  }
  for (const flags of [[], shebang ? shebang[1].split(/\s+/) : []]) run(flags, ['list', path.join(scratch, 'vol', 'volume.json')], { VSNAP_CODE_CACHE: 'write' });
} catch (err) {
  // Not fatal: on a fresh checkout the native addons are built after this
  // step (create needs them); the first runs then write the caches instead.
  process.stderr.write(`scripts/bundle.mjs: the code cache was not made (${err.message}); vsnap makes it at its first run\n`);
} finally {
  fs.rmSync(scratch, { recursive: true, force: true });
}
