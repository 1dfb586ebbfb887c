// The import graph of src/ by folder, its cycles, and the layering rules
// (README "Development"): an import may only run down the layers.
//
//   node scripts/import-graph.mjs [--enforce RULE,...] [--files] [--root DIR]
//
// Prints, in order: the folder graph (each folder, the folders it imports and
// how many imports), file-level cycles, the modules a forked worker loads at
// start-up (runtime imports of worker/main.ts, type-only imports removed), and
// every layering violation. Exits 1 when a violation of an enforced rule is
// found (all rules unless --enforce names some), 0 otherwise; violations of
// rules not enforced are printed as "(not enforced)".
//
// Imports are read with regular expressions over the source with comments
// removed: the repository's style (one import statement per module, relative
// '.js' specifiers) makes a full parser unnecessary.
import fs from 'node:fs';
import path from 'node:path';

const args = process.argv.slice(2);
const opt = (name) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? args[i + 1] : undefined;
};
const root = path.resolve(opt('root') ?? 'src');
const showFiles = args.includes('--files');

/** Ground floor: imports nothing of vsnap above itself. */
const GROUND = ['errors', 'size', 'volume-map', 'faults', 'gate', 'positional-io', 'formats', 'store/layout'];
const ABOVE_WORKER = ['coordinator', 'commands', 'serve', 'catalogue', 'nbd', 'cli', 'main', 'session', 'render', 'ui'];

/** Each rule: a name, whether a module is subject to it, and which targets it forbids. */
const RULES = [
  {
    name: 'ground',
    what: 'the ground floor imports only the ground floor',
    applies: (m) => inGround(m),
    forbids: (t) => !inGround(t),
  },
  {
    name: 'worker',
    what: `worker/ imports none of ${ABOVE_WORKER.join(', ')}`,
    applies: (m) => folderOf(m) === 'worker',
    forbids: (t) => ABOVE_WORKER.includes(folderOf(t)),
  },
  {
    name: 'coordinator',
    what: 'coordinator/ imports neither commands/ nor serve/ (nor cli, main, session)',
    applies: (m) => folderOf(m) === 'coordinator',
    forbids: (t) => ['commands', 'serve', 'cli', 'main', 'session'].includes(folderOf(t)),
  },
  {
    name: 'store-io',
    what: `store/, io/ and transport/ import none of worker, ${ABOVE_WORKER.join(', ')}`,
    applies: (m) => ['store', 'io', 'transport'].includes(folderOf(m)),
    forbids: (t) => ['worker', ...ABOVE_WORKER].includes(folderOf(t)),
  },
  {
    name: 'commands-serve',
    what: 'commands/ and serve/ do not import each other',
    applies: (m) => folderOf(m) === 'commands' || folderOf(m) === 'serve',
    forbids: (t, m) => (folderOf(m) === 'commands' ? folderOf(t) === 'serve' : folderOf(t) === 'commands'),
  },
];
const enforced = new Set((opt('enforce') ?? RULES.map((r) => r.name).join(',')).split(',').filter(Boolean));
for (const n of enforced) if (!RULES.some((r) => r.name === n)) fail(`--enforce: unknown rule ${JSON.stringify(n)} (have ${RULES.map((r) => r.name).join(', ')})`);

function fail(msg) {
  process.stderr.write(`import-graph: ${msg}\n`);
  process.exit(2);
}

/** "worker/partition" for src/worker/partition.ts; "errors" for src/errors.ts. */
function moduleName(file) {
  return path.relative(root, file).replace(/\\/g, '/').replace(/\.ts$/, '');
}

function folderOf(mod) {
  const i = mod.indexOf('/');
  return i < 0 ? mod : mod.slice(0, i);
}

function inGround(mod) {
  return GROUND.some((g) => mod === g || folderOf(mod) === g);
}

function walk(dir) {
  const out = [];
  for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) out.push(...walk(p));
    else if (e.name.endsWith('.ts') && !e.name.endsWith('.d.ts')) out.push(p);
  }
  return out.sort();
}

function stripComments(src) {
  // Strings are kept (import specifiers are strings); a '//' inside a string
  // literal on an import line does not occur in this code base.
  return src.replace(/\/\*[\s\S]*?\*\//g, '').replace(/(^|[^:'"`])\/\/.*$/gm, '$1');
}

/** Relative imports of one file: { target module, typeOnly }. */
function importsOf(file) {
  const src = stripComments(fs.readFileSync(file, 'utf8'));
  const found = [];
  const stmt = /(?:^|[;\n])\s*(import|export)\s+(type\s+)?([^;'"]*?)\s*from\s*['"]([^'"]+)['"]/g;
  for (const m of src.matchAll(stmt)) {
    const clause = m[3].trim();
    let typeOnly = Boolean(m[2]);
    // `import { type A, type B } from` loads nothing at run time either.
    const named = /^\{([\s\S]*)\}$/.exec(clause);
    if (!typeOnly && named) {
      const specs = named[1].split(',').map((s) => s.trim()).filter(Boolean);
      typeOnly = specs.length > 0 && specs.every((s) => s.startsWith('type '));
    }
    found.push({ spec: m[4], typeOnly });
  }
  for (const m of src.matchAll(/(?:^|[;\n])\s*import\s*['"]([^'"]+)['"]/g)) found.push({ spec: m[1], typeOnly: false });
  for (const m of src.matchAll(/\bimport\(\s*['"]([^'"]+)['"]\s*\)/g)) found.push({ spec: m[1], typeOnly: false, dynamic: true });
  const out = [];
  for (const f of found) {
    if (!f.spec.startsWith('.')) continue; // node: builtins and packages
    const target = path.resolve(path.dirname(file), f.spec.replace(/\.js$/, '.ts'));
    if (!target.startsWith(root + path.sep)) continue;
    out.push({ target: moduleName(target), typeOnly: f.typeOnly, dynamic: f.dynamic ?? false });
  }
  return out;
}

const files = walk(root);
/** module -> its imports */
const graph = new Map(files.map((f) => [moduleName(f), importsOf(f)]));

// --- folder graph -------------------------------------------------------------
const folders = new Map();
for (const [mod, imps] of graph) {
  const from = folderOf(mod);
  if (!folders.has(from)) folders.set(from, new Map());
  for (const i of imps) {
    const to = folderOf(i.target);
    if (to === from) continue;
    const row = folders.get(from);
    row.set(to, (row.get(to) ?? 0) + 1);
  }
}
console.log(`import graph of ${path.relative(process.cwd(), root) || '.'} (${graph.size} modules), by folder:`);
for (const from of [...folders.keys()].sort()) {
  const row = folders.get(from);
  const tos = [...row.keys()].sort().map((t) => `${t}(${row.get(t)})`);
  console.log(`  ${from.padEnd(14)} -> ${tos.length ? tos.join(' ') : '-'}`);
}
if (showFiles) {
  console.log('\nby module:');
  for (const [mod, imps] of [...graph].sort()) {
    console.log(`  ${mod} -> ${imps.map((i) => i.target + (i.typeOnly ? ' (type)' : '')).join(', ') || '-'}`);
  }
}

// --- cycles (Tarjan's strongly connected components, runtime and type edges) ----
function sccs(nodes, edges) {
  let counter = 0;
  const index = new Map();
  const low = new Map();
  const stack = [];
  const on = new Set();
  const out = [];
  const visit = (v) => {
    index.set(v, counter);
    low.set(v, counter);
    counter++;
    stack.push(v);
    on.add(v);
    for (const w of edges(v)) {
      if (!index.has(w)) {
        visit(w);
        low.set(v, Math.min(low.get(v), low.get(w)));
      } else if (on.has(w)) low.set(v, Math.min(low.get(v), index.get(w)));
    }
    if (low.get(v) === index.get(v)) {
      const comp = [];
      let w;
      do {
        w = stack.pop();
        on.delete(w);
        comp.push(w);
      } while (w !== v);
      if (comp.length > 1 || edges(v).includes(v)) out.push(comp.sort());
    }
  };
  for (const n of nodes) if (!index.has(n)) visit(n);
  return out;
}
const fileCycles = sccs([...graph.keys()].sort(), (m) => (graph.get(m) ?? []).map((i) => i.target).filter((t) => graph.has(t)));
const folderCycles = sccs([...folders.keys()].sort(), (f) => [...(folders.get(f)?.keys() ?? [])].filter((t) => folders.has(t)));
console.log(`\ncycles between modules: ${fileCycles.length ? '' : 'none'}`);
for (const c of fileCycles) console.log(`  ${c.join(' <-> ')}`);
console.log(`cycles between folders: ${folderCycles.length ? '' : 'none'}`);
for (const c of folderCycles) console.log(`  ${c.join(' <-> ')}`);

// --- what a worker loads -------------------------------------------------------
const WORKER_ENTRY = 'worker/main';
/** Modules above the worker layer that a worker loads, however indirectly (a 'worker' violation). */
let workerLoads = [];
if (graph.has(WORKER_ENTRY)) {
  const seen = new Set();
  const todo = [WORKER_ENTRY];
  while (todo.length) {
    const m = todo.pop();
    if (seen.has(m)) continue;
    seen.add(m);
    for (const i of graph.get(m) ?? []) if (!i.typeOnly) todo.push(i.target);
  }
  const byFolder = new Map();
  for (const m of seen) byFolder.set(folderOf(m), [...(byFolder.get(folderOf(m)) ?? []), m]);
  console.log(`\na worker (${WORKER_ENTRY}) loads ${seen.size} modules at start-up:`);
  for (const f of [...byFolder.keys()].sort()) console.log(`  ${f.padEnd(14)} ${byFolder.get(f).sort().join(' ')}`);
  workerLoads = [...seen].filter((m) => ABOVE_WORKER.includes(folderOf(m))).sort();
}

// --- layering ------------------------------------------------------------------
let enforcedViolations = 0;
const lines = [];
for (const rule of RULES) {
  for (const [mod, imps] of [...graph].sort()) {
    if (!rule.applies(mod)) continue;
    for (const i of imps) {
      if (!rule.forbids(i.target, mod)) continue;
      const on = enforced.has(rule.name);
      if (on) enforcedViolations++;
      lines.push(`  [${rule.name}]${on ? '' : ' (not enforced)'} ${mod} -> ${i.target}${i.typeOnly ? ' (type only)' : ''}: ${rule.what}`);
    }
  }
}
for (const m of workerLoads) {
  const on = enforced.has('worker');
  if (on) enforcedViolations++;
  lines.push(`  [worker]${on ? '' : ' (not enforced)'} ${WORKER_ENTRY} loads ${m} at start-up (indirectly): a worker loads only worker modules and the layers below`);
}
console.log(`\nlayering violations: ${lines.length ? lines.length : 'none'}`);
for (const l of lines) console.log(l);
process.exit(enforcedViolations > 0 ? 1 : 0);
