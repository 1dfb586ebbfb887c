// The entry point (bin/vsnap runs it: its bundle dist/bundle/vsnap.cjs, or
// this compiled module). It loads almost nothing itself: a command that will
// fork workers (create) forks them first, so that their node start overlaps
// the loading of the CLI's own code (docs/performance.md "Fixed cost of the
// CLI (stop 17)"); the rest (src/cli/run.ts) loads meanwhile. No top-level
// await: the bundle is a CommonJS script (scripts/bundle.mjs).
import { preforkCount } from './cli/prefork-args.js';

const workers = preforkCount(process.argv.slice(2));
const prefork = workers > 0 ? import('./coordinator/prefork.js').then((p) => (p.prefork(workers), p)) : undefined;
// The command runs once the workers are forked, so it never forks its own beside them.
void Promise.all([import('./cli/run.js'), prefork]).then(([r, p]) =>
  // Workers no command took (a server held the volume, the manifest was
  // invalid, the lock was held) die before the process exits.
  r.run(async () => p?.discardPreforked()),
);
