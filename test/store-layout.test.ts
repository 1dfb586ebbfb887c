// The store layout module against the layout docs/formats.md documents:
// every path a process builds in a store comes from src/store/layout.ts.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import * as L from '../src/store/layout.js';

const S = '/srv/store';

test('store paths are the documented ones', () => {
  assert.equal(L.volumeFile(S), '/srv/store/volume.json');
  assert.equal(L.lockFile(S), '/srv/store/lock');
  assert.equal(L.backingFile(S), '/srv/store/backing.json');
  assert.equal(L.partitionStateFile(S, 'p-1'), '/srv/store/state/p-1.json');
  assert.equal(L.snapshotsDir(S), '/srv/store/snapshots');
  assert.equal(L.snapshotDir(S, 12), '/srv/store/snapshots/00000012');
  assert.equal(L.snapshotsEntry(S, '00000012.tmp'), '/srv/store/snapshots/00000012.tmp');
  assert.equal(L.snapshotDir(S, 123456789), '/srv/store/snapshots/123456789');
  assert.equal(L.pendingSnapshotDir(S, 13), '/srv/store/snapshots/00000013.tmp');
  assert.equal(L.deletingSnapshotDir(S, 11), '/srv/store/snapshots/00000011.deleting');
  assert.equal(L.snapshotRecordFile(L.snapshotDir(S, 12)), '/srv/store/snapshots/00000012/snapshot.json');
  assert.equal(L.changeLogFile(L.pendingSnapshotDir(S, 13), 'data'), '/srv/store/snapshots/00000013.tmp/data.clog');
  assert.equal(L.partitionSnapshotFile(L.snapshotDir(S, 12), 'data'), '/srv/store/snapshots/00000012/data.psnap');
  assert.equal(L.snapshotMember(S, 12, L.changeLogName('data')), '/srv/store/snapshots/00000012/data.clog');
  assert.equal(L.defaultNbdSocket(S), '/srv/store/nbd.sock');
  assert.equal(L.controlSocketInStore(S), '/srv/store/control.sock');
  assert.equal(L.cloneDir(S, 'dev'), '/srv/store/clones/dev');
});

test('committed snapshot directories are told from leftovers', () => {
  for (const id of [1, 12, 99_999_999, 100_000_000]) {
    const name = path.basename(L.snapshotDir(S, id));
    assert.ok(L.isSnapshotDirName(name), name);
    assert.ok(!L.isLeftoverName(name), name);
    for (const leftover of [L.pendingSnapshotDir(S, id), L.deletingSnapshotDir(S, id)]) {
      const n = path.basename(leftover);
      assert.ok(!L.isSnapshotDirName(n), n);
      assert.ok(L.isLeftoverName(n), n);
    }
  }
  assert.ok(!L.isSnapshotDirName('1234567'), 'fewer than 8 digits is not a snapshot directory');
});

test('the layout docs name the module and every entry it builds', () => {
  const doc = fs.readFileSync(new URL('../../docs/formats.md', import.meta.url), 'utf8');
  const section = doc.slice(doc.indexOf('## Store layout'), doc.indexOf('## Atomic replacement'));
  assert.match(section, /src\/store\/layout\.ts/);
  for (const name of [L.VOLUME_FILE, L.LOCK_FILE, L.BACKING_FILE, `${L.STATE_DIR}/`, `${L.SNAPSHOTS_DIR}/`, L.SNAPSHOT_RECORD_FILE, L.PENDING_SUFFIX, L.DELETING_SUFFIX, L.NBD_SOCKET, L.CONTROL_SOCKET, `${L.CLONES_DIR}/`]) {
    assert.ok(section.includes(name), `docs/formats.md "Store layout" mentions ${name}`);
  }
});
