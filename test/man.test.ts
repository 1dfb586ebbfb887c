// The manual page renders without warnings and documents every command the
// CLI registers and every command of design.md §8.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import { vsnap, ROOT } from './helpers/cli.js';

const PAGE = path.join(ROOT, 'man', 'vsnap.1');
const DESIGN_COMMANDS = [
  'init',
  'validate',
  'create',
  'list',
  'show',
  'delete',
  'read',
  'write',
  'restore',
  'export',
  'diff',
  'prune',
  'verify',
  'status',
  'serve',
];

function render(): string {
  const r = spawnSync('man', ['--warnings', '-l', PAGE], { encoding: 'utf8', env: { ...process.env, MANWIDTH: '80', MANPAGER: 'cat', PAGER: 'cat' } });
  // No skipping: a missing man is a broken test machine (Debian package man-db).
  assert.equal(r.error, undefined, `cannot run man (install the Debian package man-db): ${r.error?.message}`);
  assert.equal(r.status, 0, r.stderr);
  assert.equal(r.stderr, '', `man/groff warnings:\n${r.stderr}`);
  return r.stdout;
}

/** The rendered text of one top-level section. */
function section(text: string, name: string): string {
  const m = new RegExp(`^${name}\\n([\\s\\S]*?)(?=^[A-Z][A-Z ]+\\n|(?![\\s\\S]))`, 'm').exec(text);
  assert.ok(m, `no ${name} section`);
  return m[1];
}

test('man/vsnap.1 renders with no warnings and has every section', () => {
  const text = render();
  for (const s of ['NAME', 'SYNOPSIS', 'DESCRIPTION', 'COMMANDS', 'MANIFEST', 'EXIT STATUS', 'ENVIRONMENT', 'FILES', 'EXAMPLES', 'SEE ALSO']) {
    assert.ok(section(text, s).trim().length > 0, `${s} is empty`);
  }
  assert.match(section(text, 'ENVIRONMENT'), /NO_COLOR/);
  for (const code of ['0', '1', '2', '3']) assert.match(section(text, 'EXIT STATUS'), new RegExp(`^ {7}${code}\\s`, 'm'));
  const seeAlso = section(text, 'SEE ALSO');
  for (const ref of ['qemu-img(1)', 'nbdinfo(1)', 'nbdkit(1)']) assert.ok(seeAlso.includes(ref), ref);
  assert.match(section(text, 'EXAMPLES'), /^\s+0 \* \* \* \* .*vsnap create .*vsnap prune/m);
});

test('every command registered in the CLI and in design.md §8 is in SYNOPSIS and has its own subsection', async () => {
  const text = render();
  const help = await vsnap(['--help']);
  assert.equal(help.code, 0);
  const registered = (help.stdout.split(/^Commands:$/m)[1] ?? '')
    .split('\n')
    .map((l) => /^ {2}([a-z][a-z-]*)\b/.exec(l)?.[1])
    .filter((n): n is string => n !== undefined && n !== 'help');
  assert.ok(registered.length >= 2, help.stdout);
  const synopsis = section(text, 'SYNOPSIS');
  const commands = section(text, 'COMMANDS');
  for (const name of new Set([...registered, ...DESIGN_COMMANDS])) {
    assert.match(synopsis, new RegExp(`^\\s+vsnap ${name} `, 'm'), `${name} missing from SYNOPSIS`);
    // Subsection headings (.SS) render at a three-space indent.
    assert.match(commands, new RegExp(`^ {3}${name}\\b`, 'm'), `${name} has no subsection in COMMANDS`);
  }
});

test('the MANIFEST section states every rule of design.md §3', () => {
  const manifest = section(render(), 'MANIFEST').replace(/\s+/g, ' ');
  for (const phrase of [
    'not starting with a dot',
    'power of two from 4KiB to 4MiB; default 64KiB',
    '.vsnap/<name>',
    'at least one',
    'an integer from 0 to 63',
    'multiples of 512',
    'total length is a multiple of blockSize',
    '1.5GiB',
    '2^53-1',
    'device and inode',
    'inside the store',
    'Unknown keys are errors',
    'image format header',
    'qemu-img convert -O raw',
    'fingerprint',
  ]) {
    assert.ok(manifest.includes(phrase), `MANIFEST lacks "${phrase}"`);
  }
});
