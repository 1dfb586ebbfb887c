// Human output: always on stderr, colour only when stderr is a TTY and
// NO_COLOR is unset. Results (JSON, raw bytes) go to stdout elsewhere.
import { Chalk } from 'chalk';
import type { Ora } from 'ora';

const colour = process.stderr.isTTY === true && !('NO_COLOR' in process.env) && process.env.TERM !== 'dumb';
export const c = new Chalk({ level: colour ? 1 : 0 });
export const interactive = process.stderr.isTTY === true;

export function info(msg: string): void {
  process.stderr.write(`${msg}\n`);
}

export function warn(msg: string): void {
  process.stderr.write(`${c.yellow('warning:')} ${msg}\n`);
}

export function printJson(value: unknown): void {
  process.stdout.write(`${JSON.stringify(value, null, 2)}\n`);
}

/**
 * A spinner on a TTY; a no-op otherwise (non-TTY output stays plain). ora is
 * loaded only when a spinner is really shown: importing it costs ~70 ms,
 * which every scripted (non-TTY) run would otherwise pay.
 */
export function spinner(text: string): { succeed(t?: string): void; fail(t?: string): void; stop(): void; text(t: string): void } {
  if (!interactive) {
    return { succeed: () => {}, fail: () => {}, stop: () => {}, text: () => {} };
  }
  let s: Ora | undefined;
  let done = false;
  let label = text;
  void import('ora').then(({ default: ora }) => {
    if (!done) s = ora({ text: label, stream: process.stderr, color: colour ? 'cyan' : undefined, isEnabled: true }).start();
  });
  const finish = (fn: (o: Ora) => void, fallback?: string) => {
    done = true;
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

/** A progress line on a TTY (percentage of bytes), nothing otherwise. */
export function progress(label: string): { update(done: number, total: number): void; done(): void } {
  if (!interactive) return { update: () => {}, done: () => {} };
  let last = -1;
  return {
    update(done: number, total: number) {
      const pct = total > 0 ? Math.floor((done / total) * 100) : 100;
      if (pct === last) return;
      last = pct;
      const width = 30;
      const filled = Math.round((pct / 100) * width);
      process.stderr.write(`\r${label} [${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${pct}%`);
    },
    done() {
      process.stderr.write('\r\x1b[K');
    },
  };
}
