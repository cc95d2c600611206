import { createCipheriv, createDecipheriv, createHmac, randomBytes, scrypt as scryptCb, timingSafeEqual, webcrypto, type ScryptOptions } from 'node:crypto';
import { crc32 } from 'node:zlib';
import { IbsError } from './errors.ts';
import { release } from '../lib/release.ts';

/**
 * Encryption keys. A key is 32 random bytes used for AES-256-GCM; from it we derive, with HMAC-SHA-256 and
 * fixed labels, the key for chunk digests (so equal plaintext under different keys never collides), the key
 * that signs manifests and the fingerprint that names the key without revealing it. A key file holds the key
 * wrapped (AES-256-GCM) with a key derived from a passphrase by scrypt.
 */

export const KEY_BYTES = 32;

export class CryptKey {
  readonly #key: Buffer;
  readonly #idKey: Buffer;
  readonly #signKey: Buffer;
  readonly fingerprint: string;
  #subtleId: Promise<webcrypto.CryptoKey> | undefined;
  #subtleAes: Promise<webcrypto.CryptoKey> | undefined;

  constructor(key: Uint8Array) {
    if (key.length !== KEY_BYTES) throw new RangeError(`CryptKey needs ${KEY_BYTES} bytes, got ${key.length}`);
    this.#key = Buffer.from(key);
    this.#idKey = createHmac('sha256', this.#key).update('ibs chunk digest v1').digest();
    this.#signKey = createHmac('sha256', this.#key).update('ibs manifest signature v1').digest();
    this.fingerprint = formatFingerprint(createHmac('sha256', this.#key).update('ibs key fingerprint v1').digest());
  }

  static generate(): CryptKey {
    return new CryptKey(randomBytes(KEY_BYTES));
  }

  /** The digest a chunk is stored under: HMAC-SHA-256 of the plaintext with the derived id key. */
  chunkDigest(plaintext: Uint8Array): string {
    return createHmac('sha256', this.#idKey).update(plaintext).digest('hex');
  }

  /**
   * `chunkDigest` computed on the thread pool (WebCrypto), so that hashing many chunks does not hold up the
   * thread that reads and chunks the data.
   */
  async chunkDigestAsync(plaintext: Uint8Array): Promise<string> {
    this.#subtleId ??= webcrypto.subtle.importKey('raw', this.#idKey, { name: 'HMAC', hash: 'SHA-256' }, false, ['sign']);
    return Buffer.from(await webcrypto.subtle.sign('HMAC', await this.#subtleId, plaintext)).toString('hex');
  }

  #aesKey(): Promise<webcrypto.CryptoKey> {
    this.#subtleAes ??= webcrypto.subtle.importKey('raw', this.#key, { name: 'AES-GCM' }, false, ['encrypt', 'decrypt']);
    return this.#subtleAes;
  }

  /** `encrypt` on the thread pool. */
  async encryptAsync(plaintext: Uint8Array, aad?: Uint8Array): Promise<{ iv: Buffer; tag: Buffer; ciphertext: Buffer }> {
    const iv = randomBytes(12);
    const sealed = Buffer.from(await webcrypto.subtle.encrypt({ name: 'AES-GCM', iv, tagLength: 128, ...(aad ? { additionalData: aad } : {}) }, await this.#aesKey(), plaintext));
    return { iv, tag: sealed.subarray(sealed.length - 16), ciphertext: sealed.subarray(0, sealed.length - 16) };
  }

  /** `decrypt` on the thread pool; WRONG_KEY when authentication fails. */
  async decryptAsync(iv: Uint8Array, tag: Uint8Array, ciphertext: Uint8Array, aad?: Uint8Array): Promise<Buffer> {
    try {
      const sealed = Buffer.concat([ciphertext, tag]);
      try {
        return Buffer.from(await webcrypto.subtle.decrypt({ name: 'AES-GCM', iv, tagLength: 128, ...(aad ? { additionalData: aad } : {}) }, await this.#aesKey(), sealed));
      } finally {
        release(sealed);
      }
    } catch (error) {
      throw new IbsError('WRONG_KEY', `Decryption with key ${this.fingerprint} failed: wrong key, or the data was altered`, { cause: error });
    }
  }

  sign(data: string | Uint8Array): string {
    return createHmac('sha256', this.#signKey).update(data).digest('hex');
  }

  verifySignature(data: string | Uint8Array, signature: string): boolean {
    const expected = Buffer.from(this.sign(data), 'hex');
    const given = Buffer.from(signature, 'hex');
    return given.length === expected.length && timingSafeEqual(given, expected);
  }

  /** AES-256-GCM with a random IV; `aad` (additional authenticated data) is bound to the ciphertext, not stored in it. */
  encrypt(plaintext: Uint8Array, aad?: Uint8Array): { iv: Buffer; tag: Buffer; ciphertext: Buffer } {
    const iv = randomBytes(12);
    const cipher = createCipheriv('aes-256-gcm', this.#key, iv);
    if (aad) cipher.setAAD(aad);
    const ciphertext = cipher.update(plaintext);
    // GCM's final part is empty: joining it would only copy the ciphertext.
    const rest = cipher.final();
    return { iv, tag: cipher.getAuthTag(), ciphertext: rest.length === 0 ? ciphertext : Buffer.concat([ciphertext, rest]) };
  }

  /** Throws WRONG_KEY when authentication fails (wrong key or tampered data). */
  decrypt(iv: Uint8Array, tag: Uint8Array, ciphertext: Uint8Array, aad?: Uint8Array): Buffer {
    try {
      const decipher = createDecipheriv('aes-256-gcm', this.#key, iv);
      decipher.setAuthTag(tag);
      if (aad) decipher.setAAD(aad);
      const plaintext = decipher.update(ciphertext);
      // Checks the tag; GCM's final part is empty (joining it would only copy the plaintext).
      const rest = decipher.final();
      return rest.length === 0 ? plaintext : Buffer.concat([plaintext, rest]);
    } catch (error) {
      throw new IbsError('WRONG_KEY', `Decryption with key ${this.fingerprint} failed: wrong key, or the data was altered`, { cause: error });
    }
  }

  /** The raw key bytes, for wrapping into a key file only. */
  exportRaw(): Buffer {
    return Buffer.from(this.#key);
  }
}

export function formatFingerprint(bytes: Uint8Array): string {
  return [...bytes].map((b) => b.toString(16).padStart(2, '0')).join(':');
}

const FINGERPRINT_RE = /^[0-9a-f]{2}(:[0-9a-f]{2}){31}$/;

export function parseFingerprint(value: string): string {
  const normalized = value.trim().toLowerCase();
  if (!FINGERPRINT_RE.test(normalized)) {
    throw new IbsError('INVALID_ARGUMENT', `Invalid fingerprint "${value}": expected 32 colon-separated hex bytes (aa:bb:…)`);
  }
  return normalized;
}

export interface KeyFile {
  version: 1;
  /** `master`: wrapped by the server's master key of that fingerprint (server keys, see config/master-key.ts). */
  kdf: { name: 'scrypt'; n: number; r: number; p: number; salt: string } | { name: 'none' } | { name: 'master'; fingerprint: string };
  created: string;
  modified: string;
  fingerprint: string;
  /** base64 of iv (12) | tag (16) | wrapped key (32); with kdf "none" the raw key. */
  data: string;
}

const SCRYPT_N = 1 << 15;

function scrypt(passphrase: string, salt: Buffer, params: { n: number; r: number; p: number }): Promise<Buffer> {
  const options: ScryptOptions = { N: params.n, r: params.r, p: params.p, maxmem: 256 * params.n * params.r + 16 * 1024 * 1024 };
  return new Promise((resolve, reject) => {
    scryptCb(passphrase.normalize('NFC'), salt, KEY_BYTES, options, (error, derived) => (error ? reject(error) : resolve(derived)));
  });
}

/** What a key is wrapped by in a server key file: the master key's AES-GCM, bound to this label. */
const MASTER_AAD = Buffer.from('ibs server key v1');

/** Wraps `key` with a passphrase (scrypt), with a master key (`kdf: master`), or not at all (undefined). */
export async function wrapKey(key: CryptKey, passphrase: string | CryptKey | undefined, now = new Date()): Promise<KeyFile> {
  const stamp = now.toISOString();
  if (passphrase === undefined) {
    return { version: 1, kdf: { name: 'none' }, created: stamp, modified: stamp, fingerprint: key.fingerprint, data: key.exportRaw().toString('base64') };
  }
  if (passphrase instanceof CryptKey) {
    const { iv, tag, ciphertext } = passphrase.encrypt(key.exportRaw(), MASTER_AAD);
    return { version: 1, kdf: { name: 'master', fingerprint: passphrase.fingerprint }, created: stamp, modified: stamp, fingerprint: key.fingerprint, data: Buffer.concat([iv, tag, ciphertext]).toString('base64') };
  }
  if (passphrase.length < 8) {
    throw new IbsError('INVALID_ARGUMENT', `The passphrase is ${passphrase.length} characters long: expected at least 8`);
  }
  const salt = randomBytes(16);
  const params = { n: SCRYPT_N, r: 8, p: 1 };
  const wrapping = new CryptKey(await scrypt(passphrase, salt, params));
  const { iv, tag, ciphertext } = wrapping.encrypt(key.exportRaw());
  return {
    version: 1,
    kdf: { name: 'scrypt', ...params, salt: salt.toString('hex') },
    created: stamp,
    modified: stamp,
    fingerprint: key.fingerprint,
    data: Buffer.concat([iv, tag, ciphertext]).toString('base64'),
  };
}

/** A key file as stored (JSON, one field per line); `parseKeyFile` reads it back. */
export function formatKeyFile(file: KeyFile): string {
  return `${JSON.stringify(file, null, 2)}\n`;
}

export function parseKeyFile(text: string, source: string): KeyFile {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    throw new IbsError('INVALID_ARGUMENT', `Key file "${source}" is not JSON: expected an ironcore-backup key file`);
  }
  const file = value as Partial<KeyFile> | null;
  const kdf = file?.kdf as KeyFile['kdf'] | undefined;
  const kdfOk =
    kdf?.name === 'none' ||
    (kdf?.name === 'master' && typeof kdf.fingerprint === 'string' && FINGERPRINT_RE.test(kdf.fingerprint)) ||
    (kdf?.name === 'scrypt' && Number.isInteger(kdf.n) && kdf.n >= 1024 && kdf.n <= 1 << 20 && Number.isInteger(kdf.r) && kdf.r >= 1 && kdf.r <= 32 && Number.isInteger(kdf.p) && kdf.p >= 1 && kdf.p <= 16 && /^[0-9a-f]{32}$/.test(kdf.salt));
  if (!file || file.version !== 1 || !kdfOk || typeof file.data !== 'string' || typeof file.fingerprint !== 'string' || typeof file.created !== 'string') {
    throw new IbsError('INVALID_ARGUMENT', `Key file "${source}" is malformed: expected version 1 with kdf, data and fingerprint fields`);
  }
  return { ...file, modified: file.modified ?? file.created } as KeyFile;
}

/**
 * Unwraps a key file with its passphrase, or with the master key it names (`kdf: master`); a wrong passphrase
 * or master key gives WRONG_KEY naming the fingerprints.
 */
export async function unwrapKey(file: KeyFile, passphrase: string | CryptKey | undefined): Promise<CryptKey> {
  const data = Buffer.from(file.data, 'base64');
  let key: CryptKey;
  if (file.kdf.name === 'none') {
    if (data.length !== KEY_BYTES) throw new IbsError('CORRUPT', `Key ${file.fingerprint}: stored key has ${data.length} bytes, expected ${KEY_BYTES}`);
    key = new CryptKey(data);
  } else if (file.kdf.name === 'master') {
    const master = passphrase;
    if (!(master instanceof CryptKey)) throw new IbsError('WRONG_KEY', `Key ${file.fingerprint} is wrapped by the server's master key ${file.kdf.fingerprint}: only the server that holds that master key can use it`);
    if (master.fingerprint !== file.kdf.fingerprint) throw new IbsError('WRONG_KEY', `Key ${file.fingerprint} is wrapped by master key ${file.kdf.fingerprint}, not by the master key given (${master.fingerprint})`);
    if (data.length !== 12 + 16 + KEY_BYTES) throw new IbsError('CORRUPT', `Key ${file.fingerprint}: wrapped key has ${data.length} bytes, expected ${12 + 16 + KEY_BYTES}`);
    try {
      key = new CryptKey(master.decrypt(data.subarray(0, 12), data.subarray(12, 28), data.subarray(28), MASTER_AAD));
    } catch {
      throw new IbsError('CORRUPT', `Key ${file.fingerprint}: its wrapping does not open with master key ${master.fingerprint} (damaged key file)`);
    }
  } else {
    if (passphrase instanceof CryptKey) throw new IbsError('WRONG_KEY', `Key ${file.fingerprint} is protected by a passphrase, not by a master key`);
    if (passphrase === undefined) throw new IbsError('WRONG_KEY', `Key ${file.fingerprint} is protected by a passphrase and none was given`);
    if (data.length !== 12 + 16 + KEY_BYTES) throw new IbsError('CORRUPT', `Key ${file.fingerprint}: wrapped key has ${data.length} bytes, expected ${12 + 16 + KEY_BYTES}`);
    const wrapping = new CryptKey(await scrypt(passphrase, Buffer.from(file.kdf.salt, 'hex'), file.kdf));
    try {
      key = new CryptKey(wrapping.decrypt(data.subarray(0, 12), data.subarray(12, 28), data.subarray(28)));
    } catch {
      throw new IbsError('WRONG_KEY', `Wrong passphrase for key ${file.fingerprint}`);
    }
  }
  if (key.fingerprint !== file.fingerprint) {
    throw new IbsError('CORRUPT', `Key file fingerprint ${file.fingerprint} does not match its key (${key.fingerprint})`);
  }
  return key;
}

const PAPER_BEGIN = '-----BEGIN IRONCORE BACKUP KEY-----';
const PAPER_END = '-----END IRONCORE BACKUP KEY-----';
const PAPER_LINE = 48;

/**
 * A printable form of a key file: base64 lines of 48 characters, each followed by the CRC32 of the line, so a
 * transcription error is found and located on import.
 */
export function toPaperKey(file: KeyFile): string {
  const encoded = Buffer.from(JSON.stringify(file)).toString('base64');
  const lines = [PAPER_BEGIN, `fingerprint: ${file.fingerprint}`];
  for (let i = 0; i < encoded.length; i += PAPER_LINE) {
    const chunk = encoded.slice(i, i + PAPER_LINE);
    lines.push(`${String(i / PAPER_LINE + 1).padStart(3, '0')}: ${chunk} ${crc32(chunk).toString(16).padStart(8, '0')}`);
  }
  lines.push(PAPER_END);
  return `${lines.join('\n')}\n`;
}

export function fromPaperKey(text: string): KeyFile {
  const lines = text.split(/\r?\n/).map((l) => l.trim());
  const begin = lines.indexOf(PAPER_BEGIN);
  const end = lines.indexOf(PAPER_END);
  if (begin < 0 || end < begin) throw new IbsError('INVALID_ARGUMENT', `Paper key text lacks the "${PAPER_BEGIN}" / "${PAPER_END}" lines`);
  let encoded = '';
  let expectedNumber = 1;
  for (const line of lines.slice(begin + 1, end)) {
    if (line === '' || line.startsWith('fingerprint:')) continue;
    const m = /^(\d{3}): ([A-Za-z0-9+/=]+) ([0-9a-f]{8})$/.exec(line);
    if (!m) throw new IbsError('INVALID_ARGUMENT', `Paper key line "${line}" is malformed: expected "NNN: BASE64 CRC32"`);
    if (Number(m[1]) !== expectedNumber) throw new IbsError('INVALID_ARGUMENT', `Paper key line ${m[1]} is out of order: expected line ${expectedNumber}`);
    if (crc32(m[2] as string).toString(16).padStart(8, '0') !== m[3]) {
      throw new IbsError('INVALID_ARGUMENT', `Paper key line ${m[1]} fails its checksum: check the transcription of that line`);
    }
    encoded += m[2];
    expectedNumber++;
  }
  return parseKeyFile(Buffer.from(encoded, 'base64').toString('utf8'), 'paper key');
}
