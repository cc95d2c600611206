import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { IbsError, MANIFEST_NAME, snapshotPath, type SnapshotRef } from '../core/index.ts';
import { Datastore, SnapshotWriter, SnapshotReader, verifyDatastore } from '../datastore/index.ts';
import { TokenBucket } from '../lib/index.ts';
import { MemoryBackend } from '../storage/memory/index.ts';
import { StorageError } from '../storage/index.ts';
import { DatastoreSide } from './datastore-side.ts';
import { runSync } from './engine.ts';
import { HookedBackend, addSnapshotFile } from '../datastore/test-support.ts';
import { planSync, type SyncPolicy } from './planner.ts';
import type { SyncTarget, TargetSnapshot } from './types.ts';

const small = { min: 4096, avg: 16384, max: 65536 };
const ref = (time: number, id = 'web1'): SnapshotRef => ({ ns: [], type: 'host', id, time });
const policy: SyncPolicy = { sourceNs: [], targetNs: [], groupFilters: [], includes: [], verifiedOnly: false, encryptedOnly: false, removeVanished: false, resyncCorrupt: false, owner: 'root@pam', encrypt: false };
const quiet = { origin: 'test', log: () => {}, warn: () => {} };

async function* pieces(data: Buffer, size = 10_000): AsyncGenerator<Buffer> {
  for (let i = 0; i < data.length; i += size) yield data.subarray(i, i + size);
}

async function source(): Promise<{ ds: Datastore; data: Buffer }> {
  const ds = await Datastore.create(new MemoryBackend());
  const data = randomBytes(400_000);
  const w = await SnapshotWriter.begin(ds, ref(1000), { owner: 'root@pam', chunker: small });
  await w.addDynamicArchive('root.tar', pieces(data));
  await w.commit();
  return { ds, data };
}

/**
 * A target snapshot whose chunk writes go through `insert` (which may hold them): finish waits for those, as a
 * target's own finish waits for the writes that reached it.
 */
function wrapInserts(t: TargetSnapshot, insert: (digest: string, blob: Buffer) => Promise<void>, finish = t.finish): TargetSnapshot {
  const writes = new Set<Promise<void>>();
  return {
    ...t,
    insertChunk: (digest, blob) => {
      const p = insert(digest, blob);
      writes.add(p);
      return p;
    },
    finish: async (files, manifest) => {
      await Promise.allSettled([...writes]);
      return finish(files, manifest);
    },
  };
}

/** A target whose read-back verification reports one chunk as damaged in each of the first `failures` rounds. */
function flaky(target: DatastoreSide, failures: number): SyncTarget {
  let rounds = 0;
  return Object.assign(Object.create(target) as DatastoreSide, {
    begin: async (...args: Parameters<DatastoreSide['begin']>): Promise<TargetSnapshot> => {
      const t = await target.begin(...args);
      return wrapInserts(t, t.insertChunk, async (files, manifest) => {
        if (rounds++ >= failures) return t.finish(files, manifest);
        // Pretend the first received chunk arrived damaged: move it aside as the real check would, commit nothing.
        let first: { digest: string } | undefined;
        for await (const c of target.ds.chunks.list()) {
          first = c;
          break;
        }
        if (!first) return t.finish(files, manifest);
        await target.ds.chunks.markBad(first.digest);
        return [first.digest];
      });
    },
  });
}

test('a chunk failing verification on arrival is sent again; the copy then reads back byte for byte', async () => {
  const { ds, data } = await source();
  const dst = new DatastoreSide(await Datastore.create(new MemoryBackend()), 'target');
  const src = new DatastoreSide(ds, 'source');
  const plan = planSync(await src.list([], undefined), await dst.list([], undefined), policy);
  const report = await runSync(src, flaky(dst, 2), plan, policy, quiet);
  assert.equal(report.chunksResent, 2);
  assert.deepEqual(report.failed, []);
  const reader = await SnapshotReader.open(dst.ds, ref(1000));
  assert.ok((await reader.readAll('root.tar')).equals(data));
  assert.equal(reader.manifest.unprotected.verifyState?.state, 'ok');
});

/** A memory backend whose snapshot indexes take a while to write (as a slow disk or link would). */
function slowIndexes(): HookedBackend {
  const backend = new HookedBackend();
  backend.before = async (key) => {
    if (!key.startsWith('.chunks/') && key.endsWith('.didx')) await new Promise((r) => setTimeout(r, 300));
  };
  return backend;
}

test('after 3 re-sends the snapshot fails, nothing appears on the target, and the next run completes', async () => {
  const { ds } = await source();
  // The verification fails while the files sent beside it are still being written: they must not stay behind.
  const dst = new DatastoreSide(await Datastore.create(slowIndexes()), 'target');
  const src = new DatastoreSide(ds, 'source');
  const plan = planSync(await src.list([], undefined), await dst.list([], undefined), policy);
  const report = await runSync(src, flaky(dst, 100), plan, policy, quiet);
  assert.equal(report.failed.length, 1);
  assert.match(report.failed[0]?.error ?? '', /still failed verification on the target after 3 re-sends/);
  assert.deepEqual(await dst.ds.listSnapshots({ ns: [] }), []);
  // Also once every write that was under way has had time to land.
  await new Promise((r) => setTimeout(r, 400));
  assert.deepEqual(await Array.fromAsync(dst.ds.backend.list(snapshotPath(ref(1000)))), [], 'the files sent beside the verification were removed');
  const again = await runSync(src, dst, planSync(await src.list([], undefined), await dst.list([], undefined), policy), policy, quiet);
  assert.deepEqual(again.copied, ['host/web1/1970-01-01T00:16:40Z']);
});

/** A target that counts chunk writes in flight (each takes a little while, like a disk). */
function counting(target: DatastoreSide): { side: SyncTarget; peak: () => number } {
  let now = 0;
  let peak = 0;
  const side = Object.assign(Object.create(target) as DatastoreSide, {
    begin: async (...args: Parameters<DatastoreSide['begin']>): Promise<TargetSnapshot> => {
      const t = await target.begin(...args);
      return wrapInserts(t, async (digest, blob) => {
        peak = Math.max(peak, ++now);
        await new Promise((r) => setTimeout(r, 2));
        try {
          await t.insertChunk(digest, blob);
        } finally {
          now--;
        }
      });
    },
  });
  return { side, peak: () => peak };
}

test('--io-weight low keeps at most two chunk writes in flight per group; normal runs many', async () => {
  const { ds, data } = await source();
  const src = new DatastoreSide(ds, 'source');
  for (const [weight, check] of [['low', (p: number) => p <= 2 && p >= 1], ['normal', (p: number) => p > 2]] as const) {
    const dst = new DatastoreSide(await Datastore.create(new MemoryBackend()), 'target');
    const { side, peak } = counting(dst);
    const plan = planSync(await src.list([], undefined), await dst.list([], undefined), policy);
    const report = await runSync(src, side, plan, policy, { ...quiet, ioWeight: weight });
    assert.deepEqual(report.failed, []);
    assert.ok(check(peak()), `${weight}: ${peak()} writes in flight at most`);
    assert.ok((await (await SnapshotReader.open(dst.ds, ref(1000))).readAll('root.tar')).equals(data));
  }
});

test('the token bucket holds a shared rate and lets big requests through in slices', async () => {
  let now = 0;
  const bucket = new TokenBucket(1000, 100, () => now);
  // Advance the fake clock whenever the bucket waits.
  const started = Date.now();
  const done = Promise.all([bucket.take(300), bucket.take(300)]);
  const tick = setInterval(() => (now += 50), 1);
  await done;
  clearInterval(tick);
  // 600 bytes at 1000/s with a 100-byte burst: at least 0.5 s of bucket time passed.
  assert.ok(now >= 500, `bucket time ${now} ms`);
  assert.ok(Date.now() - started < 5000);
  assert.equal(new TokenBucket(0).unlimited, true);
  assert.throws(() => new TokenBucket(-1), /Invalid rate/);
  await assert.rejects(new TokenBucket(1, 1).take(10, AbortSignal.abort()), (e: unknown) => e instanceof Error);
});

test('a copy whose source gained a file (a client log) is amended: a failed run leaves the old copy, the next run adds the file', async () => {
  const { ds, data } = await source();
  const src = new DatastoreSide(ds, 'source');
  const backend = new HookedBackend();
  const dst = new DatastoreSide(await Datastore.create(backend), 'target');
  await runSync(src, dst, planSync(await src.list([], undefined), await dst.list([], undefined), policy), policy, quiet);
  await addSnapshotFile(ds, ref(1000), 'client.log.blob', 'backup finished');
  const plan = (): Promise<ReturnType<typeof planSync>> => Promise.all([src.list([], undefined), dst.list([], undefined)]).then(([a, b]) => planSync(a, b, policy));
  // The target fails just before the new manifest would replace the copy.
  backend.before = (key) => {
    if (key.endsWith(`/${MANIFEST_NAME}`)) throw new StorageError('no-space', `${key}: target full`);
  };
  const failing = new DatastoreSide(await Datastore.open(backend), 'target');
  const failed = await runSync(src, failing, await plan(), policy, quiet);
  assert.match(failed.failed[0]?.error ?? '', /target full/);
  const old = await SnapshotReader.open(dst.ds, ref(1000));
  assert.deepEqual(old.manifest.files.map((f) => f.filename).sort(), ['root.tar.didx']);
  assert.ok((await old.readAll('root.tar')).equals(data), 'the old copy is whole');
  assert.equal(await dst.ds.backend.stat(`${snapshotPath(ref(1000))}client.log.blob`), undefined, 'the failed amendment left nothing behind');
  backend.before = undefined;
  const lines: string[] = [];
  const done = await runSync(src, dst, await plan(), policy, { ...quiet, log: (l: string) => lines.push(l) });
  assert.deepEqual(done.copied, ['host/web1/1970-01-01T00:16:40Z']);
  assert.ok(lines.some((l) => l.includes('the copy stays until the new one is complete')), lines.join('\n'));
  assert.equal(done.chunksSent, 0, 'no chunk travels again');
  const copy = await SnapshotReader.open(dst.ds, ref(1000));
  assert.deepEqual(copy.manifest.files.map((f) => f.filename).sort(), ['client.log.blob', 'root.tar.didx']);
  assert.ok((await copy.readAll('root.tar')).equals(data));
  assert.deepEqual((await runSync(src, dst, await plan(), policy, quiet)).copied, [], 'aligned afterwards');
});

test('a copy whose file changed on the source (not only files added) is replaced whole', async () => {
  const { ds } = await source();
  const src = new DatastoreSide(ds, 'source');
  const dst = new DatastoreSide(await Datastore.create(new MemoryBackend()), 'target');
  await addSnapshotFile(ds, ref(1000), 'client.log.blob', 'first words');
  await runSync(src, dst, planSync(await src.list([], undefined), await dst.list([], undefined), policy), policy, quiet);
  // The source's log is rewritten in place (an amendment may only add files).
  const { encodeBlob, encodeManifest, sha256Hex, MANIFEST_NAME } = await import('../core/index.ts');
  const other = await encodeBlob(Buffer.from('other words'), { compress: false });
  const manifest = await ds.readManifest(ref(1000));
  await ds.backend.write(`${snapshotPath(ref(1000))}client.log.blob`, other);
  const files = manifest.files.map((f) => (f.filename === 'client.log.blob' ? { ...f, size: other.length, csum: sha256Hex(other) } : f));
  await ds.backend.write(`${snapshotPath(ref(1000))}${MANIFEST_NAME}`, encodeManifest({ ...manifest, files }));
  const lines: string[] = [];
  const report = await runSync(src, dst, planSync(await src.list([], undefined), await dst.list([], undefined), policy), policy, { ...quiet, log: (l: string) => lines.push(l) });
  assert.deepEqual(report.failed, []);
  assert.ok(lines.some((l) => /already has this file with other content.*replacing the copy/.test(l)), lines.join('\n'));
  const copy = await SnapshotReader.open(dst.ds, ref(1000));
  const srcManifest = await ds.readManifest(ref(1000));
  assert.deepEqual(copy.manifest.files, srcManifest.files);
});

/** Resolves once `count` callers have arrived; rejects them all with `message` if that takes longer than 2 s. */
function gate(count: number, message: string): () => Promise<void> {
  let arrived = 0;
  let open: () => void = () => {};
  let fail: (e: Error) => void = () => {};
  const all = new Promise<void>((resolve, reject) => {
    open = resolve;
    fail = reject;
  });
  const timer = setTimeout(() => fail(new Error(message)), 2000);
  return () => {
    if (++arrived >= count) {
      clearTimeout(timer);
      open();
    }
    return all;
  };
}

test('over a link each step costs a round trip: the files are read together, and the end goes out before the chunk writes are answered', async () => {
  const { ds, data } = await source();
  await addSnapshotFile(ds, ref(1000), 'client.log.blob', 'backup finished');
  const files = (await ds.readManifest(ref(1000))).files.length;
  const src = new DatastoreSide(ds, 'source');
  const dst = new DatastoreSide(await Datastore.create(new MemoryBackend()), 'target');
  // Each read is held until all of them are under way: done one after another, the first would wait in vain.
  const reads = gate(files, 'the files were read one after another');
  const slowSource = Object.assign(Object.create(src) as DatastoreSide, {
    open: async (...args: Parameters<DatastoreSide['open']>) => {
      const s = await src.open(...args);
      return { ...s, readFile: async (name: string) => (await reads(), s.readFile(name)) };
    },
  });
  // Chunk writes are answered only once finish was called: an engine that waited for them first would wait in vain.
  let finishCalled = (): void => {};
  const finishing = new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('finish waited for the chunk writes to be answered')), 2000);
    finishCalled = () => (clearTimeout(timer), resolve());
  });
  const slowTarget = Object.assign(Object.create(dst) as DatastoreSide, {
    begin: async (...args: Parameters<DatastoreSide['begin']>): Promise<TargetSnapshot> => {
      const t = await dst.begin(...args);
      const held = wrapInserts(t, (digest, blob) => finishing.then(() => t.insertChunk(digest, blob)));
      return { ...held, finish: (f, m) => (finishCalled(), held.finish(f, m)) };
    },
  });
  const plan = planSync(await src.list([], undefined), await dst.list([], undefined), policy);
  const report = await runSync(slowSource, slowTarget, plan, policy, quiet);
  assert.deepEqual(report.failed, []);
  assert.deepEqual(report.copied, ['host/web1/1970-01-01T00:16:40Z']);
  const copy = await SnapshotReader.open(dst.ds, ref(1000));
  assert.ok((await copy.readAll('root.tar')).equals(data));
  assert.equal(copy.manifest.files.length, files);
});

test('a chunk write whose answer is lost after the end went out: the end committed, so the copy stands and the run succeeds', async () => {
  const { ds, data } = await source();
  const src = new DatastoreSide(ds, 'source');
  const dst = new DatastoreSide(await Datastore.create(new MemoryBackend()), 'target');
  let finishCalled = (): void => {};
  const finishing = new Promise<void>((resolve) => (finishCalled = resolve));
  let lost = false;
  const lossy = Object.assign(Object.create(dst) as DatastoreSide, {
    begin: async (...args: Parameters<DatastoreSide['begin']>): Promise<TargetSnapshot> => {
      const t = await dst.begin(...args);
      return {
        ...t,
        // The first write is stored, but its answer only comes back, as a failure, once the end was sent.
        insertChunk: async (digest: string, blob: Buffer) => {
          await t.insertChunk(digest, blob);
          if (lost) return;
          lost = true;
          await finishing;
          throw new IbsError('UNAVAILABLE', 'the answer was lost on the way');
        },
        finish: (f, m) => (finishCalled(), t.finish(f, m)),
      };
    },
  });
  const report = await runSync(src, lossy, planSync(await src.list([], undefined), await dst.list([], undefined), policy), policy, quiet);
  assert.deepEqual(report.failed, []);
  assert.deepEqual(report.copied, ['host/web1/1970-01-01T00:16:40Z']);
  assert.ok((await (await SnapshotReader.open(dst.ds, ref(1000))).readAll('root.tar')).equals(data));
});

test('a copy that failed verification is synced again as an amendment: a failing run leaves it in place, the next sends only what was moved aside', async () => {
  const { ds, data } = await source();
  const backend = new HookedBackend();
  const dst = new DatastoreSide(await Datastore.create(backend), 'target');
  const src = new DatastoreSide(ds, 'source');
  const plan = (p: SyncPolicy) => async () => planSync(await src.list([], undefined), await dst.list([], undefined), p);
  const resync = { ...policy, resyncCorrupt: true };
  assert.deepEqual((await runSync(src, dst, await plan(policy)(), policy, quiet)).failed, []);
  // One chunk of the copy goes bad; verify moves it aside and marks the copy failed.
  const reader = await SnapshotReader.open(dst.ds, ref(1000));
  const digest = (await reader.chunkList(reader.indexedNames()[0] as string))[0]?.digest as string;
  const blob = Buffer.from(await dst.ds.chunks.rawBlob(digest));
  blob[blob.length - 1] = (blob[blob.length - 1] as number) ^ 0xff;
  await backend.write(`.chunks/${digest.slice(0, 4)}/${digest}`, blob);
  assert.equal((await verifyDatastore(dst.ds)).ok, false);
  assert.equal((await dst.ds.readManifest(ref(1000))).unprotected.verifyState?.state, 'failed');

  // The link fails while the chunk is sent again: the copy that failed verification is still there.
  backend.before = (key) => {
    if (key.startsWith('.chunks/')) throw new StorageError('transient', `write "${key}": injected`);
  };
  const failing = await runSync(src, dst, await plan(resync)(), resync, quiet);
  assert.equal(failing.failed.length, 1);
  assert.equal((await dst.ds.readManifest(ref(1000))).unprotected.verifyState?.state, 'failed');

  backend.before = undefined;
  const repaired = await runSync(src, dst, await plan(resync)(), resync, quiet);
  assert.deepEqual(repaired.failed, []);
  assert.equal(repaired.chunksSent, 1, 'only the chunk moved aside is sent again');
  const copy = await SnapshotReader.open(dst.ds, ref(1000));
  assert.ok((await copy.readAll('root.tar')).equals(data));
  assert.equal(copy.manifest.unprotected.verifyState?.state, 'ok');
  assert.equal((await verifyDatastore(dst.ds)).ok, true);
});

test('a copy whose index no longer reads is amended too: the index is written again from the source', async () => {
  const { ds, data } = await source();
  const dst = new DatastoreSide(await Datastore.create(new MemoryBackend()), 'target');
  const src = new DatastoreSide(ds, 'source');
  const resync = { ...policy, resyncCorrupt: true };
  const plan = async () => planSync(await src.list([], undefined), await dst.list([], undefined), resync);
  assert.deepEqual((await runSync(src, dst, await plan(), resync, quiet)).failed, []);
  const index = (await dst.ds.readManifest(ref(1000))).files.find((f) => f.filename.endsWith('.didx'))?.filename as string;
  await dst.ds.backend.write(`${snapshotPath(ref(1000))}${index}`, Buffer.from('not an index any more'));
  assert.equal((await verifyDatastore(dst.ds)).ok, false);
  const report = await runSync(src, dst, await plan(), resync, quiet);
  assert.deepEqual(report.failed, []);
  assert.equal(report.chunksSent, 0, 'its chunks were all still stored');
  assert.ok((await (await SnapshotReader.open(dst.ds, ref(1000))).readAll('root.tar')).equals(data));
  assert.equal((await verifyDatastore(dst.ds)).ok, true);
});
