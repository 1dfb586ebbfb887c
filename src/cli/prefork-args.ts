// Which workers a run will fork, guessed from its arguments before anything
// else loads (src/main.ts), so that src/coordinator/prefork.ts can start them
// while the coordinator is still loading its own code (docs/performance.md
// "Fixed cost of the CLI (stop 17)"). Only a guess: the command runs exactly
// as without it, taking forked workers from the prefork when there are some
// and forking its own otherwise, so every doubt here means "none". Kept
// free of imports beyond node:fs: it runs on every command's path.
import fs from 'node:fs';

/**
 * Commands whose local run starts the workers first thing (catalogue/local.ts
 * LOCAL_OPEN, session.ts withCluster) and gain from a prefork: the
 * positional count each takes (the command's name included) and the options
 * of its own that take a value. restore, export, read, write, diff and status
 * were tried and measured no faster (docs/performance.md "Start-up of restore
 * and list (stop 18)"): their workers, forked ~25 ms sooner, only shared the
 * two cores with the coordinator's own loading.
 */
const PREFORK_COMMANDS: ReadonlyMap<string, { min: number; max: number; withValue: readonly string[] }> = new Map([['create', { min: 2, max: 2, withValue: ['--name', '--expires'] }]]);
/** Global options taking a value (cli.ts). */
const GLOBAL_WITH_VALUE = new Set(['--wait']);
/** Flags that print something instead of running the command. */
const NO_RUN = new Set(['-h', '--help', '-V', '--version']);
/** A manifest larger than this is not read twice at start (it is a few KiB). */
const MAX_MANIFEST = 1 << 20;

/** The number of worker processes `vsnap <argv>` will start, or 0 when it may start none. */
export function preforkCount(argv: string[]): number {
  const positional: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--' || NO_RUN.has(a)) return 0;
    // The command's own value options are known once its name is (the first positional).
    const own = positional.length ? PREFORK_COMMANDS.get(positional[0])?.withValue : undefined;
    if (GLOBAL_WITH_VALUE.has(a) || own?.includes(a)) i++;
    else if (!a.startsWith('-')) positional.push(a);
  }
  const spec = PREFORK_COMMANDS.get(positional[0]);
  if (!spec || positional.length < spec.min || positional.length > spec.max) return 0;
  return workersOf(positional[1]);
}

/** Distinct worker indexes of the manifest's partitions; 0 when it cannot be read or looks wrong (the command then says why). */
function workersOf(manifest: string): number {
  try {
    // Only a regular file is read here: a FIFO would block this read for ever
    // and /dev/zero never end (the command itself then says what is wrong).
    const st = fs.statSync(manifest);
    if (!st.isFile() || st.size > MAX_MANIFEST) return 0;
    const m = JSON.parse(fs.readFileSync(manifest, 'utf8')) as { partitions?: { worker?: unknown }[] };
    if (!Array.isArray(m.partitions)) return 0;
    const workers = new Set<number>();
    for (const p of m.partitions) {
      if (!Number.isInteger(p?.worker) || (p.worker as number) < 0 || (p.worker as number) > 63) return 0;
      workers.add(p.worker as number);
    }
    return workers.size;
  } catch {
    return 0;
  }
}
