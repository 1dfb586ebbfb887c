// The project's own N-API addons (native/*.c, built by scripts/build-native.mjs
// into build/Release): loaded once, on first use, with an error that says how
// to build them rather than a bare "Cannot find module".
import { createRequire } from 'node:module';
import { OperationError } from '../errors.js';

/** A lazy loader for build/Release/<name>.node; `purpose` names what it is for in the error. */
export function addonLoader<T>(name: string, purpose: string): () => T {
  const file = new URL(`../../../build/Release/${name}.node`, import.meta.url).pathname;
  let addon: T | undefined;
  return () => {
    if (!addon) {
      try {
        addon = createRequire(import.meta.url)(file) as T;
      } catch (err) {
        throw new OperationError(`${file}: the native addon for ${purpose} is not built (${(err as Error).message.split('\n')[0]}); run \`npm run build\``);
      }
    }
    return addon;
  };
}
