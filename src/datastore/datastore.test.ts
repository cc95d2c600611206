import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { pathToFileURL } from 'node:url';
import { CryptKey, IbsError, MANIFEST_NAME, snapshotPath, type SnapshotRef } from '../core/index.ts';
import { MemoryBackend } from '../storage/memory/index.ts';
import { Datastore, QUARANTINE_KEY } from './datastore.ts';
import { SnapshotWriter } from './snapshot-writer.ts';
import { SnapshotReader } from './snapshot-reader.ts';
import { GC_STATUS_KEY, collectGarbage, readGcStatus } from './gc.ts';
import { verifyDatastore } from './verify.ts';
import { chunkKey } from './chunk-store.ts';
import { pruneGroup } from './prune.ts';
import { ChunkPool } from './chunk-pool.ts';
import { HookedBackend, logOnlySnapshot } from './test-support.ts';

const small = { min: 4096, avg: 16384, max: 65536 };
const ref = (time: number, id = 'web1'): SnapshotRef => ({ ns: [], type: 'host', id, time });

async function* pieces(data: Buffer, size = 10_000): AsyncGenerator<Buffer> {
  for (let i = 0; i < data.length; i += size) yield data.subarray(i, i + size);
}

async function backup(ds: Datastore, r: SnapshotRef, data: Buffer, key?: CryptKey): Promise<SnapshotWriter> {
  const w = await SnapshotWriter.begin(ds, r, { owner: 'root@pam', key, chunker: small });
  await w.addDynamicArchive('root.tar', pieces(data));
  await w.commit();
  return w;
}

async function readAll(ds: Datastore, r: SnapshotRef, name: string, key?: CryptKey): Promise<Buffer> {
  const reader = await SnapshotReader.open(ds, r, { key });
  const out: Buffer[] = [];
  for await (const p of reader.stream(name)) out.push(p);
  return Buffer.concat(out);
}

test('a committed snapshot reads back byte for byte; a second backup of the same data uploads nothing new', async () => {
  const ds = await Datastore.create(new MemoryBackend());
  const data = randomBytes(300_000);
  const first = await backup(ds, ref(1000), data);
  assert.ok(first.archives[0]!.newChunks > 0);
  assert.ok((await readAll(ds, ref(1000), 'root.tar')).equals(data));
  const second = await backup(ds, ref(2000), data);
  assert.equal(second.archives[0]!.newChunks, 0);
  assert.equal(second.archives[0]!.reusedChunks, second.archives[0]!.chunks);
});

test('a snapshot without a committed manifest is invisible, and an aborted writer leaves no snapshot', async () => {
  const ds = await Datastore.create(new MemoryBackend());
  const w = await SnapshotWriter.begin(ds, ref(1000), { owner: 'root@pam', chunker: small });
  await w.addDynamicArchive('root.tar', pieces(randomBytes(100_000)));
  assert.deepEqual(await ds.listSnapshots({ ns: [] }), []);
  await w.abort();
  assert.deepEqual(await ds.listSnapshots({ ns: [] }), []);
  await assert.rejects(ds.readManifest(ref(1000)), (e) => e instanceof IbsError && e.code === 'NOT_FOUND');
});

test('encrypted snapshots need the key; the wrong key is refused naming the expected fingerprint', async () => {
  const ds = await Datastore.create(new MemoryBackend());
  const key = CryptKey.generate();
  const data = randomBytes(100_000);
  await backup(ds, ref(1000), data, key);
  assert.ok((await readAll(ds, ref(1000), 'root.tar', key)).equals(data));
  await assert.rejects(readAll(ds, ref(1000), 'root.tar'), (e) => e instanceof IbsError && e.code === 'WRONG_KEY' && e.message.includes(key.fingerprint));
  await assert.rejects(readAll(ds, ref(1000), 'root.tar', CryptKey.generate()), (e) => e instanceof IbsError && e.code === 'WRONG_KEY' && e.message.includes(key.fingerprint));
});

test('a flipped byte in a chunk: verify names the chunk and every snapshot using it; reading fails loudly', async () => {
  const backend = new MemoryBackend();
  const ds = await Datastore.create(backend);
  const data = randomBytes(200_000);
  await backup(ds, ref(1000), data);
  await backup(ds, ref(2000), data);
  await backup(ds, ref(3000, 'other'), randomBytes(50_000));
  const reader = await SnapshotReader.open(ds, ref(1000));
  const victim = (await reader.chunkList('root.tar'))[1]!.digest;
  const blob = await backend.read(chunkKey(victim));
  blob[blob.length - 5] = (blob[blob.length - 5] as number) ^ 1;
  backend.tamper(chunkKey(victim), { data: blob });
  await assert.rejects(readAll(ds, ref(2000), 'root.tar'), (e) => e instanceof IbsError && e.code === 'CORRUPT' && e.message.includes(victim));
  const lines: string[] = [];
  const result = await verifyDatastore(ds, { snapshot: ref(2000), onLog: (l) => lines.push(l) });
  assert.equal(result.ok, false);
  assert.match(lines.at(-1) ?? '', /^verification FAILED: 2 snapshot\(s\) affected, 1 bad chunk\(s\); checked 1 snapshot\(s\), \d+ chunk\(s\), /);
  assert.equal(result.badChunks.length, 1);
  assert.equal(result.badChunks[0]!.digest, victim);
  assert.deepEqual(result.badChunks[0]!.snapshots.sort(), ['host/web1/1970-01-01T00:16:40Z', 'host/web1/1970-01-01T00:33:20Z']);
  assert.equal((await ds.readManifest(ref(1000))).unprotected.verifyState?.state, 'failed');
  assert.equal((await ds.readManifest(ref(3000, 'other'))).unprotected.verifyState, undefined);
  assert.ok(await backend.stat(`${chunkKey(victim)}.bad`), 'damaged chunk moved aside');
  // The next backup of the same data re-uploads the chunk because the previous snapshot failed verification.
  await backup(ds, ref(4000), data);
  assert.ok((await readAll(ds, ref(4000), 'root.tar')).equals(data));
});

test('verify of several snapshots at once, on worker threads: a shared chunk is checked once, a bad one fails every user', async () => {
  const backend = new MemoryBackend();
  const ds = await Datastore.create(backend);
  const shared = randomBytes(150_000);
  for (let i = 1; i <= 5; i++) await backup(ds, ref(1000 * i), Buffer.concat([shared, randomBytes(20_000)]));
  const lines: string[] = [];
  const clean = await verifyDatastore(ds, { maxConcurrentSnapshots: 3, onLog: (l) => lines.push(l) });
  assert.equal(clean.ok, true);
  assert.match(lines.at(-1) ?? '', /^verified 5 snapshot\(s\), \d+ chunk\(s\), [\d.]+ [KM]iB: all ok$/);
  assert.equal(clean.snapshots.length, 5);
  assert.deepEqual(clean.snapshots.map((s) => s.snapshot), (await ds.listSnapshots({ ns: [] })).map((s) => `host/web1/${new Date(s.ref.time * 1000).toISOString().replace('.000', '')}`), 'results in snapshot order');
  const unique = new Set<string>();
  for (let i = 1; i <= 5; i++) for (const span of await (await SnapshotReader.open(ds, ref(1000 * i))).chunkList('root.tar')) unique.add(span.digest);
  assert.equal(clean.chunksChecked, unique.size, 'each chunk checked once across concurrent snapshots');
  const pool = new ChunkPool(2);
  try {
    // Chunks large enough to have buffers of their own, which the check threads take over.
    const large = await Datastore.create(new MemoryBackend());
    const w = await SnapshotWriter.begin(large, ref(1000), { owner: 'root@pam', chunker: { min: 65_536, avg: 131_072, max: 262_144 } });
    await w.addDynamicArchive('root.tar', pieces(randomBytes(1_000_000)));
    await w.commit();
    let stored = 0;
    for await (const c of large.chunks.list()) stored += c.size;
    const pooled = await verifyDatastore(large, { pool });
    assert.equal(pooled.ok, true);
    assert.equal(pooled.bytesChecked, stored, 'bytes counted when the check threads take the buffers over');
    assert.equal((await verifyDatastore(large)).bytesChecked, stored);
    const victim = (await (await SnapshotReader.open(ds, ref(1000))).chunkList('root.tar'))[0]!.digest;
    const blob = await backend.read(chunkKey(victim));
    blob[blob.length - 3] = (blob[blob.length - 3] as number) ^ 0x40;
    backend.tamper(chunkKey(victim), { data: blob });
    const result = await verifyDatastore(ds, { maxConcurrentSnapshots: 4, pool });
    assert.equal(result.ok, false);
    assert.deepEqual(result.snapshots.map((s) => s.state), ['failed', 'failed', 'failed', 'failed', 'failed']);
    assert.equal(result.badChunks.length, 1);
    assert.equal(result.badChunks[0]!.snapshots.length, 5);
  } finally {
    await pool.close();
  }
});

test('GC removes unreferenced old chunks but never those of a backup that is still writing', async () => {
  const backend = new MemoryBackend();
  const ds = await Datastore.create(backend);
  await backup(ds, ref(1000), randomBytes(100_000));
  await backup(ds, ref(2000, 'gone'), randomBytes(100_000));
  await ds.forgetSnapshot(ref(2000, 'gone'));
  for await (const c of ds.chunks.list()) backend.tamper(chunkKey(c.digest), { mtimeMs: Date.now() - 3_600_000 });
  // A backup starts and writes chunks, then GC runs with no margin, then the backup commits.
  const w = await SnapshotWriter.begin(ds, ref(3000, 'running'), { owner: 'root@pam', chunker: small });
  const data = randomBytes(150_000);
  await w.addDynamicArchive('root.tar', pieces(data));
  const gc = await collectGarbage(ds, { marginMs: 0 });
  assert.ok(gc.removedChunks > 0, 'chunks of the forgotten snapshot removed');
  assert.ok(gc.pendingChunks > 0, 'chunks of the running backup kept as pending');
  await w.commit();
  assert.ok((await readAll(ds, ref(3000, 'running'), 'root.tar')).equals(data));
  assert.equal((await verifyDatastore(ds)).ok, true);
});

test('GC keeps an old unreferenced chunk that a running writer reuses (insert touches it)', async () => {
  const backend = new MemoryBackend();
  const ds = await Datastore.create(backend);
  const data = randomBytes(100_000);
  await backup(ds, ref(1000, 'a'), data);
  await ds.forgetSnapshot(ref(1000, 'a'));
  for await (const c of ds.chunks.list()) backend.tamper(chunkKey(c.digest), { mtimeMs: Date.now() - 3_600_000 });
  const w = await SnapshotWriter.begin(ds, ref(2000, 'b'), { owner: 'root@pam', chunker: small });
  await w.addDynamicArchive('root.tar', pieces(data));
  assert.equal(w.archives[0]!.newChunks, 0, 'all chunks reused from the store');
  const gc = await collectGarbage(ds, { marginMs: 0 });
  assert.equal(gc.removedChunks, 0);
  await w.commit();
  assert.ok((await readAll(ds, ref(2000, 'b'), 'root.tar')).equals(data));
});

test('GC removes snapshot folders left without a manifest by a crashed writer', async () => {
  const backend = new MemoryBackend();
  const ds = await Datastore.create(backend);
  await backend.write(`${snapshotPath(ref(1000))}root.tar.didx`, Buffer.from('partial'));
  backend.tamper(`${snapshotPath(ref(1000))}root.tar.didx`, { mtimeMs: Date.now() - 3_600_000 });
  const gc = await collectGarbage(ds, { marginMs: 0 });
  assert.equal(gc.removedPartial, 1);
  assert.equal(await backend.stat(`${snapshotPath(ref(1000))}root.tar.didx`), undefined);
  assert.equal(await backend.stat(`${snapshotPath(ref(1000))}${MANIFEST_NAME}`), undefined);
});

test('a quarantined datastore refuses backups and GC with the reason', async () => {
  const ds = await Datastore.create(new MemoryBackend());
  await ds.quarantine('disk errors on sdb');
  await assert.rejects(SnapshotWriter.begin(ds, ref(1), { owner: 'x@pam' }), (e) => e instanceof IbsError && e.code === 'QUARANTINED' && e.message.includes('disk errors on sdb'));
  await assert.rejects(collectGarbage(ds), (e) => e instanceof IbsError && e.code === 'QUARANTINED');
  await ds.unquarantine();
  await backup(ds, ref(1), randomBytes(10));
  // A quarantine file that does not read still quarantines, and says how to clear it.
  await ds.backend.write(QUARANTINE_KEY, Buffer.from('{"reason": 7'));
  await assert.rejects(SnapshotWriter.begin(ds, ref(2), { owner: 'x@pam' }), (e) => e instanceof IbsError && e.code === 'QUARANTINED' && /quarantined \(its quarantine file .* does not read; "datastore unquarantine" clears it\)/.test(e.message));
  await ds.unquarantine();
  // A GC record that does not read is no record, not numbers that mislead.
  await collectGarbage(ds);
  assert.equal(typeof (await readGcStatus(ds))?.removedChunks, 'number');
  await ds.backend.write(GC_STATUS_KEY, Buffer.from('{"startedAt": 5}'));
  assert.equal(await readGcStatus(ds), undefined);
});

test('prune removes what retention does not keep, never protected snapshots, and refuses a running backup\'s base', async () => {
  const ds = await Datastore.create(new MemoryBackend());
  for (const t of [1000, 2000, 3000, 4000]) await backup(ds, ref(t), randomBytes(5000));
  await ds.setProtected(ref(1000), true);
  const result = await pruneGroup(ds, { ns: [], type: 'host', id: 'web1' }, { 'keep-last': 1 });
  assert.deepEqual(result.map((r) => r.mark.action), ['keep', 'remove', 'remove', 'protected']);
  assert.deepEqual((await ds.listSnapshots({ ns: [] })).map((s) => s.ref.time), [4000, 1000]);
  const w = await SnapshotWriter.begin(ds, ref(5000), { owner: 'root@pam' });
  await assert.rejects(ds.forgetSnapshot(ref(4000)), (e) => e instanceof IbsError && e.code === 'BUSY');
  await w.abort();
  await ds.forgetSnapshot(ref(4000));
});

test('a group owned by someone else is refused', async () => {
  const ds = await Datastore.create(new MemoryBackend());
  await backup(ds, ref(1000), randomBytes(10));
  await assert.rejects(SnapshotWriter.begin(ds, ref(2000), { owner: 'mallory@pam' }), (e) => e instanceof IbsError && e.code === 'PERMISSION_DENIED' && e.message.includes('root@pam'));
});

test('namespaces: create with parents, list with depth, refuse depth 8 and non-empty removal', async () => {
  const ds = await Datastore.create(new MemoryBackend());
  await ds.createNamespace(['a', 'b', 'c'], { parents: true });
  assert.deepEqual((await ds.listNamespaces([])).map((n) => n.join('/')), ['a', 'a/b', 'a/b/c']);
  assert.deepEqual((await ds.listNamespaces(['a'], { maxDepth: 1 })).map((n) => n.join('/')), ['a/b']);
  await assert.rejects(ds.createNamespace(['1', '2', '3', '4', '5', '6', '7', '8'], { parents: true }), /at most 7/);
  await backup(ds, { ns: ['a', 'b'], type: 'vm', id: '100', time: 5 }, randomBytes(10));
  await assert.rejects(ds.removeNamespace(['a']), (e) => e instanceof IbsError && e.code === 'BUSY');
  await ds.removeNamespace(['a'], { deleteGroups: true });
  assert.deepEqual(await ds.listNamespaces([]), []);
});

test('fixed-size image archives round-trip, including a last partial chunk', async () => {
  const ds = await Datastore.create(new MemoryBackend());
  const image = Buffer.concat([Buffer.alloc(5 * 1024 * 1024), randomBytes(1_000_000)]);
  const w = await SnapshotWriter.begin(ds, ref(1), { owner: 'root@pam' });
  const stats = await w.addFixedArchive('disk.img', pieces(image, 1 << 20), { sourceStamp: '1:2:3:4:5' });
  await w.commit();
  assert.equal(stats.chunks, 2);
  assert.ok((await readAll(ds, ref(1), 'disk.img')).equals(image));
  const next = await SnapshotWriter.begin(ds, ref(2), { owner: 'root@pam' });
  assert.equal(await next.reuseFixedArchive('disk.img', '9:9:9:9:9'), undefined, 'a different stamp is not reused');
  assert.equal((await next.reuseFixedArchive('disk.img', '1:2:3:4:5'))?.copiedBytes, image.length);
  await next.commit();
  assert.ok((await readAll(ds, ref(2), 'disk.img')).equals(image));
  // Handed over, a piece that is a whole chunk and the whole of its memory is taken as it stands and freed once
  // stored; a view of a larger buffer (the last, short piece here) is left to its owner.
  const first = Buffer.from(image.subarray(0, 4 << 20));
  const last = Buffer.concat([image.subarray(4 << 20), Buffer.alloc(10)]).subarray(0, image.length - (4 << 20));
  const third = await SnapshotWriter.begin(ds, ref(3), { owner: 'root@pam' });
  await third.addFixedArchive('disk.img', (async function* () { yield first; yield last; })(), { handOver: true });
  await third.commit();
  assert.equal(first.length, 0, 'the whole chunk was taken and freed');
  assert.equal(last.length, image.length - (4 << 20), "the view is still its owner's");
  assert.ok((await readAll(ds, ref(3), 'disk.img')).equals(image));
});

test('ChunkStore.insert with verify refuses a blob whose content does not match its digest and stores nothing', async () => {
  const { encodeBlob, sha256Hex } = await import('../core/index.ts');
  const backend = new MemoryBackend();
  const ds = await Datastore.create(backend);
  const data = randomBytes(1000);
  const blob = await encodeBlob(data, { compress: true });
  const wrong = sha256Hex(randomBytes(10));
  await assert.rejects(ds.chunks.insert(wrong, blob, { verify: {} }), (e) => e instanceof IbsError && e.code === 'CORRUPT');
  assert.equal(await backend.stat(chunkKey(wrong)), undefined);
  const key = CryptKey.generate();
  const encrypted = await encodeBlob(data, { compress: true, key });
  await assert.rejects(ds.chunks.insert(sha256Hex(data), encrypted, { verify: { key } }), (e) => e instanceof IbsError && e.code === 'CORRUPT');
  assert.equal((await ds.chunks.insert(key.chunkDigest(data), encrypted, { verify: { key } })).existed, false);
  assert.equal((await ds.chunks.insert(key.chunkDigest(data), encrypted, { verify: { key } })).existed, true);
  assert.deepEqual(await ds.chunks.missing([key.chunkDigest(data), wrong]), new Set([wrong]));
  // The CRC is checked on every insert, except for a blob this process has just encoded (a local backup's).
  const damaged = Buffer.from(blob);
  damaged.writeUInt8(damaged.readUInt8(damaged.length - 1) ^ 1, damaged.length - 1);
  await assert.rejects(ds.chunks.insert(sha256Hex(data), damaged), (e) => e instanceof IbsError && e.code === 'CORRUPT' && /CRC/i.test(e.message));
  assert.equal(await backend.stat(chunkKey(sha256Hex(data))), undefined);
  assert.equal((await ds.chunks.insert(sha256Hex(data), blob, { encodedHere: true })).existed, false);
  await assert.rejects(ds.chunks.insert(sha256Hex(randomBytes(8)), Buffer.from('not a blob'), { encodedHere: true }), (e) => e instanceof IbsError && e.code === 'CORRUPT');
});

test('an upload may reference only chunks it sent or the previous snapshot has; manifests must match the files', async () => {
  const { SnapshotUpload } = await import('./snapshot-upload.ts');
  const { encodeBlob, encodeDynamicIndex, sha256Hex } = await import('../core/index.ts');
  const ds = await Datastore.create(new MemoryBackend());
  // Someone else's snapshot whose chunk we know the digest of.
  const secret = randomBytes(5000);
  await backup(ds, ref(1000, 'victim'), secret);
  const victimDigest = (await (await SnapshotReader.open(ds, ref(1000, 'victim'))).chunkList('root.tar'))[0]!.digest;
  const upload = await SnapshotUpload.begin(ds, ref(2000, 'thief'), { owner: 'thief@pam', keyFingerprint: null, verifyChunks: true });
  const forged = encodeDynamicIndex({ ctime: 0, entries: [{ end: secret.length, digest: victimDigest }] });
  await assert.rejects(
    upload.putFile({ filename: 'root.tar.didx', size: forged.length, csum: sha256Hex(forged), cryptMode: 'none' }, forged),
    (e) => e instanceof IbsError && e.code === 'PERMISSION_DENIED' && e.message.includes(victimDigest),
  );
  // A chunk whose content does not match its digest is refused and not stored.
  const data = randomBytes(3000);
  const blob = await encodeBlob(data, { compress: true });
  await assert.rejects(upload.insertChunk(sha256Hex(randomBytes(8)), blob), (e) => e instanceof IbsError && e.code === 'CORRUPT');
  await upload.insertChunk(sha256Hex(data), blob);
  const index = encodeDynamicIndex({ ctime: 0, entries: [{ end: data.length, digest: sha256Hex(data) }] });
  const file = { filename: 'root.tar.didx', size: index.length, csum: sha256Hex(index), cryptMode: 'none' as const };
  await assert.rejects(upload.putFile({ ...file, csum: '0'.repeat(64) }, index), (e) => e instanceof IbsError && e.code === 'CORRUPT');
  await upload.putFile(file, index);
  const manifest = { format: 1 as const, backupType: 'host' as const, backupId: 'thief', backupTime: 2000, files: [file], unprotected: {} };
  await assert.rejects(upload.commit({ ...manifest, files: [] }), /lists 0 files, but 1 were uploaded/);
  await assert.rejects(upload.commit({ ...manifest, backupId: 'other' }), /but the upload is/);
  await upload.commit(manifest);
  assert.ok((await readAll(ds, ref(2000, 'thief'), 'root.tar')).equals(data));
});

test('a received chunk is read back once stored: one stored damaged is reported, moved aside, and sent again is stored whole', async () => {
  const { SnapshotUpload } = await import('./snapshot-upload.ts');
  const { encodeBlob, sha256Hex } = await import('../core/index.ts');
  type WriteArgs = Parameters<MemoryBackend['write']>;
  /** Flips the last byte of the next write of each key in `damage` (a disk or a server that stores something else). */
  class Damaging extends MemoryBackend {
    readonly damage = new Set<string>();
    override write(key: WriteArgs[0], source: WriteArgs[1], options?: WriteArgs[2]): Promise<void> {
      if (!this.damage.delete(key) || !(source instanceof Uint8Array)) return super.write(key, source, options);
      const copy = Buffer.from(source);
      copy[copy.length - 1] = (copy[copy.length - 1] as number) ^ 1;
      return super.write(key, copy, options);
    }
  }
  const backend = new Damaging();
  const ds = await Datastore.create(backend);
  const pool = new ChunkPool(1);
  try {
    const upload = await SnapshotUpload.begin(ds, ref(3000), { owner: 'root@pam', keyFingerprint: null, verifyChunks: true, pool });
    const data = randomBytes(40_000);
    const blob = await encodeBlob(data, { compress: false });
    const digest = sha256Hex(data);
    backend.damage.add(chunkKey(digest));
    // A whole buffer: it travels to the check thread and back before it is stored and compared.
    await upload.insertChunk(digest, new Uint8Array(blob));
    assert.deepEqual(await upload.verifyReceived(), [digest]);
    assert.equal(await backend.stat(chunkKey(digest)), undefined, 'the damaged chunk no longer counts as stored');
    assert.ok(await backend.stat(`${chunkKey(digest)}.bad`), 'it was moved aside');
    await upload.insertChunk(digest, new Uint8Array(blob));
    assert.deepEqual(await upload.verifyReceived(), []);
    assert.ok((await backend.read(chunkKey(digest))).equals(blob));
    await upload.abort();
  } finally {
    await pool.close();
  }
});

test('amending a snapshot keeps its key and files: another key or other content for a file it has is refused, an abort leaves it whole', async () => {
  const { SnapshotUpload } = await import('./snapshot-upload.ts');
  const ds = await Datastore.create(new MemoryBackend());
  const data = randomBytes(30_000);
  await backup(ds, ref(4000), data);
  await assert.rejects(SnapshotUpload.begin(ds, ref(4000), { owner: 'root@pam', keyFingerprint: null, verifyChunks: false }), (e) => e instanceof IbsError && e.code === 'EXISTS');
  const other = CryptKey.generate().fingerprint;
  await assert.rejects(SnapshotUpload.begin(ds, ref(4000), { owner: 'root@pam', keyFingerprint: other, verifyChunks: false, amend: true }), (e) => e instanceof IbsError && e.code === 'EXISTS' && /not encrypted: an amendment must keep that/.test(e.message));
  const upload = await SnapshotUpload.begin(ds, ref(4000), { owner: 'root@pam', keyFingerprint: null, verifyChunks: false, amend: true });
  const [index] = (await ds.readManifest(ref(4000))).files;
  const changed = Buffer.from('not the index');
  const { sha256Hex } = await import('../core/index.ts');
  await assert.rejects(upload.putFile({ ...(index as NonNullable<typeof index>), size: changed.length, csum: sha256Hex(changed) }, changed), (e) => e instanceof IbsError && e.code === 'EXISTS');
  await upload.putFile(index as NonNullable<typeof index>, await ds.backend.read(`${snapshotPath(ref(4000))}${index?.filename}`));
  await upload.abort();
  assert.ok((await readAll(ds, ref(4000), 'root.tar')).equals(data), 'an aborted amendment leaves the snapshot whole');
});

test('an upload whose manifest cannot be written (disk full) removes the files it added and frees the group for the next', async () => {
  const { SnapshotUpload } = await import('./snapshot-upload.ts');
  const { StorageError } = await import('../storage/index.ts');
  const backend = new HookedBackend();
  backend.before = (key) => {
    if (key.endsWith(`/${MANIFEST_NAME}`)) throw new StorageError('no-space', `${key}: no space left`);
  };
  const ds = await Datastore.create(backend);
  const { files, manifest } = await logOnlySnapshot(ref(3000));
  const upload = await SnapshotUpload.begin(ds, ref(3000), { owner: 'root@pam', keyFingerprint: null, verifyChunks: true });
  assert.deepEqual(await upload.finish(files, manifest).catch((e: unknown) => (e as IbsError).code), 'NO_SPACE');
  assert.equal(await ds.backend.stat(`${snapshotPath(ref(3000))}client.log.blob`), undefined, 'the added file is gone');
  assert.deepEqual(await ds.listSnapshots({ ns: [] }), []);
  backend.before = undefined;
  const next = await SnapshotUpload.begin(ds, ref(3000), { owner: 'root@pam', keyFingerprint: null, verifyChunks: true });
  assert.deepEqual(await next.finish(files, manifest), []);
  assert.equal((await ds.listSnapshots({ ns: [] })).length, 1);
});

test('verifyChunkContent: bound encrypted chunks are authenticated as theirs, unbound ones (earlier versions) digested; a misplaced one fails', async () => {
  const { verifyChunkContent } = await import('./chunk-store.ts');
  const { encodeBlob } = await import('../core/index.ts');
  const key = CryptKey.generate();
  const data = randomBytes(50_000);
  const digest = key.chunkDigest(data);
  const other = key.chunkDigest(Buffer.from('other'));
  for (const options of [{ compress: true, key }, { compress: true, key, digest }]) {
    const blob = await encodeBlob(data, options);
    assert.ok((await verifyChunkContent(digest, blob, key, true)).equals(data));
    await assert.rejects(verifyChunkContent(other, blob, key, true), (e) => e instanceof IbsError && e.code === 'CORRUPT' && e.message.includes(digest));
  }
});

test('an abort that arrives while finish is committing waits for it: the snapshot is whole or absent, never a manifest over removed files', async () => {
  const { SnapshotUpload } = await import('./snapshot-upload.ts');
  const backend = new HookedBackend();
  backend.before = async (key) => {
    if (key.endsWith(`/${MANIFEST_NAME}`)) await new Promise((r) => setTimeout(r, 50));
  };
  const ds = await Datastore.create(backend);
  const { files, manifest } = await logOnlySnapshot(ref(5000));
  const upload = await SnapshotUpload.begin(ds, ref(5000), { owner: 'root@pam', keyFingerprint: null, verifyChunks: true });
  const finished = upload.finish(files, manifest);
  await new Promise((r) => setTimeout(r, 10));
  await upload.abort();
  assert.deepEqual(await finished, []);
  const reader = await SnapshotReader.open(ds, ref(5000));
  assert.ok((await reader.readFile('client.log.blob')).equals(files[0]?.data as Buffer), 'the committed snapshot kept its file');
});

test('on a local backend the check thread stores a received chunk itself and reads it back; a damaged read-back is reported, a store it cannot make falls back to the backend', async () => {
  const { SnapshotUpload } = await import('./snapshot-upload.ts');
  const { encodeBlob, sha256Hex } = await import('../core/index.ts');
  const { LocalBackend } = await import('../storage/local/index.ts');
  const { mkdtemp, rm, writeFile } = await import('node:fs/promises');
  const { tmpdir } = await import('node:os');
  const { join } = await import('node:path');
  const dir = await mkdtemp(join(tmpdir(), 'ibs-thread-store-'));
  const real = new URL('../storage/local/thread-store.ts', import.meta.url).href;
  // Thread stores for the test: one that stores a flipped last byte (a disk that keeps something else), one that fails.
  await writeFile(
    join(dir, 'damaging.mjs'),
    `import { putSync as real } from ${JSON.stringify(real)};
     import { readFileSync, writeFileSync } from 'node:fs';
     export function putSync(location, key, data, options) {
       const r = real(location, key, data, { readBack: false });
       if (r.existed) return r;
       const path = JSON.parse(location).root + '/' + key;
       const b = readFileSync(path); b[b.length - 1] ^= 1; writeFileSync(path, b);
       return { existed: false, same: readFileSync(path).equals(data) };
     }`,
  );
  await writeFile(join(dir, 'failing.mjs'), `export function putSync() { throw Object.assign(new Error('EIO: i/o error, open'), { code: 'EIO' }); }`);
  let module: string | undefined;
  class Local extends LocalBackend {
    override get threadStore() {
      const store = super.threadStore;
      return store && module ? { ...store, module } : store;
    }
  }
  const pool = new ChunkPool(1);
  try {
    const ds = await Datastore.create(new Local({ root: join(dir, 'store') }));
    const chunk = async (): Promise<{ digest: string; blob: Uint8Array }> => {
      const data = randomBytes(40_000);
      return { digest: sha256Hex(data), blob: new Uint8Array(await encodeBlob(data, { compress: true })) };
    };

    // The thread checks, stores and reads back: nothing comes back but the outcome.
    const a = await chunk();
    const copyA = Buffer.from(a.blob);
    assert.deepEqual(await ds.chunks.insert(a.digest, a.blob, { verify: { pool }, readBack: true }), { existed: false, same: true });
    assert.ok((await ds.backend.read(chunkKey(a.digest))).equals(copyA));
    assert.deepEqual(await ds.chunks.insert(a.digest, Buffer.from(copyA), { verify: { pool }, readBack: true }), { existed: true });
    // A damaged chunk is refused before anything is stored.
    const bad = await chunk();
    bad.blob[bad.blob.length - 1] = (bad.blob[bad.blob.length - 1] as number) ^ 1;
    await assert.rejects(ds.chunks.insert(bad.digest, bad.blob, { verify: { pool } }), (e) => e instanceof IbsError && e.code === 'CORRUPT');
    assert.equal(await ds.backend.stat(chunkKey(bad.digest)), undefined);

    // Read back damaged: reported, moved aside; sent again (stored by the real thread store), whole.
    module = pathToFileURL(join(dir, 'damaging.mjs')).href;
    const upload = await SnapshotUpload.begin(ds, ref(5000), { owner: 'root@pam', keyFingerprint: null, verifyChunks: true, pool });
    const b = await chunk();
    const copyB = Buffer.from(b.blob);
    await upload.insertChunk(b.digest, b.blob);
    assert.deepEqual(await upload.verifyReceived(), [b.digest]);
    assert.equal(await ds.backend.stat(chunkKey(b.digest)), undefined, 'the damaged chunk no longer counts as stored');
    assert.ok(await ds.backend.stat(`${chunkKey(b.digest)}.bad`), 'it was moved aside');
    module = undefined;
    await upload.insertChunk(b.digest, Buffer.from(copyB));
    assert.deepEqual(await upload.verifyReceived(), []);
    assert.ok((await ds.backend.read(chunkKey(b.digest))).equals(copyB));

    // The thread cannot store: the chunk comes back checked and the backend stores it (and it is read back here).
    module = pathToFileURL(join(dir, 'failing.mjs')).href;
    const c = await chunk();
    const copyC = Buffer.from(c.blob);
    const stored = await ds.chunks.insert(c.digest, c.blob, { verify: { pool }, readBack: true });
    assert.equal(stored.existed, false);
    assert.ok(stored.stored && Buffer.from(stored.stored).equals(copyC), 'the blob came back');
    assert.ok((await ds.backend.read(chunkKey(c.digest))).equals(copyC));
    await upload.insertChunk(c.digest, Buffer.from(copyC));
    const d = await chunk();
    await upload.insertChunk(d.digest, d.blob);
    assert.deepEqual(await upload.verifyReceived(), []);
    await upload.abort();
  } finally {
    await pool.close();
    await rm(dir, { recursive: true, force: true });
  }
});

test('a verification window: a run verifies what is due, then the longest unverified up to its share; new backups are not due at once', async () => {
  const ds = await Datastore.create(new MemoryBackend());
  const now = Math.floor(Date.now() / 1000);
  const day = 86400;
  // a: verified 10 days ago (due in a 7-day window); b: verified yesterday; c: never verified, backed up 10 days
  // ago (due); d: never verified, backed up an hour ago (not due yet); e: verified 5 days ago; f: 3 days ago.
  const snaps: Array<[string, number, number | undefined]> = [['a', now - 20 * day, now - 10 * day], ['b', now - 20 * day, now - day], ['c', now - 10 * day, undefined], ['d', now - 3600, undefined], ['e', now - 20 * day, now - 5 * day], ['f', now - 20 * day, now - 3 * day]];
  for (const [id, time, verified] of snaps) {
    await backup(ds, ref(time, id), randomBytes(20_000));
    if (verified !== undefined) await ds.updateUnprotected(ref(time, id), (u) => ({ ...u, verifyState: { state: 'ok', time: verified } }));
  }
  const chosen = async (share: number): Promise<string[]> => {
    const r = await verifyDatastore(ds, { window: { days: 7, share } });
    assert.ok(r.ok);
    return r.snapshots.filter((s) => s.state !== 'skipped').map((s) => s.snapshot.split('/')[1] as string).sort();
  };
  // One run in seven: only the two that are due, though that is more than its share (1 of 6).
  assert.deepEqual(await chosen(1 / 7), ['a', 'c']);
  // Now verified, nothing is due; a share of a half (3 of 6) takes the never verified, then the oldest verified.
  assert.deepEqual(await chosen(1 / 2), ['d', 'e', 'f']);
  // The next run takes the three verified longest ago (none due: a is at 6 of 7 days).
  const ages: Record<string, number> = { a: 6, b: 1, c: 4, d: 0, e: 0, f: 0 };
  for (const [id, time] of snaps) await ds.updateUnprotected(ref(time, id), (u) => ({ ...u, verifyState: { state: 'ok', time: now - (ages[id] as number) * day } }));
  assert.deepEqual(await chosen(1 / 2), ['a', 'b', 'c']);
});
