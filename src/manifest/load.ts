// Loading a manifest for a command: every check of inspect.ts, and a
// UsageError (exit 2) listing every problem when there is one. Reads only;
// never writes. Kept as the one entry point the commands import.
export { loadManifest, inspectManifest, formatProblems, type Problem, type Inspection } from './inspect.js';
export { sysfsBlockPath, checkFiles } from './files.js';
