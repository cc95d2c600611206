/** Helpers for tests (never imported by the product). */
import { encodeBlob, sha256Hex, snapshotPath, type SnapshotRef } from '../core/index.ts';
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
