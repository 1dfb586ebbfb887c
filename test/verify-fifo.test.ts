// verify on a store where a file was replaced by a FIFO (or a directory):
// exit 3 naming the file as "not a regular file", never a hang. Before, the
// open blocked for ever waiting for a writer, holding the lock and (for a
// clone's files, opened on the main thread) ignoring SIGTERM.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { spawnSync, execFileSync } from 'node:child_process';
import { vsnap, vsnapOk as ok, tmpdir, BIN } from './helpers/cli.js';

function verify(manifest: string): { status: number | null; stderr: string } {
  // SIGKILL at the deadline: a hung verify ignores SIGTERM.
  const r = spawnSync(process.execPath, [BIN, 'verify', manifest], { encoding: 'utf8', timeout: 60_000, killSignal: 'SIGKILL', env: { ...process.env, NO_COLOR: '1' } });
  assert.equal(r.error, undefined, `verify did not finish within 60 s (hung): ${r.error?.message}`);
  return { status: r.status, stderr: r.stderr };
}

function fifoInPlaceOf(file: string): void {
  fs.rmSync(file);
  execFileSync('mkfifo', [file]);
}

test('verify: a FIFO in place of a clone file or a change log is a problem (exit 3, "not a regular file"), not a hang', async (t) => {
  const { dir, cleanup } = tmpdir('vsnap-fifo-');
  t.after(cleanup);
  await ok(['init', dir, '--files', '1', '--file-size', '8MiB', '--partitions', '2', '--workers', '2']);
  const manifest = path.join(dir, 'volume.json');
  await ok(['create', manifest, '--name', 's1']);
  await ok(['clone', 'create', manifest, 's1', 'c1']);
  const store = (JSON.parse(await ok(['status', manifest, '--json'])) as { store: string }).store;
  const parts = fs.readdirSync(path.join(store, 'clones', 'c1')).filter((n) => n.endsWith('.ovl'));
  assert.ok(parts.length > 0, 'the clone has overlay files');

  const ovl = path.join(store, 'clones', 'c1', parts[0]);
  fifoInPlaceOf(ovl);
  let v = verify(manifest);
  assert.equal(v.status, 3, v.stderr);
  assert.match(v.stderr, new RegExp(`${parts[0].replace('.', '\\.')}.*not a regular file \\(a FIFO\\)`));

  // The map file too, and a snapshot's change log (opened by a worker).
  const ovm = ovl.replace(/\.ovl$/, '.ovm');
  fifoInPlaceOf(ovm);
  const clogs = fs.readdirSync(path.join(store, 'snapshots', '00000001')).filter((n) => n.endsWith('.clog'));
  fifoInPlaceOf(path.join(store, 'snapshots', '00000001', clogs[0]));
  v = verify(manifest);
  assert.equal(v.status, 3, v.stderr);
  assert.match(v.stderr, new RegExp(`${path.basename(ovm).replace('.', '\\.')}.*not a regular file \\(a FIFO\\)`));
  assert.match(v.stderr, new RegExp(`${clogs[0].replace('.', '\\.')}.*not a regular file \\(a FIFO\\)`));
  // verify changed nothing: the FIFOs are still there, and the lock is free for the next command.
  assert.ok(fs.statSync(ovm).isFIFO());
  await ok(['list', manifest]);
});
