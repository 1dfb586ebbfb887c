// Shared helpers for the on-disk format tests: temporary directories and
// predictable block contents (so a wrong block is recognisable).
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import assert from 'node:assert/strict';
import { IntegrityError } from '../../src/errors.js';

export function tempDir(prefix = 'vsnap-formats-'): { dir: string; cleanup: () => void } {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  return { dir, cleanup: () => fs.rmSync(dir, { recursive: true, force: true }) };
}

/** Content of `block` as logged by "generation" gen: every byte depends on both, so mix-ups show. */
export function blockData(block: number, size: number, gen = 0): Buffer {
  const b = Buffer.alloc(size);
  let x = (block * 2654435761 + gen * 40503 + 12345) >>> 0;
  for (let i = 0; i < size; i += 4) {
    x = (Math.imul(x, 1103515245) + 12345) >>> 0;
    b.writeUInt32LE(x, i);
  }
  return b;
}

/** Assert `p` rejects with an IntegrityError whose message matches every pattern. */
export async function rejectsIntegrity(p: Promise<unknown>, ...patterns: RegExp[]): Promise<IntegrityError> {
  let caught: unknown;
  try {
    await p;
  } catch (e) {
    caught = e;
  }
  assert.ok(caught instanceof IntegrityError, `expected IntegrityError, got ${caught instanceof Error ? `${caught.name}: ${caught.message}` : String(caught)}`);
  for (const re of patterns) assert.match(caught.message, re);
  return caught;
}

export function escapeRe(s: string): RegExp {
  return new RegExp(s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&'));
}
