// Tables for people and for pipes (design §8). On a terminal: cli-table3's
// boxes, up to a few hundred rows. Piped, or larger: plain text, so awk and
// cut see clean fields and a 10,000-snapshot `vsnap list` renders in
// milliseconds (cli-table3's layout is quadratic in rows: 20 s at 10,000,
// measured here).
import Table from 'cli-table3';
import { c } from './ui.js';

const BOXED_MAX_ROWS = 300;
// eslint-disable-next-line no-control-regex
const ANSI = /\u001b\[[0-9;]*m/g;

export interface TableOptions {
  /** Where the table goes: boxes and colour only when that stream is a terminal. */
  tty?: boolean;
  /** Drop the header line (`-H`, as `zfs list -H`). */
  noHeader?: boolean;
}

export class OutputTable {
  private readonly rows: string[][] = [];
  constructor(
    private readonly head: string[],
    private readonly o: TableOptions = {},
  ) {}

  push(...rows: string[][]): void {
    this.rows.push(...rows);
  }

  toString(): string {
    const tty = this.o.tty ?? process.stdout.isTTY === true;
    if (!tty) {
      // Tab-separated, one line per row: a multi-line cell becomes comma-separated.
      const line = (cells: string[]) => cells.map((x) => x.replace(ANSI, '').replace(/[\t\n]+/g, ', ')).join('\t');
      return [...(this.o.noHeader ? [] : [this.head]), ...this.rows].map(line).join('\n');
    }
    if (this.rows.length <= BOXED_MAX_ROWS && !this.o.noHeader) {
      const t = new Table({ head: this.head, style: { head: c.level > 0 ? ['cyan'] : [], border: c.level > 0 ? ['grey'] : [] } });
      t.push(...this.rows);
      return t.toString();
    }
    // Many rows on a terminal: aligned columns without boxes.
    const all = [...(this.o.noHeader ? [] : [this.head]), ...this.rows].map((r) => r.map((x) => x.replace(/\n/g, ', ')));
    const width = this.head.map((_, i) => Math.max(...all.map((r) => (r[i] ?? '').replace(ANSI, '').length)));
    return all.map((r) => r.map((x, i) => (i === r.length - 1 ? x : x + ' '.repeat(width[i] - x.replace(ANSI, '').length))).join('  ')).join('\n');
  }
}
