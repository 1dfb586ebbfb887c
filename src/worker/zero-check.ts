// Whether a buffer is all zero bytes: export --sparse skips such chunks
// instead of writing them (a zero check is far cheaper than a write).
export function isZero(buf: Buffer): boolean {
  // Compare 8 bytes at a time where aligned; a zero check is far cheaper than a write.
  const words = Math.floor(buf.length / 8);
  const view = new BigUint64Array(buf.buffer, buf.byteOffset, buf.byteOffset % 8 === 0 ? words : 0);
  for (let k = 0; k < view.length; k++) if (view[k] !== 0n) return false;
  for (let k = view.length * 8; k < buf.length; k++) if (buf[k] !== 0) return false;
  return true;
}
