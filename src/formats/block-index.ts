// Compact in-memory index of a change log: block number -> record slot.
//
// Why not a Map<number, number>: V8 spends roughly 40-80 bytes per entry on a
// Map, and design §10 allows a worker 16 bytes per logged block in total.
//
// Layout. Slots of a change log are dense (0, 1, 2, ... in file order), so the
// index keeps two typed arrays:
//   - `keys`:  slot -> block number, dense. Uint32Array while every block fits
//              in 32 bits (16 TiB of 4 KiB blocks), promoted to Float64Array
//              (exact for integers below 2^53) the first time one does not.
//   - `table`: open-addressing hash table (linear probing, power-of-two size,
//              load <= 3/4) whose buckets hold slot + 1, 0 meaning empty.
// A lookup hashes the block, probes buckets and compares keys[bucket - 1]
// with the block. That is about 4 bytes (keys) + 5.3..10.7 bytes (table) per
// entry; the test suite measures it. Entries are never removed: a block is
// logged at most once per log and a log only grows (recovery truncates before
// the index is built).

const EMPTY = 0;
const MAX_LOAD = 0.75;
const MIN_TABLE_BITS = 4;
const TWO32 = 0x1_0000_0000;

export class BlockIndex {
  private keys: Uint32Array | Float64Array;
  private table: Uint32Array;
  private shift: number; // 32 - log2(table.length): Fibonacci hashing takes the top bits
  private n = 0;

  /** `expected`: number of entries to size for up front (avoids growth copies). */
  constructor(expected = 0) {
    this.keys = new Uint32Array(Math.max(16, expected));
    let bits = MIN_TABLE_BITS;
    while ((1 << bits) * MAX_LOAD < expected) bits++;
    this.table = new Uint32Array(1 << bits);
    this.shift = 32 - bits;
  }

  get size(): number {
    return this.n;
  }

  /** Bytes held by the typed arrays (what the index costs beyond a few fixed objects). */
  get byteSize(): number {
    return this.keys.byteLength + this.table.byteLength;
  }

  /** Slot of `block`, or -1. */
  get(block: number): number {
    const keys = this.keys;
    const table = this.table;
    const mask = table.length - 1;
    let i = this.bucket(block);
    for (;;) {
      const v = table[i];
      if (v === EMPTY) return -1;
      if (keys[v - 1] === block) return v - 1;
      i = (i + 1) & mask;
    }
  }

  has(block: number): boolean {
    return this.get(block) >= 0;
  }

  /** Block stored at `slot` (0 <= slot < size). */
  blockAt(slot: number): number {
    if (!(slot >= 0 && slot < this.n)) throw new RangeError(`BlockIndex: slot ${slot} out of range 0..${this.n - 1}`);
    return this.keys[slot];
  }

  /** Append `block` as the next slot and return that slot. Adding a present block is a bug. */
  add(block: number): number {
    if (!Number.isSafeInteger(block) || block < 0) throw new RangeError(`BlockIndex: invalid block number ${block}`);
    if (this.get(block) >= 0) throw new Error(`BlockIndex: block ${block} is already present`);
    const slot = this.n;
    if (slot >= 0xffff_fffe) throw new RangeError('BlockIndex: too many entries');
    if (block >= TWO32 && this.keys instanceof Uint32Array) {
      this.keys = Float64Array.from(this.keys);
    }
    if (slot === this.keys.length) this.growKeys();
    this.keys[slot] = block;
    this.n = slot + 1;
    if (this.n > this.table.length * MAX_LOAD) this.rehash(this.table.length * 2);
    else this.place(slot);
    return slot;
  }

  /** Blocks in slot order. */
  *[Symbol.iterator](): IterableIterator<number> {
    for (let s = 0; s < this.n; s++) yield this.keys[s];
  }

  /**
   * Keep only slots 0..n-1. Used by torn-tail recovery when records already
   * indexed turn out to be torn; O(size) because the table is rebuilt.
   */
  truncate(n: number): void {
    if (!(Number.isInteger(n) && n >= 0 && n <= this.n)) throw new RangeError(`BlockIndex: cannot truncate ${this.n} entries to ${n}`);
    if (n === this.n) return;
    this.n = n;
    this.rehash(this.table.length);
  }

  private bucket(block: number): number {
    // Fold the high part in so blocks above 2^32 spread too, then multiply by
    // 2^32/phi and keep the top bits: sequential blocks land far apart.
    const lo = block >>> 0;
    const hi = block >= TWO32 ? Math.floor(block / TWO32) : 0;
    const x = lo ^ Math.imul(hi, 0x27d4eb2f);
    return Math.imul(x, 0x9e3779b1) >>> this.shift;
  }

  private place(slot: number): void {
    const table = this.table;
    const mask = table.length - 1;
    let i = this.bucket(this.keys[slot]);
    while (table[i] !== EMPTY) i = (i + 1) & mask;
    table[i] = slot + 1;
  }

  private growKeys(): void {
    // 1.5x rather than 2x: less slack at rest, still amortised O(1).
    const cap = Math.max(16, Math.ceil(this.keys.length * 1.5));
    const next = this.keys instanceof Float64Array ? new Float64Array(cap) : new Uint32Array(cap);
    next.set(this.keys);
    this.keys = next;
  }

  private rehash(size: number): void {
    this.table = new Uint32Array(size);
    this.shift = 32 - Math.log2(size);
    for (let s = 0; s < this.n; s++) this.place(s);
  }
}
