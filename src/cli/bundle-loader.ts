// Runs the bundled CLI (dist/bundle/vsnap.cjs, scripts/bundle.mjs) with a V8
// code cache: node 20 has no module.enableCompileCache, so the bundle is one
// CommonJS script compiled through vm.Script with cachedData, which skips
// most of its parsing and compiling (docs/performance.md "Fixed cost of the
// CLI (stop 17)"). bin/vsnap calls it, as dist/bundle/loader.cjs (the same
// code as CommonJS, scripts/bundle.mjs); nothing else does.
//
// The cache lives beside the bundle: dist/bundle/cache/vsnap.<key>.v8cache.
// <key> is a hash of the bundle's text and of what V8 counts in a cache's
// validity (its version, node's flags from the command line and from
// NODE_OPTIONS), so a rebuilt bundle or another node never finds an old
// cache: it finds none. (v8.cachedDataVersionTag() would say the same, but
// node:v8 loads node's streams and heap utilities: ~8% of a `list`.) `npm run build` makes the cache for the
// building node (with and without bin/vsnap's #! flags); a run that finds
// none writes one at exit, if the directory is writable (an install owned by
// root stays untouched), atomically (temporary file, then rename). The file
// carries a SHA-256 of V8's data, checked before V8 sees it: a release V8
// does not checksum a code cache, and a damaged one must not reach it. A
// cache V8 rejects anyway (another CPU) costs a normal compile, and this run
// writes a new one at exit.
//
// VSNAP_CODE_CACHE=off compiles without the cache (and writes none);
// VSNAP_CODE_CACHE=write rewrites it at exit (the build uses it).
import fs from 'node:fs';
import path from 'node:path';
import vm from 'node:vm';
import { createHash } from 'node:crypto';
import { createRequire } from 'node:module';

const MAGIC = Buffer.from('vsnap-v8cache-1\n');
const DIGEST = 32;

const sha256 = (...parts: (string | Buffer)[]): Buffer => {
  const h = createHash('sha256');
  for (const p of parts) h.update(p);
  return h.digest();
};

/** The cache file for this bundle text under this V8. */
export function cacheFileFor(bundle: string, source: string): string {
  const key = sha256(source, JSON.stringify([process.versions.v8, process.version, process.arch, process.execArgv, process.env.NODE_OPTIONS ?? ''])).toString('hex').slice(0, 32);
  return path.join(path.dirname(bundle), 'cache', `${path.basename(bundle, '.cjs')}.${key}.v8cache`);
}

/** What became of the cache in this run (the startup trace prints it; tests read it). */
export type CacheUse = 'off' | 'none' | 'damaged' | 'rejected' | 'hit';

/** V8's data from a cache file: missing ('none'), or short, of another format or not matching its digest ('damaged'). */
function readCache(file: string): Buffer | 'none' | 'damaged' {
  let buf: Buffer;
  try {
    buf = fs.readFileSync(file);
  } catch {
    return 'none';
  }
  const head = MAGIC.length + DIGEST;
  if (buf.length <= head || !buf.subarray(0, MAGIC.length).equals(MAGIC)) return 'damaged';
  const data = buf.subarray(head);
  return sha256(data).equals(buf.subarray(MAGIC.length, head)) ? data : 'damaged';
}

/** Write the cache V8 makes from what this run compiled; any failure only means no cache. */
function writeCache(file: string, script: vm.Script): void {
  try {
    const dir = path.dirname(file);
    fs.mkdirSync(dir, { recursive: true });
    const data = script.createCachedData();
    const tmp = `${file}.${process.pid}.tmp`;
    fs.writeFileSync(tmp, Buffer.concat([MAGIC, sha256(data), data]));
    fs.renameSync(tmp, file);
  } catch {
    // A read-only install, a full disk: the next run compiles as this one did.
  }
}

/** Whether the cache could be written here, asked before making one. */
function writable(dir: string): boolean {
  try {
    fs.accessSync(fs.existsSync(dir) ? dir : path.dirname(dir), fs.constants.W_OK);
    return true;
  } catch {
    return false;
  }
}

/** Run the CommonJS bundle `bundle` as node would run it as a module, with the code cache. */
export function runBundle(bundle: string): void {
  const source = fs.readFileSync(bundle, 'utf8');
  const mode = process.env.VSNAP_CODE_CACHE;
  const file = mode === 'off' ? undefined : cacheFileFor(bundle, source);
  const read = file && mode !== 'write' ? readCache(file) : 'none';
  const cachedData = typeof read === 'string' ? undefined : read;
  // Node's own CommonJS wrapper, on the first line so that stack traces keep the bundle's line numbers.
  const script = new vm.Script(`(function (exports, require, module, __filename, __dirname) {${source}\n})`, { filename: bundle, cachedData });
  const use: CacheUse = !file ? 'off' : typeof read === 'string' ? read : script.cachedDataRejected ? 'rejected' : 'hit';
  (globalThis as { vsnapCodeCache?: CacheUse }).vsnapCodeCache = use;
  if (file && use !== 'hit' && writable(path.dirname(file))) {
    // At exit the cache holds what this run compiled too (its command's functions), not just the top level.
    process.once('exit', () => writeCache(file, script));
  }
  const module = { exports: {} as unknown, id: bundle, filename: bundle, loaded: false };
  const fn = script.runInThisContext() as (e: unknown, r: NodeJS.Require, m: unknown, f: string, d: string) => void;
  fn(module.exports, createRequire(bundle), module, bundle, path.dirname(bundle));
}
