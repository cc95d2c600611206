/** Helpers for tests (never imported by the product). */
import { encodeBlob, sha256Hex, snapshotPath, type Manifest, type ManifestFile, type SnapshotRef } from '../core/index.ts';
import { MemoryBackend } from '../storage/memory/index.ts';
import type { WriteOptions, WriteSource } from '../storage/index.ts';
import type { Datastore } from './datastore.ts';
import { SnapshotUpload } from './snapshot-upload.ts';

/**
 * Adds a `.blob` file to an existing snapshot the way a client log arrives after the backup (an amendment
 * that keeps the snapshot's files).
 */
export async function addSnapshotFile(ds: Datastore, ref: SnapshotRef, filename: string, content: string): Promise<void> {
  const manifest = await ds.readManifest(ref);
  const upload = await SnapshotUpload.begin(ds, ref, { owner: (await ds.getOwner(ref)) ?? 'root@pam', keyFingerprint: manifest.keyFingerprint ?? null, verifyChunks: false, amend: true });
  for (const f of manifest.files) await upload.putFile(f, await ds.backend.read(`${snapshotPath(ref)}${f.filename}`));
  const data = await encodeBlob(Buffer.from(content), { compress: false });
  const file = { filename, size: data.length, csum: sha256Hex(data), cryptMode: 'none' as const };
  await upload.putFile(file, data);
  await upload.commit({ ...manifest, files: [...manifest.files, file] });
}

/** A memory backend whose writes go through `before(key)` first, when set: to fail or delay some of them. */
export class HookedBackend extends MemoryBackend {
  before: ((key: string) => void | Promise<void>) | undefined;

  override async write(key: string, source: WriteSource, options?: WriteOptions): Promise<void> {
    await this.before?.(key);
    return super.write(key, source, options);
  }
}

/** A snapshot of host/ID at `ref`'s time whose only file is a client log: what an upload's `finish` takes. */
export async function logOnlySnapshot(ref: SnapshotRef): Promise<{ files: Array<{ file: ManifestFile; data: Buffer }>; manifest: Manifest }> {
  const data = await encodeBlob(Buffer.from('backup finished'), { compress: false });
  const file: ManifestFile = { filename: 'client.log.blob', size: data.length, csum: sha256Hex(data), cryptMode: 'none' };
  return { files: [{ file, data }], manifest: { format: 1, backupType: ref.type, backupId: ref.id, backupTime: ref.time, files: [file], unprotected: {} } };
}
