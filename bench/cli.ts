// The CLI's fixed cost (issue 11, design.md §10: `vsnap list` <= 1.5x
// `node -e 0`, `vsnap create` <= 3x): wall time of whole runs on a small
// volume, `node -e 0` timed in the same loop so the machine's load of the
// moment hits the baseline too. Each round runs every case once, in an order
// rotated round by round; ratios are taken within a round. `vsnap create`
// takes a fresh snapshot each round and the round deletes it afterwards
// (untimed), so every create sees the same one-snapshot catalogue.
import path from 'node:path';
import { VSNAP, must, vsnap, spread, perRun, type Row } from './lib.js';
import { placeLabel } from './servers.js';

type Case = 'node' | 'version' | 'list' | 'create';

export async function benchCli(dir: string, rounds: number): Promise<Row[]> {
  const log = (s: string) => process.stderr.write(`${s}\n`);
  const d = path.join(dir, 'cli-vol');
  await vsnap(['init', d, '--files', '2', '--file-size', '64MiB', '--partitions', '4', '--workers', '2']);
  const m = path.join(d, 'volume.json');
  // One snapshot for `list` to show (and `create` to follow).
  await vsnap(['create', m, '--name', 'keep']);
  const argv: Record<Case, (i: number) => string[]> = {
    node: () => ['-e', '0'],
    version: () => [VSNAP, '--version'],
    list: () => [VSNAP, 'list', m],
    create: (i) => [VSNAP, 'create', m, '--name', `c${i}`],
  };
  const cases = Object.keys(argv) as Case[];
  const t: Record<Case, number[]> = { node: [], version: [], list: [], create: [] };
  // Round -1 warms the page cache (node, the compiled modules) and is not kept.
  for (let i = -1; i < rounds; i++) {
    const order = cases.map((_, k) => cases[(k + Math.max(i, 0)) % cases.length]);
    for (const c of order) {
      const r = await must(process.execPath, argv[c](i + 1));
      if (i >= 0) t[c].push(r.ms);
    }
    await vsnap(['delete', m, `c${i + 1}`]);
  }
  log(`cli: ${rounds} rounds of ${cases.join(', ')} in ${d}`);
  const where = placeLabel(dir);
  const node = { op: '<=', of: 'node -e 0' } as const;
  return [
    { group: 'cli', what: 'node -e 0', ...spread(t.node), unit: 'ms', note: `baseline; ${rounds} rounds, alternated` },
    { group: 'cli', what: 'vsnap --version', ...spread(t.version), unit: 'ms', note: 'start-up and module loading' },
    { group: 'cli', what: `vsnap list (1 snapshot, ${where})`, ...spread(t.list), unit: 'ms' },
    { group: 'cli', what: `vsnap create (2 x 64 MiB, 4 partitions, 2 workers, ${where})`, ...spread(t.create), unit: 'ms', note: 'forks the workers, commits, exits' },
    { group: 'cli', what: 'vsnap --version / node -e 0', ...spread(perRun(t.version, t.node)), unit: 'ratio', note: 'context: the floor under every command' },
    { group: 'cli', what: 'vsnap list / node -e 0', ...spread(perRun(t.list, t.node)), unit: 'ratio', goal: { ...node, target: 1.5 } },
    { group: 'cli', what: 'vsnap create / node -e 0', ...spread(perRun(t.create, t.node)), unit: 'ratio', goal: { ...node, target: 3 } },
  ];
}
