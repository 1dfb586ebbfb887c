// Where a manifest's JSON goes wrong: line, column, the offending character
// and what was expected there. Node 20's JSON.parse gives a position for
// some errors and none for others ("Unexpected token '}', ... is not valid
// JSON"), so this scanner walks the grammar (RFC 8259) itself. It runs only
// after JSON.parse has failed, so it need not build values, only find the
// first place the text stops being JSON. Pure.

export interface JsonSyntaxError {
  /** 1-based. */
  line: number;
  /** 1-based, in characters (UTF-16 units) from the start of the line. */
  column: number;
  /** The offending character as people read it (`"}"`, `U+FEFF`, `end of file`). */
  found: string;
  /** What the grammar wanted there. */
  expected: string;
}

class Stop {
  constructor(
    readonly at: number,
    readonly expected: string,
  ) {}
}

/** Far deeper than any manifest; keeps hostile input from exhausting the stack. */
const MAX_DEPTH = 512;

function describeChar(text: string, at: number): string {
  if (at >= text.length) return 'end of file';
  const ch = text.codePointAt(at)!;
  if (ch >= 0x21 && ch < 0x7f) return JSON.stringify(String.fromCodePoint(ch));
  const names: Record<number, string> = { 0x09: 'a tab', 0x0a: 'a line break', 0x0d: 'a carriage return', 0x20: 'a space', 0xfeff: 'a byte-order mark U+FEFF' };
  return names[ch] ?? `U+${ch.toString(16).toUpperCase().padStart(4, '0')}`;
}

function scan(text: string, duplicates?: { at: number; key: string }[]): Stop | undefined {
  let i = 0;
  const ws = (): void => {
    while (i < text.length && ' \t\n\r'.includes(text[i])) i++;
  };
  const fail = (expected: string, at = i): never => {
    throw new Stop(at, expected);
  };
  const literal = (word: string): void => {
    for (let k = 0; k < word.length; k++, i++) if (text[i] !== word[k]) fail(`"${word}"`);
  };
  const string = (): void => {
    i++; // the opening quote
    for (;;) {
      if (i >= text.length) fail('a closing " before the end of the file');
      const c = text.charCodeAt(i);
      if (c === 0x22) {
        i++;
        return;
      }
      if (c < 0x20) fail('a closing " or an escape such as \\n (control characters must be escaped in strings)');
      if (c === 0x5c) {
        i++;
        const e = text[i];
        if (e === 'u') {
          for (let k = 1; k <= 4; k++) if (!/[0-9a-fA-F]/.test(text[i + k] ?? '')) fail('four hex digits after \\u', i + k);
          i += 5;
        } else if (e !== undefined && '"\\/bfnrt'.includes(e)) i++;
        else fail('an escape: \\" \\\\ \\/ \\b \\f \\n \\r \\t or \\uXXXX');
      } else i++;
    }
  };
  const number = (): void => {
    if (text[i] === '-') i++;
    if (text[i] === '0') i++;
    else if (/[1-9]/.test(text[i] ?? '')) while (/[0-9]/.test(text[i] ?? '')) i++;
    else fail('a digit');
    if (text[i] === '.') {
      i++;
      if (!/[0-9]/.test(text[i] ?? '')) fail('a digit after the decimal point');
      while (/[0-9]/.test(text[i] ?? '')) i++;
    }
    if (text[i] === 'e' || text[i] === 'E') {
      i++;
      if (text[i] === '+' || text[i] === '-') i++;
      if (!/[0-9]/.test(text[i] ?? '')) fail('a digit in the exponent');
      while (/[0-9]/.test(text[i] ?? '')) i++;
    }
  };
  const value = (depth: number): void => {
    if (depth > MAX_DEPTH) fail(`nesting at most ${MAX_DEPTH} deep`);
    ws();
    const c = text[i];
    if (c === '{') {
      i++;
      ws();
      if (text[i] === '}') {
        i++;
        return;
      }
      const keys = new Set<string>();
      for (;;) {
        ws();
        if (text[i] !== '"') fail(text[i] === '}' ? 'another "key" after "," (JSON allows no trailing comma)' : 'a "key" in double quotes');
        const keyAt = i;
        string();
        if (duplicates) {
          // JSON.parse keeps the last of two equal keys and drops the first without a word.
          const key = JSON.parse(text.slice(keyAt, i)) as string;
          if (keys.has(key)) duplicates.push({ at: keyAt, key });
          keys.add(key);
        }
        ws();
        if (text[i] !== ':') fail('":" after the key');
        i++;
        value(depth + 1);
        ws();
        if (text[i] === ',') {
          i++;
          continue;
        }
        if (text[i] === '}') {
          i++;
          return;
        }
        fail('"," or "}" after a value in an object');
      }
    }
    if (c === '[') {
      i++;
      ws();
      if (text[i] === ']') {
        i++;
        return;
      }
      for (;;) {
        ws();
        if (text[i] === ']') fail('another value after "," (JSON allows no trailing comma)');
        value(depth + 1);
        ws();
        if (text[i] === ',') {
          i++;
          continue;
        }
        if (text[i] === ']') {
          i++;
          return;
        }
        fail('"," or "]" after a value in an array');
      }
    }
    if (c === '"') return string();
    if (c === '-' || /[0-9]/.test(c ?? '')) return number();
    if (c === 't') return literal('true');
    if (c === 'f') return literal('false');
    if (c === 'n') return literal('null');
    if (c === "'") fail('a value; strings take double quotes, not single');
    fail('a value (object, array, string, number, true, false or null)');
  };
  try {
    value(0);
    ws();
    if (i < text.length) fail('the end of the file after the top-level value');
    return undefined;
  } catch (e) {
    if (e instanceof Stop) return e;
    throw e;
  }
}

function position(text: string, at: number): { line: number; column: number } {
  const before = text.slice(0, at);
  return { line: before.split('\n').length, column: at - (before.lastIndexOf('\n') + 1) + 1 };
}

/** The first syntax error in text, or undefined when it is valid JSON. */
export function findJsonSyntaxError(text: string): JsonSyntaxError | undefined {
  const stop = scan(text);
  if (!stop) return undefined;
  return { ...position(text, stop.at), found: describeChar(text, stop.at), expected: stop.expected };
}

/** Keys that appear twice in one object of valid JSON text (the later occurrences), in text order. */
export function findDuplicateKeys(text: string): { key: string; line: number; column: number }[] {
  const found: { at: number; key: string }[] = [];
  if (scan(text, found)) return [];
  return found.map((d) => ({ key: d.key, ...position(text, d.at) }));
}
