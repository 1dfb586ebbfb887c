// A small tmpfs to put a store on, so a test can fill it up (ENOSPC) or
// check statfs-based figures on a file system of known size. Mounting needs
// root with CAP_SYS_ADMIN: CI has it (and must not skip); elsewhere the test
// skips with the reason.
import fs from 'node:fs';
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { tmpdir } from './cli.js';
import { makeFixture, type Fixture } from './volume-fixture.js';

export interface SmallFs {
  /** Change the size (e.g. give space back after a test filled it). */
  resize(size: string): void;
  /** Unmount; harmless when already gone. */
  unmount(): void;
}

/** Mount a tmpfs of `size` at `dir` (created if needed); a skip reason string when this process may not mount. */
export function mountSmallFs(dir: string, size: string, mode = '0700'): SmallFs | string {
  fs.mkdirSync(dir, { recursive: true });
  const r = spawnSync('mount', ['-t', 'tmpfs', '-o', `size=${size},mode=${mode}`, 'tmpfs', dir], { encoding: 'utf8' });
  if (r.status !== 0) {
    const why = `cannot mount a ${size} tmpfs: ${(r.stderr || r.error?.message || `exit ${r.status}`).trim()}`;
    if (process.env.CI) throw new Error(`${why} (CI runs as root and must not skip this test)`);
    return `${why}; needs root`;
  }
  return {
    resize(to: string) {
      const x = spawnSync('mount', ['-o', `remount,size=${to}`, dir], { encoding: 'utf8' });
      if (x.status !== 0) throw new Error(`remount ${dir} size=${to}: ${x.stderr}`);
    },
    unmount() {
      spawnSync('umount', [dir]);
    },
  };
}

/**
 * A test volume (helpers/volume-fixture.ts, scale 4) whose store is on a
 * 160 KiB tmpfs and whose backing files are not: the store fills up long
 * before the images do. A skip reason string when no tmpfs can be mounted.
 */
export function volumeWithSmallStore(): { t: { dir: string; cleanup(): void }; fx: Fixture; mnt: string; small: SmallFs } | string {
  const t = tmpdir();
  const mnt = path.join(t.dir, 'small');
  const small = mountSmallFs(mnt, '160k', '1777');
  if (typeof small === 'string') {
    t.cleanup();
    return small;
  }
  const fx = makeFixture(t.dir, { scale: 4 });
  const m = JSON.parse(fs.readFileSync(fx.manifest, 'utf8')) as Record<string, unknown>;
  fs.writeFileSync(fx.manifest, JSON.stringify({ ...m, store: mnt }));
  return { t, fx, mnt, small };
}
