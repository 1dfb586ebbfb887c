// "did you mean `blockSize`?" for an unknown manifest key. An optimal string
// alignment distance (Levenshtein plus swaps of neighbours, so "lenght" is one
// edit from "length") over a handful of short keys: a dependency would cost
// more than these lines. Pure.

/** Edits (insert, delete, substitute, swap two neighbours) from a to b. */
export function editDistance(a: string, b: string): number {
  const rows = a.length + 1;
  const cols = b.length + 1;
  const d: number[][] = Array.from({ length: rows }, (_, i) => Array.from({ length: cols }, (_, j) => (i === 0 ? j : j === 0 ? i : 0)));
  for (let i = 1; i < rows; i++) {
    for (let j = 1; j < cols; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      d[i][j] = Math.min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) d[i][j] = Math.min(d[i][j], d[i - 2][j - 2] + 1);
    }
  }
  return d[rows - 1][cols - 1];
}

/**
 * The known key an unknown one most likely meant: equal ignoring case, else
 * within a third of its length in edits (at least 1, at most 3), the nearest;
 * none when two are equally near or the key is already known.
 */
export function closestKey(key: string, known: readonly string[]): string | undefined {
  if (known.includes(key)) return undefined;
  const folded = known.filter((k) => k.toLowerCase() === key.toLowerCase());
  if (folded.length === 1) return folded[0];
  const limit = Math.min(3, Math.max(1, Math.floor(key.length / 3)));
  let best: string | undefined;
  let bestDistance = Infinity;
  let tie = false;
  for (const k of known) {
    const dist = editDistance(key.toLowerCase(), k.toLowerCase());
    if (dist < bestDistance) {
      best = k;
      bestDistance = dist;
      tie = false;
    } else if (dist === bestDistance) tie = true;
  }
  return best !== undefined && bestDistance <= limit && !tie ? best : undefined;
}
