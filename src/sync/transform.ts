import {
  IbsError,
  readBlobHeader,
  decodeBlob,
  decodeIndex,
  encodeBlob,
  encodeDynamicIndex,
  encodeFixedIndex,
  isEncryptedBlob,
  sha256Hex,
  sha256HexAsync,
  signManifest,
  verifyManifestSignature,
  type CryptKey,
  type Manifest,
  type ManifestFile,
} from '../core/index.ts';
import { verifyChunkContent } from '../datastore/index.ts';

/**
 * A change of encryption on the way: encrypt-on-push (plaintext snapshot → encrypted with the job's active
 * key) or decryption on pull with an associated key. Chunks get new digests (the keyed digest of the
 * plaintext, or its SHA-256), so indexes are rewritten and the manifest is signed (or unsigned) anew.
 */
export interface SnapshotTransform {
  /** Key fingerprint of what reaches the target (null: plaintext). */
  readonly keyFingerprint: string | null;
  readonly describe: string;
  chunk(digest: string, blob: Buffer): Promise<{ digest: string; blob: Buffer }>;
  /** Rewrites the snapshot's files (indexes with mapped digests, blobs re-encoded) and the manifest. */
  files(manifest: Manifest, files: ReadonlyMap<string, Buffer>, map: ReadonlyMap<string, string>): Promise<{ manifest: Manifest; files: Map<string, Buffer> }>;
}

function rewriteIndex(data: Buffer, map: ReadonlyMap<string, string>, what: string): Buffer {
  const index = decodeIndex(data, what);
  const to = (d: string): string => {
    const m = map.get(d);
    if (m === undefined) throw new IbsError('INTERNAL', `${what}: chunk ${d} has no converted digest`);
    return m;
  };
  return index.kind === 'dynamic'
    ? encodeDynamicIndex({ ctime: index.ctime, entries: index.entries.map((e) => ({ end: e.end, digest: to(e.digest) })) })
    : encodeFixedIndex({ ctime: index.ctime, size: index.size, chunkSize: index.chunkSize, digests: index.digests.map(to) });
}

async function rewrite(manifest: Manifest, files: ReadonlyMap<string, Buffer>, map: ReadonlyMap<string, string>, blob: (data: Buffer, name: string) => Promise<Buffer>, cryptMode: ManifestFile['cryptMode']): Promise<{ manifest: Manifest; files: Map<string, Buffer> }> {
  const out = new Map<string, Buffer>();
  const entries: ManifestFile[] = [];
  for (const f of manifest.files) {
    const data = files.get(f.filename) as Buffer;
    const next = /\.(didx|fidx)$/.test(f.filename) ? rewriteIndex(data, map, f.filename) : await blob(data, f.filename);
    out.set(f.filename, next);
    entries.push({ ...f, size: next.length, csum: sha256Hex(next), cryptMode });
  }
  const { keyFingerprint: _k, signature: _s, ...rest } = manifest;
  return { manifest: { ...rest, files: entries }, files: out };
}

export function encryptTransform(key: CryptKey): SnapshotTransform {
  return {
    keyFingerprint: key.fingerprint,
    describe: `encrypted on the way with key ${key.fingerprint}`,
    chunk: async (digest, blob) => {
      if (isEncryptedBlob(readBlobHeader(blob, `chunk ${digest}`))) throw new IbsError('INVALID_ARGUMENT', `chunk ${digest} is already encrypted`);
      // Damage on the source fails here (CORRUPT), before anything is encrypted.
      const plain = await verifyChunkContent(digest, blob, undefined, false);
      const bound = await key.chunkDigestAsync(plain);
      return { digest: bound, blob: await encodeBlob(plain, { compress: true, key, digest: bound }) };
    },
    files: async (manifest, files, map) => {
      const r = await rewrite(manifest, files, map, async (data, name) => encodeBlob(await decodeBlob(data, undefined, name), { compress: true, key }), 'encrypt');
      return { ...r, manifest: signManifest(r.manifest, key) };
    },
  };
}

export function decryptTransform(key: CryptKey): SnapshotTransform {
  return {
    keyFingerprint: null,
    describe: `decrypted on the way with associated key ${key.fingerprint}`,
    chunk: async (digest, blob) => {
      const plain = await verifyChunkContent(digest, blob, key, true);
      return { digest: await sha256HexAsync(plain), blob: await encodeBlob(plain, { compress: true }) };
    },
    files: async (manifest, files, map) => {
      verifyManifestSignature(manifest, key, `${manifest.backupType}/${manifest.backupId}`);
      return rewrite(manifest, files, map, async (data, name) => encodeBlob(await decodeBlob(data, key, name), { compress: true }), 'none');
    },
  };
}
