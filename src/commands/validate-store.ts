// validate's look at the store: the checks a command makes when it opens the
// store (Store.open in store/store.ts), made read-only so `validate` can say
// before `list` does that the manifest no longer matches its snapshots or
// that a record is damaged. It takes no lock, creates nothing, removes no
// leftover and rewrites no record: a running `serve` or `create` is not
// disturbed, and every problem becomes a line instead of the first one
// ending the run.
import fs from 'node:fs';
import type { Volume } from '../manifest/layout.js';
import { mappingOf, describeMappingChange } from '../manifest/layout.js';
import type { Problem } from '../manifest/load.js';
import { IntegrityError, UsageError, describeErrnoError, isErrnoError } from '../errors.js';
import { readRecordSync } from '../formats/record-json.js';
import { readSnapshots, reconcileChain, refuseForeignStore, VOLUME_KIND, type SnapshotRecord, type VolumeRecord } from '../store/store.js';
import { BACKING_KIND } from '../store/backing.js';
import { DELETING_SUFFIX, backingFile, isSnapshotDirName, snapshotDir, snapshotsDir, volumeFile } from '../store/layout.js';

/** A store problem with the exit code the command that met it would give (design.md §8). */
function problemOf(err: unknown, file: string): Problem {
  if (err instanceof IntegrityError) return { stage: 'store', path: '(store)', message: err.message, exitCode: 3 };
  if (err instanceof UsageError) return { stage: 'store', path: '(store)', message: err.message, exitCode: 2 };
  if (isErrnoError(err)) return { stage: 'store', path: '(store)', message: describeErrnoError(err, file), exitCode: 1 };
  throw err;
}

/** A record file if present: undefined when missing, a problem when unreadable or damaged. */
function readIfPresent<T>(file: string, kind: string, problems: Problem[]): T | undefined {
  try {
    return readRecordSync<T>(file, kind);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    problems.push(problemOf(err, file));
    return undefined;
  }
}

/** Every problem opening the volume's store would meet, or none when there is no store yet. */
export async function checkStore(volume: Volume): Promise<Problem[]> {
  const dir = volume.storeDir;
  const problems: Problem[] = [];
  try {
    const st = fs.statSync(dir);
    if (!st.isDirectory()) {
      return [{ stage: 'store', path: '(store)', message: `the store ${dir} is not a directory`, exitCode: 2 }];
    }
  } catch (err) {
    // No store yet: the first command that records something creates it.
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
    return [problemOf(err, dir)];
  }
  try {
    refuseForeignStore(dir, volume.manifestPath);
  } catch (err) {
    return [problemOf(err, dir)];
  }
  let names: string[] = [];
  try {
    names = fs.readdirSync(snapshotsDir(dir));
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') problems.push(problemOf(err, snapshotsDir(dir)));
  }
  const record = readIfPresent<VolumeRecord>(volumeFile(dir), VOLUME_KIND, problems);
  readIfPresent(backingFile(dir), BACKING_KIND, problems);
  let snapshots: SnapshotRecord[] = [];
  try {
    snapshots = await readSnapshots(dir, (name, err) => problems.push(problemOf(err, snapshotDir(dir, Number(name)))));
  } catch (err) {
    problems.push(problemOf(err, snapshotsDir(dir)));
  }
  const deleting = names.filter((n) => n.endsWith(DELETING_SUFFIX) && isSnapshotDirName(n.slice(0, -DELETING_SUFFIX.length))).map((n) => parseInt(n, 10));
  try {
    const chain = reconcileChain(record?.snapshots, snapshots.map((s) => s.id), deleting, (id) => snapshotDir(dir, id));
    for (const m of chain.missing) {
      problems.push({
        stage: 'store',
        path: '(store)',
        message: `snapshot ${m} (${snapshotDir(dir, m)}) was removed behind vsnap: the snapshots older than it cannot be read; delete them to clear this`,
        exitCode: 3,
      });
    }
  } catch (err) {
    problems.push(problemOf(err, snapshotsDir(dir)));
  }
  // The same refusal, in the same words, as Store.open gives every command.
  if (record && record.fingerprint !== volume.fingerprint && snapshots.length > 0) {
    const changes = describeMappingChange(record.mapping, mappingOf(volume));
    problems.push({
      stage: 'store',
      path: '(store)',
      message: `the manifest's mapping changed while ${snapshots.length} snapshot(s) exist; restore the old mapping or delete the snapshots: ${changes.join('; ')}`,
      exitCode: 2,
    });
  }
  return problems;
}
