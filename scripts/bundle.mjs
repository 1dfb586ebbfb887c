// Bundle the compiled CLI and worker (dist/src, made by tsc) into a few
// files under dist/bundle, so that a run of vsnap resolves and reads a
// handful of files instead of ~250 (docs/performance.md "Fixed cost of the
// CLI": module loading was most of `vsnap list`).
//
//   node scripts/bundle.mjs          (part of `npm run build`)
//
// dist/bundle/vsnap.js   the CLI (bin/vsnap loads it when present)
// dist/bundle/worker.js  the worker process (forked by the bundled CLI)
// dist/bundle/chunk-*.js code the CLI loads on demand: each command's
//                        `await import()` stays lazy, so `list` does not
//                        parse `serve`.
// dist/bundle/inputs.json the compiled files the bundles were made from, with
//                        their SHA-256: test/bundle.test.ts fails when the
//                        bundle no longer matches what tsc made.
//
// Modules that find files relative to themselves (import.meta.url: the
// native addons, package.json) keep their compiled location: each module's
// import.meta.url is rewritten to the URL of its dist/src file, which is
// shipped beside the bundle.
import { createHash } from 'node:crypto';
import fs from 'node:fs';
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

/** Rewrite import.meta.url in each vsnap module to its compiled file's URL, relative to the bundle. */
const keepModuleUrls = {
  name: 'keep-module-urls',
  setup(build) {
    build.onLoad({ filter: /\.js$/ }, async (args) => {
      if (!args.path.startsWith(SRC + path.sep)) return undefined;
      const text = await fs.promises.readFile(args.path, 'utf8');
      if (!text.includes('import.meta.url')) return undefined;
      const rel = path.relative(OUT, args.path).split(path.sep).join('/');
      return { contents: text.replaceAll('import.meta.url', `new URL(${JSON.stringify(rel)}, import.meta.url).href`), loader: 'js' };
    });
  },
};

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
  plugins: [keepModuleUrls],
  // Packages written for CommonJS (commander, cli-table3) call require() on
  // node builtins; in an ES module that needs a require of its own.
  banner: { js: "import { createRequire as __vsnapCreateRequire } from 'node:module'; const require = __vsnapCreateRequire(import.meta.url);" },
};

fs.rmSync(OUT, { recursive: true, force: true });
// The CLI: its lazily imported commands become chunks. Its worker is the
// bundled one beside it (src/coordinator/worker-handle.ts reads this global).
const cli = await esbuild.build({
  ...common,
  entryPoints: { vsnap: path.join(SRC, 'main.js') },
  splitting: true,
  chunkNames: 'chunk-[hash]',
  banner: { js: `${common.banner.js}\nglobalThis.vsnapWorkerMain ??= new URL('./worker.js', import.meta.url).pathname;` },
});
// The worker loads everything it has at start: one file.
const worker = await esbuild.build({ ...common, entryPoints: { worker: path.join(SRC, 'worker', 'main.js') } });

const inputs = {};
for (const meta of [cli.metafile, worker.metafile]) {
  for (const file of Object.keys(meta.inputs)) {
    const abs = path.resolve(ROOT, file);
    if (!abs.startsWith(SRC + path.sep)) continue;
    inputs[path.relative(ROOT, abs).split(path.sep).join('/')] = createHash('sha256').update(fs.readFileSync(abs)).digest('hex');
  }
}
fs.writeFileSync(path.join(OUT, 'inputs.json'), `${JSON.stringify({ inputs }, null, 1)}\n`);
