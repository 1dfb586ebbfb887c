// Size parsing and formatting with binary units (design.md §3).
// "4K" and "4KiB" both mean 4096: there are no decimal units, since every
// size vsnap handles is a disk quantity and "4K" on a disk means 4096.

const UNITS: Record<string, number> = {
  '': 1,
  B: 1,
  K: 2 ** 10,
  KIB: 2 ** 10,
  M: 2 ** 20,
  MIB: 2 ** 20,
  G: 2 ** 30,
  GIB: 2 ** 30,
  T: 2 ** 40,
  TIB: 2 ** 40,
  P: 2 ** 50,
  PIB: 2 ** 50,
};

export const MAX_SIZE = Number.MAX_SAFE_INTEGER; // 2^53 - 1

/** Parse a size; returns an error message (without the field name) on failure. */
export function parseSize(value: unknown): { ok: true; value: number } | { ok: false; message: string } {
  if (typeof value === 'number') {
    if (value > MAX_SIZE) return { ok: false, message: 'must be at most 2^53-1 bytes' };
    if (!Number.isInteger(value) || value < 0) return { ok: false, message: 'must be a non-negative integer number of bytes' };
    return { ok: true, value };
  }
  if (typeof value !== 'string') return { ok: false, message: 'must be a number of bytes or a string such as "64KiB"' };
  const m = /^\s*(\d+)\s*([A-Za-z]*)\s*$/.exec(value);
  if (!m) {
    if (/^\s*\d*\.\d+/.test(value)) return { ok: false, message: 'fractions are not allowed; use a smaller unit' };
    return { ok: false, message: 'must be an integer with an optional binary unit (B, K/KiB, M/MiB, G/GiB, T/TiB, P/PiB)' };
  }
  const unit = UNITS[m[2].toUpperCase()];
  if (unit === undefined) return { ok: false, message: `unknown unit "${m[2]}" (use B, K/KiB, M/MiB, G/GiB, T/TiB, P/PiB)` };
  const n = BigInt(m[1]) * BigInt(unit);
  if (n > BigInt(MAX_SIZE)) return { ok: false, message: 'must be at most 2^53-1 bytes' };
  return { ok: true, value: Number(n) };
}

/** Human-readable binary size: 1536 -> "1.5 KiB". */
export function formatSize(bytes: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'];
  if (!Number.isFinite(bytes) || bytes < 1024) return `${bytes} B`;
  let v = bytes;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  let text = v >= 100 || Number.isInteger(v) ? v.toFixed(0) : v.toFixed(1);
  // Rounding can reach the next unit (1048575 bytes is 1023.999 KiB): say
  // "1.0 MiB" rather than "1024 KiB".
  if (Number(text) >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
    text = v.toFixed(1);
  }
  return `${text} ${units[i]}`;
}

/**
 * The exact size with the largest binary unit that divides it: 65536 ->
 * "64KiB", 1000 -> "1000". What `vsnap init` writes, so manifests read like
 * the ones people write by hand; parseSize(formatExactSize(n)) === n.
 */
export function formatExactSize(bytes: number): string | number {
  const units: [string, number][] = [
    ['PiB', 2 ** 50],
    ['TiB', 2 ** 40],
    ['GiB', 2 ** 30],
    ['MiB', 2 ** 20],
    ['KiB', 2 ** 10],
  ];
  if (bytes > 0) for (const [u, n] of units) if (bytes % n === 0) return `${bytes / n}${u}`;
  return bytes;
}

/** Parse a duration such as "30s", "15m", "1h", "7d", "2w" into milliseconds. */
export function parseDuration(value: string): number | undefined {
  const m = /^(\d+)(s|m|h|d|w)$/.exec(value.trim());
  if (!m) return undefined;
  const mult = { s: 1e3, m: 60e3, h: 3600e3, d: 86400e3, w: 7 * 86400e3 }[m[2] as 's' | 'm' | 'h' | 'd' | 'w'];
  const ms = Number(m[1]) * mult;
  // A duration that does not fit a safe integer of milliseconds (or that is
  // zero) cannot be meant; refusing beats silently becoming Infinity.
  return ms > 0 && Number.isSafeInteger(ms) ? ms : undefined;
}
