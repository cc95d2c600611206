import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { isStorageError, type StorageBackend } from './backend.ts';

/**
 * The shared conformance suite: every backend runs it from its own test file with a factory and a list of
 * skipped cases (each with a reason). It covers the unhappy paths too: wrong-hash writes, conditional create,
 * concurrent writers, listing while writing, missing keys, aborts and an injected full disk.
 */

export interface ConformanceFixture {
  backend: StorageBackend;
  /** Makes the next writes fail as on a full disk (true) or succeed again (false). */
  setNoSpace?: (on: boolean) => void;
  cleanup(): Promise<void>;
}

export type ConformanceCase =
  | 'round-trip'
  | 'ownership'
  | 'missing-key'
  | 'overwrite'
  | 'conditional-create'
  | 'wrong-hash'
  | 'list'
  | 'range-read'
  | 'streamed-source'
  | 'concurrent-writers'
  | 'list-while-writing'
  | 'abort'
  | 'no-space'
  | 'touch'
  | 'invalid-key'
  | 'large-object'
  | 'cold-read';

async function keys(backend: StorageBackend, prefix: string): Promise<string[]> {
  const out: string[] = [];
  for await (const entry of backend.list(prefix)) out.push(entry.key);
  return out.sort();
}

export function runConformanceSuite(
  name: string,
  factory: () => Promise<ConformanceFixture>,
  skip: Partial<Record<ConformanceCase, string>> = {},
): void {
  describe(`StorageBackend conformance: ${name}`, () => {
    let fixture: ConformanceFixture;
    let backend: StorageBackend;
    let n = 0;
    const fresh = (): string => `case${++n}/`;
    before(async () => {
      fixture = await factory();
      backend = fixture.backend;
    });
    after(async () => {
      await fixture.backend.close();
      await fixture.cleanup();
    });
    const test = (id: ConformanceCase, title: string, fn: () => Promise<void>): void => {
      const reason = skip[id];
      if (reason !== undefined) it(title, { skip: reason }, () => {});
      else it(title, fn);
    };

    test('round-trip', 'write() then read() returns the same bytes and stat() the size', async () => {
      const p = fresh();
      const data = randomBytes(1000);
      await backend.write(`${p}a/b.bin`, data);
      assert.deepEqual(await backend.read(`${p}a/b.bin`), data);
      assert.equal((await backend.stat(`${p}a/b.bin`))?.size, 1000);
      await backend.write(`${p}empty`, Buffer.alloc(0));
      assert.equal((await backend.read(`${p}empty`)).length, 0);
    });

    test('ownership', 'a read buffer is the caller\'s, and a written source is not kept: changing either changes nothing stored', async () => {
      const p = fresh();
      const data = randomBytes(20_000);
      const source = Buffer.from(data);
      await backend.write(`${p}k`, source);
      source.fill(0);
      const first = await backend.read(`${p}k`);
      assert.deepEqual(first, data);
      first.fill(1);
      assert.deepEqual(await backend.read(`${p}k`), data);
      assert.deepEqual(await backend.read(`${p}k`, { range: { start: 10, end: 30 } }), data.subarray(10, 30));
    });

    test('missing-key', 'a missing key: read() fails not-found, stat() is undefined, delete() succeeds, touch() fails not-found', async () => {
      const p = fresh();
      await assert.rejects(backend.read(`${p}nope`), (e) => isStorageError(e, 'not-found'));
      assert.equal(await backend.stat(`${p}nope`), undefined);
      await backend.delete(`${p}nope`);
      await assert.rejects(backend.touch(`${p}nope`), (e) => isStorageError(e, 'not-found'));
      assert.deepEqual(await keys(backend, p), []);
    });

    test('overwrite', 'write() over an existing key replaces it', async () => {
      const p = fresh();
      await backend.write(`${p}k`, Buffer.from('one'));
      await backend.write(`${p}k`, Buffer.from('second'));
      assert.equal((await backend.read(`${p}k`)).toString(), 'second');
      await backend.delete(`${p}k`);
      assert.equal(await backend.stat(`${p}k`), undefined);
    });

    test('conditional-create', 'write({ ifNotExists }) on an existing key fails with exists and keeps the original', async () => {
      const p = fresh();
      await backend.write(`${p}k`, Buffer.from('original'), { ifNotExists: true });
      await assert.rejects(backend.write(`${p}k`, Buffer.from('other'), { ifNotExists: true }), (e) => isStorageError(e, 'exists'));
      assert.equal((await backend.read(`${p}k`)).toString(), 'original');
      assert.deepEqual(await keys(backend, p), [`${p}k`]);
    });

    test('wrong-hash', 'write() with a wrong expected SHA-256 fails with corrupt and leaves nothing behind', async () => {
      const p = fresh();
      const data = randomBytes(5000);
      const good = createHash('sha256').update(data).digest('hex');
      await assert.rejects(backend.write(`${p}k`, data, { expectedSha256: '0'.repeat(64) }), (e) => isStorageError(e, 'corrupt'));
      assert.equal(await backend.stat(`${p}k`), undefined);
      assert.deepEqual(await keys(backend, p), []);
      await backend.write(`${p}k`, data, { expectedSha256: good });
      assert.deepEqual(await backend.read(`${p}k`), data);
    });

    test('list', 'list() yields each key under the prefix exactly once, and nothing outside it', async () => {
      const p = fresh();
      const names = ['a', 'b/c', 'b/d/e', 'f.x'].map((k) => `${p}${k}`);
      for (const k of names) await backend.write(k, Buffer.from(k));
      await backend.write(`${p.slice(0, -1)}-sibling/z`, Buffer.from('z'));
      assert.deepEqual(await keys(backend, p), [...names].sort());
      assert.deepEqual(await keys(backend, `${p}b/`), [`${p}b/c`, `${p}b/d/e`]);
      assert.deepEqual(await keys(backend, `${p}missing/`), []);
      const sizes = new Map<string, number>();
      for await (const e of backend.list(p)) sizes.set(e.key, e.size);
      assert.equal(sizes.get(`${p}b/d/e`), `${p}b/d/e`.length);
    });

    test('range-read', 'read({ range }) returns exactly that slice, shortened at the end of the object', async () => {
      const p = fresh();
      const data = randomBytes(4096);
      await backend.write(`${p}k`, data);
      assert.deepEqual(await backend.read(`${p}k`, { range: { start: 100, end: 300 } }), data.subarray(100, 300));
      assert.deepEqual(await backend.read(`${p}k`, { range: { start: 4000, end: 5000 } }), data.subarray(4000));
      assert.equal((await backend.read(`${p}k`, { range: { start: 10, end: 10 } })).length, 0);
    });

    test('streamed-source', 'write() accepts a replayable stream of pieces', async () => {
      const p = fresh();
      const pieces = [randomBytes(10), randomBytes(70000), randomBytes(3)];
      await backend.write(`${p}k`, async function* () {
        yield* pieces;
      });
      assert.deepEqual(await backend.read(`${p}k`), Buffer.concat(pieces));
    });

    test('concurrent-writers', 'concurrent writers of one key leave exactly one complete version', async () => {
      const p = fresh();
      const versions = Array.from({ length: 8 }, (_, i) => Buffer.alloc(200_000 + i, i + 1));
      await Promise.all(versions.map((v) => backend.write(`${p}k`, v)));
      const got = await backend.read(`${p}k`);
      assert.ok(versions.some((v) => v.equals(got)), 'stored object equals one of the written versions');
      assert.deepEqual(await keys(backend, p), [`${p}k`]);
    });

    test('list-while-writing', 'listing while objects are written shows only complete objects', async () => {
      const p = fresh();
      const piece = 64 * 1024;
      const pieces = 5;
      // Writes that stay in progress for a while: their data arrives piece by piece.
      let finished = 0;
      const writes = Array.from({ length: 10 }, (_, i) =>
        backend
          .write(`${p}obj${i}`, async function* () {
            for (let n = 0; n < pieces; n++) {
              await new Promise((r) => setTimeout(r, 5));
              yield Buffer.alloc(piece, i);
            }
          })
          .then(() => void finished++),
      );
      let roundsDuringWrites = 0;
      while (finished < writes.length) {
        if (finished === 0) roundsDuringWrites++;
        for await (const e of backend.list(p)) assert.equal(e.size, piece * pieces, `listed ${e.key} with ${e.size} bytes: a partial object`);
        await new Promise((r) => setTimeout(r, 2));
      }
      await Promise.all(writes);
      assert.ok(roundsDuringWrites > 0, 'some listings ran while every write was still in progress');
      assert.equal((await keys(backend, p)).length, writes.length);
    });

    test('abort', 'aborted operations stop before their next side effect', async () => {
      const p = fresh();
      const aborted = AbortSignal.abort();
      await assert.rejects(backend.write(`${p}k`, Buffer.from('x'), { signal: aborted }));
      assert.equal(await backend.stat(`${p}k`), undefined);
      await backend.write(`${p}keep`, Buffer.from('x'));
      await assert.rejects(backend.delete(`${p}keep`, { signal: aborted }));
      assert.ok(await backend.stat(`${p}keep`));
      await assert.rejects(backend.read(`${p}keep`, { signal: aborted }));
      await assert.rejects(async () => {
        for await (const _ of backend.list(p, { signal: aborted })) {
          /* nothing */
        }
      });
      const controller = new AbortController();
      await assert.rejects(
        backend.write(
          `${p}mid`,
          async function* () {
            yield Buffer.alloc(1000, 1);
            controller.abort();
            yield Buffer.alloc(1000, 2);
          },
          { signal: controller.signal },
        ),
      );
      assert.equal(await backend.stat(`${p}mid`), undefined);
      assert.deepEqual(await keys(backend, p), [`${p}keep`]);
    });

    test('no-space', 'a full disk fails the write with no-space and leaves nothing behind', async () => {
      const p = fresh();
      assert.ok(fixture.setNoSpace, 'fixture must provide setNoSpace, or skip this case with a reason');
      await backend.write(`${p}before`, Buffer.from('old'));
      fixture.setNoSpace(true);
      try {
        await assert.rejects(backend.write(`${p}k`, randomBytes(10_000)), (e) => isStorageError(e, 'no-space'));
        await assert.rejects(backend.write(`${p}before`, Buffer.from('new')), (e) => isStorageError(e, 'no-space'));
      } finally {
        fixture.setNoSpace(false);
      }
      assert.equal(await backend.stat(`${p}k`), undefined);
      assert.equal((await backend.read(`${p}before`)).toString(), 'old');
      assert.deepEqual(await keys(backend, p), [`${p}before`]);
    });

    test('touch', 'touch() moves the modification time forward and keeps the content', async () => {
      const p = fresh();
      await backend.write(`${p}k`, Buffer.from('data'));
      const first = (await backend.stat(`${p}k`))?.mtimeMs ?? 0;
      await new Promise((r) => setTimeout(r, 30));
      await backend.touch(`${p}k`);
      const second = (await backend.stat(`${p}k`))?.mtimeMs ?? 0;
      assert.ok(second > first, `mtime ${second} after touch should be later than ${first}`);
      assert.equal((await backend.read(`${p}k`)).toString(), 'data');
    });

    test('invalid-key', 'keys with "..", empty segments or a leading "/" are refused before any I/O', async () => {
      for (const bad of ['../x', 'a/../b', '/abs', 'a//b', '', 'a/./b', 'nul\0']) {
        await assert.rejects(backend.write(bad, Buffer.from('x')), RangeError, `key ${JSON.stringify(bad)}`);
        await assert.rejects(backend.read(bad), RangeError);
      }
    });

    test('large-object', 'a 20 MiB object round-trips', async () => {
      const p = fresh();
      const data = randomBytes(20 * 1024 * 1024);
      await backend.write(`${p}big`, data);
      const got = await backend.read(`${p}big`);
      assert.equal(got.length, data.length);
      assert.ok(got.equals(data));
    });

    test('cold-read', 'read({ cold }) returns the same bytes as read(), for any length (empty, around 4 KiB and 1 MiB, large)', async () => {
      const p = fresh();
      for (const size of [0, 1, 4095, 4096, 4097, 1024 * 1024 - 1, 1024 * 1024 + 1, 9 * 1024 * 1024 + 7]) {
        const data = randomBytes(size);
        await backend.write(`${p}c${size}`, data);
        const cold = await backend.read(`${p}c${size}`, { cold: true });
        assert.ok(cold.equals(data), `${size} bytes`);
        assert.ok((await backend.read(`${p}c${size}`)).equals(cold));
      }
      await assert.rejects(backend.read(`${p}missing`, { cold: true }), (e) => isStorageError(e, 'not-found'));
    });
  });
}
