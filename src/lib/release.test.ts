import { test } from 'node:test';
import assert from 'node:assert/strict';
import { release } from './release.ts';

test('release frees a buffer owned alone at once, and leaves small buffers from the shared pool alone', () => {
  const big = Buffer.allocUnsafe(1 << 20);
  const view = big.subarray(10, 20);
  release(view);
  assert.equal(big.length, 0, 'the memory behind every view is gone');
  assert.equal(big.buffer.detached, true);
  release(big); // twice: nothing happens
  const small = Buffer.from('pooled');
  const neighbour = Buffer.from('neighbour');
  release(small);
  assert.equal(small.toString(), 'pooled');
  assert.equal(neighbour.toString(), 'neighbour');
  // A small buffer of its own is freed too.
  const own = Buffer.allocUnsafeSlow(600);
  release(own.subarray(0, 512));
  assert.equal(own.length, 0);
});
