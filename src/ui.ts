// Human output: always on stderr, colour only when stderr is a TTY and
// NO_COLOR is unset. Results (JSON, raw bytes, tables) go to stdout elsewhere.
// `-q` silences everything here except errors, which main.ts prints itself:
// a cron job then mails only when something failed.
import { Chalk } from 'chalk';
import type { Ora } from 'ora';

const colour = process.stderr.isTTY === true && !('NO_COLOR' in process.env) && process.env.TERM !== 'dumb';
export const c = new Chalk({ level: colour ? 1 : 0 });

/** The global output flags (set once by the CLI before a command runs). */
export const outputMode = {
  /** -q/--quiet: no messages, warnings, spinners or progress on stderr. */
  quiet: false,
  /** -H: scripted tables, tab-separated with no header line, even on a terminal. */
  scripted: false,
};

/** Spinners and progress bars: stderr is a terminal and -q is off. */
export function interactive(): boolean {
  return process.stderr.isTTY === true && !outputMode.quiet;
}

export function info(msg: string): void {
  if (!outputMode.quiet) process.stderr.write(`${msg}\n`);
}

export function warn(msg: string): void {
  if (!outputMode.quiet) process.stderr.write(`${c.yellow('warning:')} ${msg}\n`);
}

export function printJson(value: unknown): void {
  process.stdout.write(`${JSON.stringify(value, null, 2)}\n`);
}

/** What is on the terminal's status line now, so that an exit can clear it. */
let statusLine = false;

/** Clear a progress or spinner line left on the terminal (a signal exit, an error). */
export function clearStatusLine(): void {
  if (statusLine && process.stderr.isTTY) process.stderr.write('\r\x1b[K');
  statusLine = false;
}

/**
 * A spinner on a TTY; a no-op otherwise (non-TTY output stays plain). ora is
 * loaded only when a spinner is really shown: importing it costs ~70 ms,
 * which every scripted (non-TTY) run would otherwise pay.
 */
export function spinner(text: string): { succeed(t?: string): void; fail(t?: string): void; stop(): void; text(t: string): void } {
  // A terminal whose size was never set (script(1) without a terminal,
  // `ssh -tt` from a pipe, some CI runners) reports 0 columns: ora divides
  // by it and its clear loop then never ends, synchronously, so not even
  // SIGTERM gets through. Such a terminal gets no spinner.
  if (!interactive() || !((process.stderr.columns ?? 0) > 0)) {
    return { succeed: () => {}, fail: () => {}, stop: () => {}, text: () => {} };
  }
  let s: Ora | undefined;
  let done = false;
  let label = text;
  void import('ora').then(({ default: ora }) => {
    if (!done) {
      s = ora({ text: label, stream: process.stderr, color: colour ? 'cyan' : undefined, isEnabled: true, discardStdin: false }).start();
      statusLine = true;
    }
  });
  const finish = (fn: (o: Ora) => void, fallback?: string) => {
    done = true;
    statusLine = false;
    if (s) fn(s);
    else if (fallback) process.stderr.write(`${fallback}\n`);
  };
  return {
    succeed: (t?: string) => finish((o) => o.succeed(t), t),
    fail: (t?: string) => finish((o) => o.fail(t), t),
    stop: () => finish((o) => o.stop()),
    text: (t: string) => {
      label = t;
      if (s) s.text = t;
    },
  };
}

export interface Progress {
  /** Bytes done so far (durable or written, as the caller counts) out of total. */
  update(done: number, total: number): void;
  /** A phase after the byte count, such as "syncing": shown instead of the rate. */
  phase(label: string): void;
  done(): void;
}

function rate(bytesPerSec: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let v = bytesPerSec;
  let u = 0;
  while (v >= 1024 && u < units.length - 1) {
    v /= 1024;
    u++;
  }
  return `${v < 10 ? v.toFixed(1) : Math.round(v)} ${units[u]}`;
}

/**
 * A progress line on a TTY, nothing otherwise. It is drawn at once (so a long
 * command shows something within a second), then at most every 100 ms, with
 * the bytes done, the rate and a phase ("spooling stdin", "syncing"). With an
 * unknown total (total 0) it shows bytes and rate without a bar.
 */
export function progress(label: string): Progress {
  if (!interactive()) return { update: () => {}, phase: () => {}, done: () => {} };
  let t0 = Date.now();
  let lastDraw = 0;
  let cur = { done: 0, total: 0 };
  let phaseLabel = '';
  const draw = (force: boolean) => {
    const now = Date.now();
    if (!force && now - lastDraw < 100) return;
    lastDraw = now;
    const secs = Math.max((now - t0) / 1000, 0.001);
    const amount = `${rate(cur.done)}${cur.total > 0 ? ` of ${rate(cur.total)}` : ''}`;
    const tail = `${phaseLabel ? `${phaseLabel}, ` : ''}${rate(cur.done / secs)}/s`;
    let bar = '';
    if (cur.total > 0) {
      const pct = Math.min(100, Math.floor((cur.done / cur.total) * 100));
      const width = 20;
      const filled = Math.round((pct / 100) * width);
      bar = ` [${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${String(pct).padStart(3)}%`;
    }
    process.stderr.write(`\r\x1b[K${label}${bar} ${amount}, ${tail}`);
    statusLine = true;
  };
  draw(true);
  // Redraw while nothing arrives (a slow pipe, a long sync): the time and rate stay honest.
  const timer = setInterval(() => draw(true), 500);
  timer.unref();
  return {
    update(done: number, total: number) {
      const newTotal = total !== cur.total;
      cur = { done, total };
      // The last update is always drawn: a bar must be seen to reach 100%; and
      // the first with a new total, so the bar is seen to start from 0%.
      draw((total > 0 && done >= total) || newTotal);
    },
    phase(l: string) {
      // The rate is per phase: reading stdin and writing run at different speeds.
      if (l !== phaseLabel) t0 = Date.now();
      phaseLabel = l;
      draw(true);
    },
    done() {
      clearInterval(timer);
      clearStatusLine();
    },
  };
}

/**
 * Run fn with a progress line that counts the bytes it reports; the line is
 * cleared however fn ends. `add` counts more bytes, `total` sets the size
 * (0: unknown, no percentage), `phase` names a phase.
 */
export async function withProgress<T>(
  label: string,
  fn: (p: { add: (n: number) => void; set: (n: number) => void; total: (t: number) => void; phase: (l: string) => void }) => Promise<T>,
): Promise<T> {
  const bar = progress(label);
  let done = 0;
  let total = 0;
  try {
    return await fn({
      add: (n) => bar.update((done += n), total),
      set: (n) => bar.update((done = n), total),
      total: (t) => {
        total = t;
        bar.update(done, total);
      },
      phase: (l) => bar.phase(l),
    });
  } finally {
    bar.done();
  }
}
