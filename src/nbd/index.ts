// The NBD server layer: fixed-newstyle NBD over any ExportProvider (block.ts).
export { createNbdServer, type NbdServer, type NbdServerOptions, type ListenAddress } from './server.js';
export { DEFAULT_LIMITS, type NbdLimits } from './limits.js';
