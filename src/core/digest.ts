import { createHash, webcrypto } from 'node:crypto';
import { IbsError } from './errors.ts';

/** A chunk digest: 64 lowercase hex characters (SHA-256, or HMAC-SHA-256 for encrypted chunks). */
export type Digest = string;

const DIGEST_RE = /^[0-9a-f]{64}$/;

export function sha256(data: Uint8Array): Buffer {
  return createHash('sha256').update(data).digest();
}

export function sha256Hex(data: Uint8Array): Digest {
  return createHash('sha256').update(data).digest('hex');
}

/** SHA-256 on the thread pool (WebCrypto), for hashing chunks off the main thread. */
export async function sha256HexAsync(data: Uint8Array): Promise<Digest> {
  return Buffer.from(await webcrypto.subtle.digest('SHA-256', data)).toString('hex');
}

/** A chunk whose content digests to `actual` instead of the `digest` it is stored under: CORRUPT. */
export function damagedChunk(digest: Digest, actual: Digest): IbsError {
  return new IbsError('CORRUPT', `Chunk ${digest}: content digest is ${actual} (damaged chunk)`);
}

export function isDigest(value: string): boolean {
  return DIGEST_RE.test(value);
}

export function assertDigest(value: string, what = 'digest'): Digest {
  if (!DIGEST_RE.test(value)) {
    throw new IbsError('INVALID_ARGUMENT', `Invalid ${what} "${value.slice(0, 80)}": expected 64 lowercase hex characters`);
  }
  return value;
}
