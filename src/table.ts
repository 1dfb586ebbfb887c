// Tables for people and for scripts (design §8), the way `zfs list` prints
// them. On a terminal: aligned columns with a header, fitted to the terminal
// width (80 columns when it is unknown) by eliding the middle of the widest
// elidable cells. Piped, or with -H: one line per row, fields separated by a
// tab, so awk and cut see clean fields; -H also drops the header line.
// No box characters anywhere: boxes cost three columns per field and broke
// `awk` on piped output. Aligned text is linear in rows (cli-table3's layout
// was quadratic: 20 s for 10,000 snapshots, measured here).
import { c, outputMode } from './ui.js';

// eslint-disable-next-line no-control-regex
const ANSI = /\u001b\[[0-9;]*m/g;
const GAP = 2;

export interface Column {
  title: string;
  /** Right-align (numbers). */
  right?: boolean;
  /** May be shortened (middle elided) to fit the width: names, paths. */
  elide?: boolean;
}

export interface TableOptions {
  /** Where the table goes: aligned (and coloured) only when that stream is a terminal. */
  tty?: boolean;
  /** Drop the header line (`-H`, as `zfs list -H`). Default: the global -H. */
  noHeader?: boolean;
  /** Width to fit on a terminal. Default: $COLUMNS, the terminal's width, else 80. */
  width?: number;
}

/** The width human output fits: $COLUMNS, the terminal's, or 80. */
export function terminalWidth(): number {
  const env = Number(process.env.COLUMNS);
  if (Number.isInteger(env) && env >= 20) return env;
  const cols = process.stdout.columns;
  return cols && cols >= 20 ? cols : 80;
}

/** Whether stdout gets human tables: a terminal, and no -H. */
export function humanTables(): boolean {
  return process.stdout.isTTY === true && !outputMode.scripted;
}

const visible = (s: string) => s.replace(ANSI, '').length;

/** Shorten to `max` characters by replacing the middle with "…" (the ends of names and paths say most). */
export function elide(s: string, max: number): string {
  const plain = s.replace(ANSI, '');
  if (plain.length <= max) return s;
  if (max <= 1) return '…'.slice(0, max);
  const keep = max - 1;
  const head = Math.ceil(keep / 2);
  return `${plain.slice(0, head)}…${plain.slice(plain.length - (keep - head))}`;
}

export class OutputTable {
  private readonly rows: string[][] = [];
  private readonly cols: Column[];
  constructor(
    head: (string | Column)[],
    private readonly o: TableOptions = {},
  ) {
    this.cols = head.map((h) => (typeof h === 'string' ? { title: h } : h));
  }

  push(...rows: string[][]): void {
    this.rows.push(...rows);
  }

  get length(): number {
    return this.rows.length;
  }

  toString(): string {
    const tty = (this.o.tty ?? process.stdout.isTTY === true) && !outputMode.scripted;
    const noHeader = this.o.noHeader ?? outputMode.scripted;
    if (!tty) {
      // Tab-separated, one line per row: a multi-line cell becomes comma-separated.
      const line = (cells: string[]) => cells.map((x) => x.replace(ANSI, '').replace(/[\t\n]+/g, ', ')).join('\t');
      return [...(noHeader ? [] : [this.cols.map((h) => h.title)]), ...this.rows].map(line).join('\n');
    }
    return this.aligned(noHeader);
  }

  /** Aligned columns; a multi-line cell takes several lines with the other cells blank. */
  private aligned(noHeader: boolean): string {
    const n = this.cols.length;
    const lines: string[][] = [];
    for (const r of this.rows) {
      const parts = this.cols.map((_, i) => (r[i] ?? '').split('\n'));
      const h = Math.max(...parts.map((p) => p.length));
      for (let k = 0; k < h; k++) lines.push(parts.map((p) => p[k] ?? ''));
    }
    const head = this.cols.map((h) => h.title);
    const all = noHeader ? lines : [head, ...lines];
    const width = this.cols.map((_, i) => Math.max(0, ...all.map((r) => visible(r[i]))));
    // Fit: take room from the widest elidable column until the line fits
    // (never below its title or 8 characters).
    const budget = this.o.width ?? terminalWidth();
    const total = () => width.reduce((a, w) => a + w, 0) + GAP * (n - 1);
    while (total() > budget) {
      let widest = -1;
      for (let i = 0; i < n; i++) {
        const floor = Math.max(8, this.cols[i].title.length);
        if (this.cols[i].elide && width[i] > floor && (widest < 0 || width[i] > width[widest])) widest = i;
      }
      if (widest < 0) break;
      width[widest] = Math.max(Math.max(8, this.cols[widest].title.length), width[widest] - (total() - budget));
    }
    const cell = (x: string, i: number) => {
      const s = visible(x) > width[i] ? elide(x, width[i]) : x;
      if (i === n - 1 && !this.cols[i].right) return s;
      const pad = ' '.repeat(Math.max(0, width[i] - visible(s)));
      return this.cols[i].right ? pad + s : s + pad;
    };
    const out = all.map((r, k) => {
      const text = r.map(cell).join(' '.repeat(GAP)).replace(/\s+$/, '');
      return k === 0 && !noHeader ? c.bold(text) : text;
    });
    return out.join('\n');
  }
}

/**
 * A key/value block (show, status): aligned "key  value" lines on a
 * terminal, values elided to the width; "key<TAB>value" lines for scripts.
 */
export function keyValues(pairs: [string, string][], o: { tty?: boolean; width?: number } = {}): string {
  const tty = (o.tty ?? process.stdout.isTTY === true) && !outputMode.scripted;
  if (!tty) return pairs.map(([k, v]) => `${k}\t${v.replace(ANSI, '').replace(/[\t\n]+/g, ', ')}`).join('\n');
  const kw = Math.max(...pairs.map(([k]) => k.length));
  const vw = Math.max(8, (o.width ?? terminalWidth()) - kw - GAP);
  return pairs.map(([k, v]) => `${k.padEnd(kw)}${' '.repeat(GAP)}${elide(v, vw)}`).join('\n');
}
