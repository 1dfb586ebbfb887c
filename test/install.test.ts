// Install and the cron recipe (issue 10 item 9): the `npm pack` tarball
// carries the compiled code, the bin and the man page; `npm install -g` of it
// into a prefix gives a working `vsnap` and `share/man/man1/vsnap.1`; and the
// README's cron line works under cron's bare environment (env -i,
// PATH=/usr/bin:/bin plus what the line's PATH= names), silently, waiting
// for a held lock.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { spawn, spawnSync } from 'node:child_process';
import { vsnap, tmpdir, ROOT } from './helpers/cli.js';
import { VERSION } from '../src/version.js';
import { processStart } from '../src/store/lock.js';

function run(cmd: string, args: string[], o: { cwd?: string; env?: NodeJS.ProcessEnv } = {}): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(cmd, args, { cwd: o.cwd, env: o.env ?? process.env, encoding: 'utf8', timeout: 600_000 });
  assert.equal(r.error, undefined, `${cmd}: ${r.error?.message}`);
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** The README's cron recipe: its PATH= line and its job's command (the fields after the user). */
function cronRecipe(): { pathLine: string; command: string } {
  const readme = fs.readFileSync(path.join(ROOT, 'README.md'), 'utf8');
  const block = /```cron\n([\s\S]*?)```/.exec(readme);
  assert.ok(block, 'README has a cron block');
  const lines = block[1].trim().split('\n');
  const pathLine = lines.find((l) => l.startsWith('PATH='));
  const job = lines.find((l) => /^[0-9*]/.test(l));
  assert.ok(pathLine && job, 'the cron block sets PATH and has a job line');
  return { pathLine: pathLine.slice('PATH='.length), command: job.split(/\s+/).slice(6).join(' ') };
}

test('the npm pack tarball installs vsnap and its man page; the README cron line runs under env -i', async (t) => {
  const { dir, cleanup } = tmpdir('vsnap-install-');
  t.after(cleanup);
  // Pack the build `npm test` just made (--ignore-scripts: no tsc rewriting dist/ under the other test files).
  const pack = run('npm', ['pack', '--ignore-scripts', '--json', '--pack-destination', dir], { cwd: ROOT });
  assert.equal(pack.status, 0, pack.stderr);
  const info = (JSON.parse(pack.stdout) as { filename: string; files: { path: string }[] }[])[0];
  const files = info.files.map((f) => f.path);
  for (const f of ['bin/vsnap', 'dist/src/main.js', 'dist/src/worker/main.js', 'man/vsnap.1', 'native/image_lock.c', 'binding.gyp', 'scripts/build-native.mjs']) assert.ok(files.includes(f), `the tarball lacks ${f}`);
  assert.ok(!files.some((f) => f.startsWith('dist/test/') || f.startsWith('src/')), 'the tarball carries tests or TypeScript sources');
  const tarball = path.join(dir, info.filename);

  // Install it as an admin would, into a private prefix. --prefer-offline: the
  // dependencies come from npm's cache (filled by `npm ci`), the registry otherwise.
  const prefix = path.join(dir, 'prefix');
  const inst = run('npm', ['install', '-g', '--prefix', prefix, '--prefer-offline', '--no-audit', '--no-fund', '--loglevel', 'error', tarball]);
  assert.equal(inst.status, 0, `npm install -g: ${inst.stderr}`);
  const bin = path.join(prefix, 'bin', 'vsnap');
  const ver = run(bin, ['--version']);
  assert.equal(ver.status, 0, ver.stderr);
  assert.equal(ver.stdout.trim(), VERSION);
  const page = path.join(prefix, 'share', 'man', 'man1', 'vsnap.1');
  assert.ok(fs.existsSync(page), `${page} is missing`);
  assert.equal(fs.readFileSync(page, 'utf8'), fs.readFileSync(path.join(ROOT, 'man', 'vsnap.1'), 'utf8'));
  const man = run('man', ['-M', path.join(prefix, 'share', 'man'), 'vsnap'], { env: { ...process.env, MANPAGER: 'cat', PAGER: 'cat', MANWIDTH: '80' } });
  assert.equal(man.status, 0, man.stderr);
  assert.match(man.stdout, /^NAME\n\s+vsnap /m);

  // The cron line, under cron's environment: nothing but PATH (the line's own,
  // with the prefix this test installed into standing for /usr/local/bin) and HOME.
  const { pathLine, command } = cronRecipe();
  assert.match(command, /(^|\s)-q\s/, 'the cron line is quiet');
  assert.match(command, /--wait \S+/, 'the cron line waits for the lock');
  const dirs = pathLine.split(':').flatMap((d) => (d === '/usr/local/bin' ? [path.join(prefix, 'bin'), d] : [d]));
  // Where node lives outside the line's directories, the README says to add its directory.
  if (!dirs.some((d) => fs.existsSync(path.join(d, 'node')))) dirs.push(path.dirname(process.execPath));
  const vol = path.join(dir, 'vol');
  const init = await vsnap(['init', vol, '--files', '1', '--file-size', '4MiB', '--partitions', '1', '--workers', '1']);
  assert.equal(init.code, 0, init.stderr);
  const manifest = path.join(vol, 'volume.json');
  const job = command.split('/srv/vol/volume.json').join(manifest);
  const home = path.join(dir, 'home');
  fs.mkdirSync(home);
  const cron = () => run('env', ['-i', `PATH=${dirs.join(':')}`, `HOME=${home}`, '/bin/sh', '-c', job]);
  const first = cron();
  assert.equal(first.status, 0, `cron line failed (${first.status}): ${first.stderr}`);
  assert.equal(first.stdout + first.stderr, '', 'the cron job printed something (cron would mail it)');
  // Second run while another command holds the lock for 1.5 s: --wait lets it through.
  const store = path.join(vol, '.vsnap', 'demo');
  const holder = spawn('sleep', ['30']);
  t.after(() => holder.kill());
  fs.writeFileSync(path.join(store, 'lock'), JSON.stringify({ pid: holder.pid, command: 'export', startedAt: new Date().toISOString(), procStart: processStart(holder.pid!) }));
  setTimeout(() => fs.rmSync(path.join(store, 'lock'), { force: true }), 1500);
  const second = await new Promise<{ code: number | null; out: string }>((resolve) => {
    const p = spawn('env', ['-i', `PATH=${dirs.join(':')}`, `HOME=${home}`, '/bin/sh', '-c', job]);
    let out = '';
    p.stdout.on('data', (d: Buffer) => (out += d));
    p.stderr.on('data', (d: Buffer) => (out += d));
    p.on('close', (code) => resolve({ code, out }));
  });
  assert.equal(second.code, 0, second.out);
  assert.equal(second.out, '');
  // Two automatic snapshots in one hour: --keep-hourly keeps the newer.
  const list = JSON.parse((await vsnap(['list', manifest, '--json'])).stdout) as { id: number }[];
  assert.deepEqual(list.map((s) => s.id), [2]);
});
