// VSNAP_STARTUP_TRACE=1: where a run's fixed cost goes, for
// scripts/cli-startup.mjs and docs/performance.md. At exit, one line on
// stderr: `vsnap-trace main=… parsed=… loaded=… done=…`, each in ms since the
// process started (performance.now()): main = the entry's modules loaded and
// main() running; parsed = arguments parsed, the command about to run;
// loaded = that command's module loaded (imported here ahead of the action,
// which then finds it cached); done = the command returned. Then what became
// of the bundle's code cache (src/cli/bundle-loader.ts): cache=hit, none,
// damaged, rejected or off (absent when the bundle was not run).
import type { Command } from 'commander';

/** Command modules that the measured commands load (cli.ts imports them in the actions). */
const COMMAND_MODULES: Record<string, () => Promise<unknown>> = {
  list: () => import('../commands/snapshots.js'),
  create: () => import('../commands/snapshots.js'),
  show: () => import('../commands/snapshots.js'),
  status: () => import('../commands/status.js'),
};

export function installStartupTrace(program: Command, mainAt: number): void {
  const marks: Record<string, number> = { main: mainAt };
  program.hook('preAction', async (_root, action) => {
    marks.parsed = performance.now();
    await COMMAND_MODULES[action.name()]?.();
    marks.loaded = performance.now();
  });
  program.hook('postAction', () => {
    marks.done = performance.now();
  });
  process.on('exit', () => {
    const cache = (globalThis as { vsnapCodeCache?: string }).vsnapCodeCache;
    process.stderr.write(`vsnap-trace ${Object.entries(marks).map(([k, v]) => `${k}=${v.toFixed(1)}`).join(' ')}${cache ? ` cache=${cache}` : ''}\n`);
  });
}
