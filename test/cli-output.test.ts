// Output for people and for scripts (issue 10 item 4): piped tables are
// tab-separated with a header, -H drops the header (as `zfs list -H`), -q
// leaves stderr empty but for errors, human tables on a terminal fit 80
// columns, and --wait decides how long a command waits for the store lock.
// Piped and -H output is compared with golden files under test/golden/
// (times, pids and paths normalised); VSNAP_UPDATE_GOLDEN=1 rewrites them.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { spawn, spawnSync } from 'node:child_process';
import { vsnap, tmpdir, ROOT, BIN, type RunResult } from './helpers/cli.js';
import { processStart } from '../src/store/lock.js';

const GOLDEN = path.join(ROOT, 'test', 'golden');
const LONG = 'before-the-upgrade-of-the-database-server-to-version-17-with-the-new-schema';

async function ok(args: string[], input?: Buffer): Promise<RunResult> {
  const r = await vsnap(args, { input });
  assert.equal(r.code, 0, `vsnap ${args.join(' ')}: ${r.stderr}`);
  return r;
}

/** A small volume with two snapshots (one with a long name), 192 KiB written since the first. */
async function volume(t: { after: (fn: () => void) => void }): Promise<{ dir: string; manifest: string }> {
  const { dir, cleanup } = tmpdir('vsnap-output-');
  t.after(cleanup);
  await ok(['init', dir, '--files', '2', '--file-size', '8MiB', '--partitions', '2', '--workers', '2', '--name', 'golden']);
  const manifest = path.join(dir, 'volume.json');
  await ok(['create', manifest, '--name', 'pristine']);
  await ok(['write', manifest, '--offset', '64KiB'], Buffer.alloc(192 << 10, 7));
  await ok(['create', manifest, '--name', LONG]);
  await ok(['write', manifest, '--offset', '9MiB'], Buffer.alloc(64 << 10, 9));
  return { dir, manifest };
}

function normalise(text: string, dir: string): string {
  return text
    .split(dir)
    .join('<DIR>')
    .replace(/\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z/g, '<TIME>')
    .replace(/\d{4}-\d\d-\d\d \d\d:\d\d/g, '<TIME>')
    .replace(/^(part\d\t\d\t)\d+/gm, '$1<PID>')
    .replace(/froze writes\t[\d.]+ ms/, 'froze writes\t<MS> ms')
    // Allocated sizes depend on the file system (block size, preallocation): checked in space.test.ts.
    .replace(/^(\d+\t[^\t\n]+\t<TIME>\t)[^\t\n]+/gm, '$1<USED>')
    .replace(/^used\t.*$/m, 'used\t<USED>')
    .replace(/^space\t.*$/m, 'space\t<SPACE>')
    .replace(/^free\t.*$/m, 'free\t<FREE>');
}

function golden(name: string, r: RunResult, dir: string): void {
  const got = `${normalise(r.stdout, dir)}--- stderr ---\n${normalise(r.stderr, dir)}`;
  const file = path.join(GOLDEN, `${name}.txt`);
  if (process.env.VSNAP_UPDATE_GOLDEN === '1') fs.writeFileSync(file, got);
  assert.equal(got, fs.readFileSync(file, 'utf8'), `${name}: output differs from ${file}`);
}

test('piped, -H and -q output of list, show, status, diff and prune match the golden files', async (t) => {
  const { dir, manifest } = await volume(t);
  const cases: [string, string[]][] = [
    ['list', ['list', manifest]],
    ['list-H', ['list', manifest, '-H']],
    ['list-q', ['-q', 'list', manifest]],
    ['show', ['show', manifest, 'pristine']],
    ['show-H', ['show', manifest, 'pristine', '-H']],
    ['status', ['status', manifest]],
    ['status-H', ['status', '-H', manifest]],
    ['diff', ['diff', manifest, 'pristine']],
    ['diff-H', ['diff', manifest, 'pristine', '-H']],
    ['diff-by-file', ['diff', manifest, 'pristine', '--by-file']],
    ['validate', ['validate', manifest]],
    ['validate-q', ['validate', manifest, '--quiet']],
    ['prune-dry-run', ['prune', manifest, '--keep-last', '1', '--include-manual', '--dry-run']],
    ['prune-nothing-q', ['prune', manifest, '--keep-last', '5', '-q']],
  ];
  for (const [name, args] of cases) {
    const r = await vsnap(args);
    assert.equal(r.code, 0, `${name}: ${r.stderr}`);
    assert.doesNotMatch(r.stdout, /[│┌─└]|\u001b\[/, `${name}: box characters or escapes in piped output`);
    golden(name, r, dir);
  }
  // -q: nothing at all on stderr, the results on stdout unchanged.
  for (const args of [['list', manifest], ['status', manifest], ['diff', manifest, 'pristine'], ['prune', manifest, '--keep-last', '5'], ['create', manifest, '--name', 'quiet']]) {
    const loud = args[0] === 'create' ? undefined : await vsnap(args);
    const quiet = await vsnap(['-q', ...args]);
    assert.equal(quiet.code, 0, quiet.stderr);
    assert.equal(quiet.stderr, '', `-q ${args[0]} printed on stderr`);
    if (loud && args[0] !== 'status') assert.equal(quiet.stdout, loud.stdout, `-q ${args[0]} changed stdout`);
    else assert.ok(quiet.stdout.length > 0, `-q ${args[0]} printed no result`);
  }
  // Errors still reach stderr under -q.
  const bad = await vsnap(['-q', 'show', manifest, 'nope']);
  assert.equal(bad.code, 2);
  assert.match(bad.stderr, /unknown snapshot "nope"/);
  // awk sees clean fields: the name column of a piped list.
  const names = (await ok(['list', manifest, '-H'])).stdout.trim().split('\n').map((l) => l.split('\t')[1]);
  assert.deepEqual(names, ['pristine', LONG, 'quiet']);
});

/** Run a shell line under script(1), so that stdout and stderr are a terminal. */
function onTerminal(line: string, env: Record<string, string> = {}): string {
  const r = spawnSync('script', ['-qec', line, '/dev/null'], { encoding: 'utf8', env: { ...process.env, COLUMNS: '80', ...env }, timeout: 60_000 });
  assert.equal(r.error, undefined, `script(1) is missing (Debian package util-linux): ${r.error?.message}`);
  assert.equal(r.status, 0, r.stdout);
  return r.stdout;
}

test('human tables on a terminal have no boxes and fit 80 columns', async (t) => {
  const { manifest } = await volume(t);
  const vs = `${process.execPath} ${BIN}`;
  const out = onTerminal(['list', 'show', 'status', 'validate', 'diff'].map((cmd) => `${vs} ${cmd} ${manifest}${cmd === 'show' ? ` '${LONG}'` : cmd === 'diff' ? ' pristine --by-file' : ''}`).join('; '));
  // eslint-disable-next-line no-control-regex
  const lines = out.replace(/\u001b\[[0-9;]*[A-Za-z]/g, '').split(/\r?\n/);
  assert.ok(lines.some((l) => /^\s*id\s+name\s+created \(UTC\)/.test(l)), `no list header on the terminal:\n${out}`);
  assert.ok(lines.some((l) => /^partition\s+worker\s+pid\s+state/.test(l)), 'no status table');
  for (const l of lines) assert.ok([...l].length <= 80, `${[...l].length} columns: ${l}`);
  assert.doesNotMatch(out, /[│┌─└]/);
  // The long name is elided in the middle on the terminal, whole when piped.
  assert.match(out, /before-the-upgrade.*…/);
  // -H on a terminal: scripted form, no header.
  const h = onTerminal(`${vs} list ${manifest} -H`);
  assert.match(h, /^1\tpristine\t/m);
  assert.doesNotMatch(h, /created/);
});

test('--wait 0 fails at once naming the holder; --wait 5s waits for a lock that is released', async (t) => {
  const { manifest, dir } = await volume(t);
  const store = path.join(dir, '.vsnap', 'golden');
  const lock = path.join(store, 'lock');
  const holder = spawn('sleep', ['30']);
  t.after(() => holder.kill());
  fs.writeFileSync(lock, JSON.stringify({ pid: holder.pid, command: 'export', startedAt: new Date().toISOString(), procStart: processStart(holder.pid!) }));
  let t0 = Date.now();
  const now = await vsnap(['create', manifest, '--wait', '0']);
  const fast = Date.now() - t0;
  assert.equal(now.code, 1, now.stderr);
  assert.match(now.stderr, new RegExp(`volume is busy: .* locked by pid ${holder.pid} \\(export, since .*--wait`));
  assert.ok(fast < 2500, `--wait 0 took ${fast} ms`);
  const bad = await vsnap(['list', manifest, '--wait', 'soon']);
  assert.equal(bad.code, 2);
  assert.match(bad.stderr, /--wait: must be 0 or a duration/);
  // The holder finishes after about 1.5 s: a --wait 5s create gets the lock then.
  setTimeout(() => fs.rmSync(lock, { force: true }), 1500);
  t0 = Date.now();
  const waited = await vsnap(['create', manifest, '--wait', '5s', '--name', 'after-wait']);
  assert.equal(waited.code, 0, waited.stderr);
  assert.ok(Date.now() - t0 >= 1400, 'the create did not wait for the lock');
  // The global flag goes before the command too.
  assert.equal((await vsnap(['--wait', '0', 'list', manifest])).code, 0);
});

test('a terminal that reports 0 columns (size never set) gets no spinner: create, write and restore finish and exit 0', async (t) => {
  const { manifest } = await volume(t);
  const vs = `${process.execPath} ${BIN}`;
  // COLUMNS unset: the terminal's own size (0 x 24) is what the commands see.
  const env: NodeJS.ProcessEnv = { ...process.env, NO_COLOR: '1' };
  delete env.COLUMNS;
  const line = `stty cols 0 rows 24; ${vs} create ${manifest} --name zero-cols && ${vs} write ${manifest} --offset 0 --input ${BIN} && ${vs} restore ${manifest} zero-cols; echo "rc=$?"`;
  const r = spawnSync('script', ['-qec', line, '/dev/null'], { encoding: 'utf8', env, timeout: 60_000, maxBuffer: 64 << 20 });
  assert.equal(r.error, undefined, `script(1) did not finish: ${r.error?.message} (output ${r.stdout?.length ?? 0} bytes)`);
  assert.match(r.stdout, /rc=0/, r.stdout.slice(-2000));
  assert.ok(r.stdout.length < 64 << 10, `a runaway redraw loop: ${r.stdout.length} bytes of output`);
  const list = JSON.parse((await vsnap(['list', manifest, '--json'])).stdout) as { name: string }[];
  assert.ok(list.some((s) => s.name === 'zero-cols'));
});
