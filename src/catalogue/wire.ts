// The control socket's wire format, both directions, and the validation of
// what arrives on it. One request per connection: a JSON object on one line,
// `{"cmd": <method>, ...its arguments}`, ended by a newline (or by the
// client closing its side); one reply line, `{"ok": true, "value": ...}` or
// `{"ok": false, "error": {kind, message, errno?}}`, then the server closes.
//
// The socket is mode 0600, but what arrives is still checked field by field
// (zod, one schema per method): a malformed request is a usage error that
// names the field and the value, never a crash or an "internal error".
import * as z from 'zod';
import { UsageError, OperationError, deserializeError, type SerializedError } from '../errors.js';
import { METHODS, isMethod, type Args, type Method, type Result } from './catalogue.js';

/** The longest request line accepted; a real one is well under 1 KiB. */
export const MAX_REQUEST_BYTES = 1 << 20;

const count = z.number().int().min(0).max(1_000_000).optional();

/** Each method's arguments as they may arrive; unknown fields are refused (a typo should not be ignored). */
const ARG_SCHEMAS: { readonly [M in Method]: z.ZodType<Args<M>> } = {
  create: z.strictObject({ name: z.string().optional(), expiresInMs: z.number().int().positive().max(Number.MAX_SAFE_INTEGER).optional() }),
  list: z.strictObject({}),
  show: z.strictObject({ ref: z.string() }),
  delete: z.strictObject({ refs: z.array(z.string()) }),
  prune: z.strictObject({
    rules: z.strictObject({ last: count, hourly: count, daily: count, weekly: count, monthly: count, yearly: count }),
    dryRun: z.boolean(),
    includeManual: z.boolean().optional(),
  }),
  status: z.strictObject({}),
  hold: z.strictObject({ refs: z.array(z.string()).min(1) }),
  release: z.strictObject({ refs: z.array(z.string()).min(1) }),
  cloneCreate: z.strictObject({ snap: z.string(), name: z.string(), force: z.boolean().optional() }),
  cloneList: z.strictObject({}),
  cloneReset: z.strictObject({ name: z.string() }),
  cloneDelete: z.strictObject({ names: z.array(z.string()) }),
};

/** A request checked against its method's schema. */
export type Request = { [M in Method]: { method: M; args: Args<M> } }[Method];

export type Reply<M extends Method> = { ok: true; value: Result<M> } | { ok: false; error: SerializedError };

export function encodeRequest<M extends Method>(method: M, args: Args<M>): string {
  return `${JSON.stringify({ cmd: method, ...args })}\n`;
}

/** A short rendering of a value for a message (requests may be large or hostile). */
function shown(v: unknown): string {
  if (v === undefined) return 'nothing';
  const s = JSON.stringify(v) ?? String(v);
  return s.length > 80 ? `${s.slice(0, 77)}...` : s;
}

function valueAt(root: unknown, path: readonly PropertyKey[]): unknown {
  let v = root;
  for (const k of path) {
    if (v === null || typeof v !== 'object' || !Object.hasOwn(v, k)) return undefined;
    v = (v as Record<PropertyKey, unknown>)[k];
  }
  return v;
}

function describeIssue(method: Method, args: unknown, issue: z.core.$ZodIssue): string {
  const where = issue.path.map(String).join('.');
  const value = valueAt(args, issue.path);
  const prefix = `control socket: ${method}: `;
  if (issue.code === 'unrecognized_keys') {
    const keys = issue.keys.map((k) => `${where ? `${where}.` : ''}${k}`);
    return `${prefix}unknown field${keys.length > 1 ? 's' : ''} ${keys.map((k) => JSON.stringify(k)).join(', ')}`;
  }
  if (issue.code === 'invalid_type') {
    const expected = { int: 'an integer', array: 'an array', object: 'an object' }[issue.expected as string] ?? `a ${issue.expected}`;
    return value === undefined ? `${prefix}${where} is required (${expected})` : `${prefix}${where} must be ${expected} (got ${shown(value)})`;
  }
  return `${prefix}${where}: ${issue.message.toLowerCase()} (got ${shown(value)})`;
}

/** Parse and check one request line; every problem is a UsageError saying what is wrong. */
export function parseRequest(line: string): Request {
  let raw: unknown;
  try {
    raw = JSON.parse(line);
  } catch (err) {
    throw new UsageError(`control socket: the request is not JSON (${(err as Error).message})`);
  }
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) {
    throw new UsageError(`control socket: the request must be a JSON object such as {"cmd":"list"} (got ${shown(raw)})`);
  }
  const { cmd, ...args } = raw as Record<string, unknown>;
  if (!isMethod(cmd)) {
    throw new UsageError(`control socket: cmd: ${cmd === undefined ? 'missing' : `unknown command ${shown(cmd)}`} (expected one of ${METHODS.join(', ')})`);
  }
  const r = ARG_SCHEMAS[cmd].safeParse(args);
  if (!r.success) throw new UsageError(describeIssue(cmd, args, r.error.issues[0]));
  return { method: cmd, args: r.data } as Request;
}

export function encodeReply(reply: { ok: true; value: unknown } | { ok: false; error: SerializedError }): string {
  return `${JSON.stringify(reply)}\n`;
}

const REPLY = z.union([
  z.object({ ok: z.literal(true), value: z.unknown() }),
  z.object({
    ok: z.literal(false),
    error: z.object({ kind: z.enum(['usage', 'operation', 'integrity', 'stale', 'internal']), message: z.string(), errno: z.string().optional() }),
  }),
]);

/**
 * The result of a method from the server's reply, or the error it carried
 * (rebuilt with its type, so the exit code is the server's). The value is
 * trusted to match the method: it comes from this program's own server.
 */
export function parseReply<M extends Method>(_method: M, text: string, socketPath: string): Result<M> {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch {
    throw new OperationError(`the server closed its control socket ${socketPath} without an answer`);
  }
  const r = REPLY.safeParse(raw);
  if (!r.success) throw new OperationError(`the server's control socket ${socketPath} answered something that is not a vsnap reply: ${shown(raw)}`);
  if (r.data.ok) return r.data.value as Result<M>;
  throw deserializeError(r.data.error);
}
