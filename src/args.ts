// Parsing of command-line values; every failure names the argument and value.
import { UsageError } from './errors.js';
import { parseSize, parseDuration } from './size.js';

export function sizeArg(name: string, value: string | undefined, fallback?: number): number {
  if (value === undefined) {
    if (fallback === undefined) throw new UsageError(`${name} is required`);
    return fallback;
  }
  const r = parseSize(value);
  if (!r.ok) throw new UsageError(`${name}: ${r.message} (got ${JSON.stringify(value)})`);
  return r.value;
}

export function intArg(name: string, value: string | undefined, min: number, max: number, fallback: number): number {
  if (value === undefined) return fallback;
  if (!/^\d+$/.test(value) || Number(value) < min || Number(value) > max) {
    throw new UsageError(`${name}: must be an integer from ${min} to ${max} (got ${JSON.stringify(value)})`);
  }
  return Number(value);
}

export function durationArg(name: string, value: string): number {
  const ms = parseDuration(value);
  if (ms === undefined) throw new UsageError(`${name}: must be a duration such as 30s, 15m, 1h, 7d or 2w (got ${JSON.stringify(value)})`);
  return ms;
}

/** --wait: a duration, "0" (do not wait) or milliseconds ("500ms"); "forever" is a long duration such as 1d. */
export function waitArg(name: string, value: string): number {
  const v = value.trim();
  if (/^0+(ms|s|m|h|d|w)?$/.test(v)) return 0;
  const ms = /^(\d+)ms$/.exec(v);
  if (ms && Number.isSafeInteger(Number(ms[1]))) return Number(ms[1]);
  const d = parseDuration(v);
  if (d === undefined) throw new UsageError(`${name}: must be 0 or a duration such as 500ms, 30s, 10m or 1h (got ${JSON.stringify(value)})`);
  return d;
}
