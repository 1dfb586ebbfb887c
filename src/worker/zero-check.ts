// Whether a buffer is all zero bytes: export --sparse skips such pieces
// instead of writing them (a zero check is far cheaper than a write).
// Compared against a shared zero buffer with Buffer.equals (memcmp in C++):
// the JavaScript loop over BigUint64 words it replaces took ~23 ms per zero
// 4 MiB here, this ~0.3 ms.
const ZEROS = Buffer.alloc(64 << 10);

export function isZero(buf: Buffer): boolean {
  for (let at = 0; at < buf.length; at += ZEROS.length) {
    const n = Math.min(ZEROS.length, buf.length - at);
    if (!buf.subarray(at, at + n).equals(n === ZEROS.length ? ZEROS : ZEROS.subarray(0, n))) return false;
  }
  return true;
}
