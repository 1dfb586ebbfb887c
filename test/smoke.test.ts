import { test } from 'node:test';
import assert from 'node:assert/strict';
import { vsnap } from './helpers/cli.js';

test('--version prints the package version on stdout', async () => {
  const r = await vsnap(['--version']);
  assert.equal(r.code, 0);
  assert.match(r.stdout, /^\d+\.\d+\.\d+\n$/);
});

test('an unknown command exits 2', async () => {
  const r = await vsnap(['frobnicate']);
  assert.equal(r.code, 2);
  assert.match(r.stderr, /unknown command/);
});
