import { IbsError } from './errors.ts';
import { parseBackupId, parseBackupType, parseIndexedName, type BackupType } from './names.ts';
import type { CryptKey } from './crypt-key.ts';

/**
 * The manifest (`index.json`) of a snapshot: the list of its files with size and SHA-256, the crypt mode, the
 * key fingerprint and signature for encrypted snapshots, and an unprotected part (verify state, notes, sync
 * origin) that may change after the snapshot was made and so is not signed. A snapshot exists iff its manifest
 * exists; the manifest is written last.
 */

export const MANIFEST_NAME = 'index.json';
export type CryptMode = 'none' | 'encrypt';

export interface ManifestFile {
  /** "NAME.tar.didx", "NAME.img.fidx" or "NAME.blob". */
  filename: string;
  size: number;
  /** SHA-256 (hex) of the stored file. */
  csum: string;
  cryptMode: CryptMode;
  /** For index files: the size of the archive they describe (what a restore produces). */
  archiveSize?: number;
  /**
   * For images read from a regular file: "size:mtimeNs:ctimeNs:dev:ino" of the source when it was read. The
   * next backup reuses this index unread when the source's stamp is unchanged.
   */
  sourceStamp?: string;
}

export interface VerifyState {
  state: 'ok' | 'failed';
  /** Seconds since the epoch. */
  time: number;
  upid?: string;
  failedChunks?: string[];
}

export interface Unprotected {
  verifyState?: VerifyState;
  notes?: string;
  syncOrigin?: { source: string; time: number };
  [key: string]: unknown;
}

export interface Manifest {
  format: 1;
  backupType: BackupType;
  backupId: string;
  backupTime: number;
  files: ManifestFile[];
  keyFingerprint?: string;
  signature?: string;
  unprotected: Unprotected;
}

function canonical(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonical).join(',')}]`;
  if (value !== null && typeof value === 'object') {
    const entries = Object.entries(value as Record<string, unknown>)
      .filter(([, v]) => v !== undefined)
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonical(v)}`).join(',')}}`;
  }
  return JSON.stringify(value);
}

/** The signed part: everything but `unprotected` and `signature`, in canonical JSON. */
export function signedBytes(manifest: Manifest): string {
  const { unprotected: _u, signature: _s, ...signed } = manifest;
  return canonical(signed);
}

export function signManifest(manifest: Manifest, key: CryptKey): Manifest {
  const withKey = { ...manifest, keyFingerprint: key.fingerprint };
  return { ...withKey, signature: key.sign(signedBytes(withKey)) };
}

/** Checks the signature of an encrypted snapshot's manifest; WRONG_KEY or CORRUPT with the expected fingerprint. */
export function verifyManifestSignature(manifest: Manifest, key: CryptKey, what: string): void {
  if (manifest.keyFingerprint === undefined) return;
  if (manifest.keyFingerprint !== key.fingerprint) {
    throw new IbsError('WRONG_KEY', `${what} is encrypted with key ${manifest.keyFingerprint}, but the given key is ${key.fingerprint}`);
  }
  if (manifest.signature === undefined || !key.verifySignature(signedBytes(manifest), manifest.signature)) {
    throw new IbsError('CORRUPT', `${what}: manifest signature does not verify with key ${key.fingerprint} (altered manifest)`);
  }
}

export function encodeManifest(manifest: Manifest): Buffer {
  return Buffer.from(`${JSON.stringify(manifest, null, 1)}\n`);
}

const CSUM_RE = /^[0-9a-f]{64}$/;
const FILE_RE = /^(.+\.(?:tar|img|tar\.catalog|tar\.payload))\.(didx|fidx)$|^([A-Za-z0-9_][A-Za-z0-9._-]{0,99})\.blob$/;

export function parseManifest(data: Uint8Array, what: string): Manifest {
  const bad = (problem: string): IbsError => new IbsError('CORRUPT', `Manifest of ${what}: ${problem}`);
  let value: unknown;
  try {
    value = JSON.parse(Buffer.from(data).toString('utf8'));
  } catch {
    throw bad('not valid JSON');
  }
  const m = value as Record<string, unknown> | null;
  if (!m || typeof m !== 'object' || m.format !== 1) throw bad('missing "format": 1');
  if (typeof m.backupType !== 'string' || typeof m.backupId !== 'string' || typeof m.backupTime !== 'number') {
    throw bad('backupType, backupId and backupTime are required');
  }
  try {
    parseBackupType(m.backupType);
    parseBackupId(m.backupId);
  } catch (error) {
    throw bad((error as Error).message);
  }
  if (!Array.isArray(m.files)) throw bad('"files" must be a list');
  const names = new Set<string>();
  for (const f of m.files as Array<Record<string, unknown>>) {
    if (!f || typeof f.filename !== 'string' || !FILE_RE.test(f.filename)) throw bad(`invalid file name ${JSON.stringify(f?.filename)}`);
    const archive = /^(.+)\.(?:didx|fidx)$/.exec(f.filename);
    if (archive) {
      try {
        parseIndexedName(archive[1] as string);
      } catch {
        throw bad(`invalid archive name in ${JSON.stringify(f.filename)}`);
      }
    }
    if (names.has(f.filename)) throw bad(`file ${f.filename} listed twice`);
    names.add(f.filename);
    if (!Number.isSafeInteger(f.size) || (f.size as number) < 0) throw bad(`file ${f.filename}: invalid size`);
    if (typeof f.csum !== 'string' || !CSUM_RE.test(f.csum)) throw bad(`file ${f.filename}: invalid csum`);
    if (f.cryptMode !== 'none' && f.cryptMode !== 'encrypt') throw bad(`file ${f.filename}: invalid cryptMode`);
    if (f.archiveSize !== undefined && (!Number.isSafeInteger(f.archiveSize) || (f.archiveSize as number) < 0)) throw bad(`file ${f.filename}: invalid archiveSize`);
    if (f.sourceStamp !== undefined && (typeof f.sourceStamp !== 'string' || !/^[0-9:]{1,200}$/.test(f.sourceStamp))) throw bad(`file ${f.filename}: invalid sourceStamp`);
  }
  if (m.keyFingerprint !== undefined && typeof m.keyFingerprint !== 'string') throw bad('invalid keyFingerprint');
  if (m.signature !== undefined && typeof m.signature !== 'string') throw bad('invalid signature');
  if (m.unprotected === undefined || typeof m.unprotected !== 'object' || m.unprotected === null) m.unprotected = {};
  return m as unknown as Manifest;
}

/** "none" when no file is encrypted, "encrypt" when all are, "mixed" otherwise. */
export function manifestCryptMode(manifest: Manifest): 'none' | 'encrypt' | 'mixed' {
  const modes = new Set(manifest.files.map((f) => f.cryptMode));
  if (modes.size === 0) return 'none';
  if (modes.size > 1) return 'mixed';
  return modes.has('encrypt') ? 'encrypt' : 'none';
}

/**
 * Names of the archives a user can restore (`NAME.tar`, `NAME.img`) among a snapshot's files: a file archive is
 * stored either as its catalog and payload (`NAME.tar.payload.didx`) or, in the older layout, as its tar
 * stream (`NAME.tar.didx`).
 */
export function archiveNamesOf(files: readonly ManifestFile[]): string[] {
  const names = files.filter((f) => /\.(didx|fidx)$/.test(f.filename)).map((f) => f.filename.replace(/\.(didx|fidx)$/, '').replace(/\.tar\.payload$/, '.tar'));
  return [...new Set(names.filter((n) => /\.(tar|img)$/.test(n)))];
}
