// The NBD server's resource limits (design §10: "the server's memory is bounded
// whatever its clients do"). Every byte a client can make the server hold is
// a request payload read but not yet answered or a reply not yet taken by the
// client; both are counted per connection and across the server, and a client
// that stops taking its replies is dropped. docs/decisions.md gives the bound.

const MIB = 1024 * 1024;

export interface NbdLimits {
  /** Client connections open at once; more are closed on accept. */
  maxConnections: number;
  /** Requests of one connection being served at once (any command). */
  maxRequestsPerConnection: number;
  /**
   * Request bytes one connection may hold (READ lengths and WRITE payloads read
   * but not yet answered). A connection holding nothing may always take one
   * request, however large, so a client ignoring the advertised maximum still works.
   */
  requestBytesPerConnection: number;
  /** Reply bytes queued for one connection and not yet taken by its client; reading stops above this. */
  replyBytesPerConnection: number;
  /** Request and reply bytes held across all connections; reading stops above this. */
  totalBytes: number;
  /**
   * A connection whose client takes none of its queued replies (or, while
   * negotiating, sends nothing and reads nothing) for this long is dropped.
   */
  stallTimeoutMs: number;
}

export const DEFAULT_LIMITS: Readonly<NbdLimits> = Object.freeze({
  maxConnections: 64,
  maxRequestsPerConnection: 128,
  requestBytesPerConnection: 8 * MIB,
  replyBytesPerConnection: 2 * MIB,
  totalBytes: 256 * MIB,
  stallTimeoutMs: 30_000,
});

/** Test hook, like VSNAP_LOCK_WAIT_MS: tests of a separate `vsnap serve` process shorten the stall timeout. */
const STALL_ENV = 'VSNAP_NBD_STALL_MS';

/** The defaults overridden by `given`; throws on a value that is not a positive integer. */
export function resolveLimits(given: Partial<NbdLimits> = {}): NbdLimits {
  const env = process.env[STALL_ENV];
  const fromEnv: Partial<NbdLimits> = env === undefined || env === '' ? {} : { stallTimeoutMs: Number(env) };
  const out: NbdLimits = { ...DEFAULT_LIMITS, ...fromEnv };
  for (const [k, v] of Object.entries(given) as [keyof NbdLimits, number | undefined][]) {
    if (v !== undefined) out[k] = v;
  }
  for (const [k, v] of Object.entries(out)) {
    if (!Number.isSafeInteger(v) || v <= 0) {
      const src = k === 'stallTimeoutMs' && env !== undefined && given.stallTimeoutMs === undefined ? ` (from ${STALL_ENV})` : '';
      throw new RangeError(`NBD limit ${k} must be a positive integer, got ${JSON.stringify(v)}${src}`);
    }
  }
  return out;
}

