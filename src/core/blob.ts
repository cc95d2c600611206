import { crc32, zstdCompress, zstdCompressSync, zstdDecompress, zstdDecompressSync, constants, ZstdCompress, ZstdDecompress, type ZstdOptions } from 'node:zlib';
import { createHash } from 'node:crypto';
import { promisify } from 'node:util';
import { IbsError } from './errors.ts';
import { release } from '../lib/release.ts';
import type { CryptKey } from './crypt-key.ts';

/**
 * The blob codec: how a chunk (or a small file of a snapshot) is stored.
 *
 *   magic (8 bytes: "IBSblob" + encoding byte) | crc32 of payload (u32 LE) | [iv (12) | GCM tag (16) | [digest (32)]] | payload
 *
 * Encodings: 0 raw, 1 zstd, 2 encrypted, 3 encrypted+zstd, 4 and 5 the same two bound to the chunk's digest
 * (stored in the header and authenticated with the ciphertext as GCM additional data): a reader that knows
 * the digest it asked for then needs no second pass over the plaintext to check it. Compression is kept only
 * when it saves space.
 */

export const BLOB_ENCODINGS = ['raw', 'zstd', 'encrypted', 'encrypted+zstd', 'encrypted-bound', 'encrypted+zstd-bound'] as const;
export type BlobEncoding = (typeof BLOB_ENCODINGS)[number];

const MAGIC_PREFIX = Buffer.from('IBSblob', 'latin1');
const PLAIN_HEADER = 12;
const CRYPT_HEADER = PLAIN_HEADER + 12 + 16;
const BOUND_HEADER = CRYPT_HEADER + 32;
/** No chunk or blob decodes to more than this; guards against decompression bombs. */
export const MAX_BLOB_PLAINTEXT = 16 * 1024 * 1024;

const compress = promisify(zstdCompress);
const decompress = promisify(zstdDecompress);

/**
 * The decompressed size a zstd frame header declares (Frame_Content_Size, RFC 8878 section 3.1.1.1), or
 * undefined when the frame does not say. Only a hint for sizing the output buffer: a payload that decodes
 * to another size is still caught by the decoder or the digest.
 */
export function zstdContentSize(frame: Uint8Array): number | undefined {
  if (frame.length < 6 || frame[0] !== 0x28 || frame[1] !== 0xb5 || frame[2] !== 0x2f || frame[3] !== 0xfd) return undefined;
  const descriptor = frame[4] as number;
  const fcsFlag = descriptor >> 6;
  const singleSegment = (descriptor >> 5) & 1;
  const fcsBytes = [singleSegment ? 1 : 0, 2, 4, 8][fcsFlag] as number;
  if (fcsBytes === 0) return undefined;
  const at = 5 + (singleSegment ? 0 : 1) + ([0, 1, 2, 4][descriptor & 3] as number);
  if (frame.length < at + fcsBytes) return undefined;
  const view = Buffer.from(frame.buffer, frame.byteOffset, frame.length);
  if (fcsBytes === 1) return view[at] as number;
  if (fcsBytes === 2) return view.readUInt16LE(at) + 256;
  if (fcsBytes === 4) return view.readUInt32LE(at);
  const size = view.readBigUInt64LE(at);
  return size <= BigInt(MAX_BLOB_PLAINTEXT) ? Number(size) : undefined;
}

/**
 * zlib options that decode a frame into one output buffer (zlib's default is 16 KiB pieces joined at the end,
 * a copy of every plaintext): the declared size plus one byte (a full buffer makes zlib allocate another),
 * or a fixed-size chunk's 4 MiB for frames written without a declared size.
 */
function decompressOptions(payload: Uint8Array): { maxOutputLength: number; chunkSize: number } {
  const declared = zstdContentSize(payload);
  const expected = declared !== undefined && declared <= MAX_BLOB_PLAINTEXT ? declared : 4 * 1024 * 1024;
  return { maxOutputLength: MAX_BLOB_PLAINTEXT, chunkSize: Math.max(64, expected + 1) };
}

/** Decompresses a zstd payload on the calling thread; CORRUPT naming `what` when it does not decode. */
export function decompressSync(payload: Uint8Array, what: string): Buffer {
  try {
    return zstdDecompressSync(payload, decompressOptions(payload));
  } catch (error) {
    throw undecodable(what, error);
  }
}

/** The pieces a payload is decoded in when only its digest is wanted: hashed while still in the core's cache. */
const PIECE = 256 * 1024;
let pieceBuffer: Buffer | undefined;

/**
 * The zlib stream's native handle, driven directly: Node's public API decodes a zstd frame either whole into
 * one buffer or through asynchronous stream events, and neither hashes a piece right after decoding it.
 * `writeSync(flush, in, inOffset, inLength, out, outOffset, outLength)` leaves the output and input bytes it
 * did not use in `_writeState`; Node's own zstdDecompressSync drives the handle the same way. These are
 * internals: they are used only once a probe (zstdDecodesInPieces) has shown that they decode as Node does.
 */
interface ZstdHandle {
  writeSync(flush: number, input: Uint8Array, inOffset: number, inLength: number, output: Uint8Array, outOffset: number, outLength: number): void;
}
interface DrivenStream {
  stream: ZstdCompress | ZstdDecompress;
  handle: ZstdHandle;
  state: Uint32Array;
}

/** The handle and write state of `stream`, or undefined (the stream destroyed) when they are not as expected. */
function driven(stream: ZstdCompress | ZstdDecompress): DrivenStream | undefined {
  const internals = stream as unknown as { _handle?: Partial<ZstdHandle>; _writeState?: unknown };
  const handle = internals._handle;
  const state = internals._writeState;
  if (typeof handle?.writeSync !== 'function' || !(state instanceof Uint32Array) || state.length < 2) {
    stream.destroy();
    return undefined;
  }
  // A decoding error destroys the stream (checked after each step) and is emitted later: nobody else listens.
  stream.on('error', () => {});
  return { stream, handle: handle as ZstdHandle, state };
}

/**
 * Decodes `payload` through `decoder` into `sink`, 256 KiB at a time. CORRUPT when the decoder reports that
 * the payload does not decode, or when it decodes to more than MAX_BLOB_PLAINTEXT; anything else thrown (by
 * `sink`, or by the handle itself) passes through as it is, never as damage.
 */
function decodeInPieces(decoder: DrivenStream, payload: Uint8Array, what: string, sink: (piece: Buffer) => void): void {
  const { stream, handle, state } = decoder;
  const out = (pieceBuffer ??= Buffer.allocUnsafe(PIECE));
  let offset = 0;
  let total = 0;
  try {
    for (;;) {
      const inLength = payload.length - offset;
      handle.writeSync(constants.ZSTD_e_end, payload, offset, inLength, out, 0, PIECE);
      if (stream.destroyed) throw undecodable(what, stream.errored);
      const outLeft = state[0] as number;
      const inLeft = state[1] as number;
      const produced = PIECE - outLeft;
      total += produced;
      if (total > MAX_BLOB_PLAINTEXT) throw new IbsError('CORRUPT', `${what}: zstd payload decodes to more than ${MAX_BLOB_PLAINTEXT} bytes`);
      if (produced > 0) sink(out.subarray(0, produced));
      offset += inLength - inLeft;
      // A step that did not fill the piece has nothing more to give. As with Node's own decoding, input left
      // after the frame is ignored, and a frame cut short is an error ("unexpected end of file").
      if (outLeft > 0) return;
    }
  } finally {
    stream.destroy();
  }
}

let piecewise: boolean | undefined;

/**
 * Whether zstd payloads are decoded in pieces (see ZstdHandle), found out once per thread: a frame of several
 * pieces decoded that way must give what Node's own decoding gives. A Node whose internals differ (missing,
 * or changed so that they throw or decode otherwise) gets whole decoding, only slower; a chunk is never
 * taken for damaged because of it.
 */
export function zstdDecodesInPieces(): boolean {
  if (piecewise === undefined) {
    piecewise = false;
    try {
      const sample = Buffer.alloc(3 * PIECE + 1000);
      for (let i = 0; i < sample.length; i++) sample[i] = 97 + ((i * 7 + (i >>> 9)) % 13);
      const decoder = driven(new ZstdDecompress());
      if (decoder) {
        const parts: Buffer[] = [];
        decodeInPieces(decoder, zstdCompressSync(sample), 'probe', (piece) => parts.push(Buffer.from(piece)));
        piecewise = parts.length > 1 && Buffer.concat(parts).equals(sample);
      }
    } catch {
      piecewise = false;
    }
  }
  return piecewise;
}

/**
 * Hands the plaintext of a zstd payload to `sink` in pieces of 256 KiB on the calling thread. Each piece is
 * overwritten by the next: `sink` must not keep it. CORRUPT naming `what` when the payload does not decode or
 * decodes to more than MAX_BLOB_PLAINTEXT (what `sink` has seen by then is not the plaintext).
 */
export function decompressPiecesSync(payload: Uint8Array, what: string, sink: (piece: Buffer) => void): void {
  const decoder = zstdDecodesInPieces() ? driven(new ZstdDecompress()) : undefined;
  if (!decoder) {
    const plain = decompressSync(payload, what);
    sink(plain);
    release(plain);
    return;
  }
  decodeInPieces(decoder, payload, what, sink);
}

/**
 * The SHA-256 (hex) of an unencrypted blob's plaintext, which is never held whole: a zstd payload is hashed
 * piece by piece as it decodes (20% less time than decoding it into one buffer and hashing that, measured on
 * the benchmark's chunks). The CRC is not checked: a digest compared with the expected one catches more.
 */
export function plainDigestSync(blob: Uint8Array, what: string): string {
  const header = readBlobHeader(blob, what);
  if (isEncryptedBlob(header)) throw new IbsError('WRONG_KEY', `${what} is encrypted: a key is needed to digest its content`);
  const payload = blob.subarray(header.headerSize);
  const hash = createHash('sha256');
  if (isCompressed(header)) decompressPiecesSync(payload, what, (piece) => hash.update(piece));
  else hash.update(payload);
  return hash.digest('hex');
}

/**
 * zstd options (level 1) for `data`: the output goes into one buffer large enough for any input (zstd's bound:
 * the input plus 1/128 plus a little). Pieces of a quarter of the input, joined at the end, left every piece
 * behind as garbage (tens of MiB on each encoding thread, since their collector runs rarely); the one buffer
 * is freed as soon as the blob is framed, or at once when compression did not make the data smaller.
 * pledgedSrcSize puts the size in the frame header, so that readers decode into one buffer of that size.
 */
function compressOptions(data: Uint8Array): ZstdOptions {
  return { chunkSize: data.length + (data.length >>> 7) + 1024, pledgedSrcSize: data.length, params: { [constants.ZSTD_c_compressionLevel]: 1 } };
}

/** The compressed data when smaller than `data`; otherwise it is freed and the answer is undefined. */
function smaller(packed: Buffer, data: Uint8Array): Buffer | undefined {
  if (packed.length < data.length) return packed;
  release(packed);
  return undefined;
}

/** Slices of a large chunk compressed on trial, and the share of their size compression must save. */
const PROBE_SLICES = 4;
const PROBE_SLICE = 16 * 1024;
const PROBE_MIN_SAVING = 0.05;
/** The slices of the trial, copied together, and its output: one of each a thread, made on first use. */
let probeBuffer: Buffer | undefined;
let probeOutput: Buffer | undefined;
/** The trial's compressor, kept from one chunk to the next (undefined: not made yet or failed; null: none to drive). */
let probeCompressor: DrivenStream | null | undefined;

/**
 * The size of `probe` compressed at level 1 (more than its length: does not shrink). One compressor serves
 * every trial on a thread: each frame ended starts the next afresh. A compressor made per call (as
 * zstdCompressSync does) cost 0.28 ms for 64 KiB of random data, the kept one 0.01 ms; and 2,000 of them left
 * 34-56 MB of native memory waiting for the collector. Where the handle is not as expected (see ZstdHandle),
 * zstdCompressSync does the trial.
 */
function trialSize(probe: Buffer): number {
  const out = (probeOutput ??= Buffer.allocUnsafeSlow(probe.length + 1024));
  if (probeCompressor === undefined) probeCompressor = driven(new ZstdCompress({ params: { [constants.ZSTD_c_compressionLevel]: 1 } })) ?? null;
  const compressor = probeCompressor;
  if (!compressor) return zstdCompressSync(probe, compressOptions(probe)).length;
  compressor.handle.writeSync(constants.ZSTD_e_end, probe, 0, probe.length, out, 0, out.length);
  const outLeft = compressor.state[0] as number;
  const inLeft = compressor.state[1] as number;
  // A compressor that failed is made anew next time; the trial then tells nothing, and the chunk is compressed.
  if (compressor.stream.destroyed) {
    probeCompressor = undefined;
    return 0;
  }
  // Output full, or input left over: the frame would be larger than the output buffer, so larger than `probe`.
  return outLeft === 0 || inLeft > 0 ? out.length : out.length - outLeft;
}

/**
 * Whether a trial on four slices of 16 KiB spread over `data` (from 256 KiB up) says compressing it would
 * save less than 5%: then it is stored raw without the attempt. Already compressed data (photos, video,
 * archives, compressed databases) is common in backups, and zstd spends time failing to shrink it: on the
 * bench's backup (a third of its 1 GiB image is random) user time went from 9.7-9.8 s to 8.4 s, and the same
 * chunks were stored raw as before. A chunk whose slices all miss its compressible part is stored raw: it
 * reads the same, and takes more space.
 */
function looksIncompressible(data: Uint8Array): boolean {
  if (data.length < PROBE_SLICES * PROBE_SLICE * 4) return false;
  const probe = (probeBuffer ??= Buffer.allocUnsafeSlow(PROBE_SLICES * PROBE_SLICE));
  const step = Math.floor((data.length - PROBE_SLICE) / (PROBE_SLICES - 1));
  for (let i = 0; i < PROBE_SLICES; i++) probe.set(data.subarray(i * step, i * step + PROBE_SLICE), i * PROBE_SLICE);
  return trialSize(probe) > probe.length * (1 - PROBE_MIN_SAVING);
}

/** `data` compressed with zstd, or undefined when that does not make it smaller or would not (the trial). */
async function compressSmaller(data: Uint8Array): Promise<Buffer | undefined> {
  if (looksIncompressible(data)) return undefined;
  return smaller(await compress(data, compressOptions(data)), data);
}

/** `compressSmaller` on the calling thread. */
function compressSmallerSync(data: Uint8Array): Buffer | undefined {
  if (looksIncompressible(data)) return undefined;
  return smaller(zstdCompressSync(data, compressOptions(data)), data);
}

export interface EncodeOptions {
  compress: boolean;
  key?: CryptKey | undefined;
  /**
   * The chunk's digest (64 hex): an encrypted blob is bound to it (encodings 4 and 5), so that readers that
   * ask for this digest need not digest the plaintext again. Not for `.blob` files, which have no digest.
   */
  digest?: string | undefined;
}

/** The 32 digest bytes an encrypted blob is bound to, or undefined (unencrypted, or no digest given). */
function bindingOf(options: EncodeOptions): Buffer | undefined {
  if (!options.key || options.digest === undefined) return undefined;
  if (!/^[0-9a-f]{64}$/.test(options.digest)) throw new RangeError(`Blob digest "${options.digest}" is not 64 lowercase hex characters`);
  return Buffer.from(options.digest, 'hex');
}

function checkPlaintextSize(data: Uint8Array): void {
  if (data.length > MAX_BLOB_PLAINTEXT) throw new RangeError(`Blob of ${data.length} bytes exceeds ${MAX_BLOB_PLAINTEXT}`);
}

/** The blob of a payload, compressed or not, encrypted when `sealed` is given; frees what it copies. */
function frame(payload: Uint8Array, compressed: boolean, sealed: { iv: Buffer; tag: Buffer; ciphertext: Buffer } | undefined, bound?: Buffer): Buffer {
  if (sealed) {
    const header = Buffer.alloc(bound ? BOUND_HEADER : CRYPT_HEADER);
    MAGIC_PREFIX.copy(header);
    header[7] = (compressed ? 3 : 2) + (bound ? 2 : 0);
    header.writeUInt32LE(crc32(sealed.ciphertext), 8);
    sealed.iv.copy(header, 12);
    sealed.tag.copy(header, 24);
    bound?.copy(header, CRYPT_HEADER);
    const blob = Buffer.concat([header, sealed.ciphertext]);
    // The compressed and the encrypted bytes were made here and are copied into the blob: freed now.
    release(sealed.ciphertext);
    if (compressed) release(payload);
    return blob;
  }
  const header = Buffer.alloc(PLAIN_HEADER);
  MAGIC_PREFIX.copy(header);
  header[7] = compressed ? 1 : 0;
  header.writeUInt32LE(crc32(payload), 8);
  const blob = Buffer.concat([header, payload]);
  if (compressed) release(payload);
  return blob;
}

export async function encodeBlob(data: Uint8Array, options: EncodeOptions): Promise<Buffer> {
  checkPlaintextSize(data);
  const packed = options.compress && data.length > 0 ? await compressSmaller(data) : undefined;
  const payload = packed ?? data;
  const bound = bindingOf(options);
  return frame(payload, packed !== undefined, options.key ? await options.key.encryptAsync(payload, bound) : undefined, bound);
}

/** `encodeBlob` on the calling thread (a worker's: see ChunkPool). */
export function encodeBlobSync(data: Uint8Array, options: EncodeOptions): Buffer {
  checkPlaintextSize(data);
  const packed = options.compress && data.length > 0 ? compressSmallerSync(data) : undefined;
  const payload = packed ?? data;
  const bound = bindingOf(options);
  return frame(payload, packed !== undefined, options.key ? options.key.encrypt(payload, bound) : undefined, bound);
}

export interface BlobHeader {
  encoding: BlobEncoding;
  headerSize: number;
  crc: number;
  /** The digest an encrypted blob is bound to (encodings 4 and 5), as 64 hex characters. */
  bound?: string;
}

/** Reads and checks the header; throws CORRUPT naming `what` when it is not a blob. */
export function readBlobHeader(blob: Uint8Array, what: string): BlobHeader {
  if (blob.length < PLAIN_HEADER || !MAGIC_PREFIX.equals(blob.subarray(0, 7))) {
    throw new IbsError('CORRUPT', `${what}: not a blob (bad magic)`);
  }
  const code = blob[7] as number;
  const encoding = BLOB_ENCODINGS[code];
  if (encoding === undefined) throw new IbsError('CORRUPT', `${what}: unknown blob encoding ${code}`);
  const headerSize = code >= 4 ? BOUND_HEADER : code >= 2 ? CRYPT_HEADER : PLAIN_HEADER;
  if (blob.length < headerSize) throw new IbsError('CORRUPT', `${what}: truncated blob header`);
  const view = Buffer.from(blob.buffer, blob.byteOffset, blob.length);
  return { encoding, headerSize, crc: view.readUInt32LE(8), ...(code >= 4 ? { bound: view.toString('hex', CRYPT_HEADER, BOUND_HEADER) } : {}) };
}

export function isEncryptedBlob(header: BlobHeader): boolean {
  return header.encoding !== 'raw' && header.encoding !== 'zstd';
}

function isCompressed(header: BlobHeader): boolean {
  return header.encoding === 'zstd' || header.encoding === 'encrypted+zstd' || header.encoding === 'encrypted+zstd-bound';
}

/** Checks the CRC of the payload: what anyone can check without the key. */
export function checkBlobCrc(blob: Uint8Array, what: string): BlobHeader {
  const header = readBlobHeader(blob, what);
  if (crc32(blob.subarray(header.headerSize)) !== header.crc) throw new IbsError('CORRUPT', `${what}: CRC32 mismatch`);
  return header;
}

/**
 * Whether to check a blob's CRC when decoding it. A caller that checks the plaintext against its digest right
 * after may skip it: any damage the CRC would catch fails that check (or decryption's authentication, or
 * decompression) instead, and the CRC is a pass over the whole blob. An encrypted blob that fails
 * authentication then has its CRC checked, so that damage is still told from a wrong key.
 */
export interface DecodeOptions {
  crc?: boolean;
  /**
   * The digest the caller asked for. A blob bound to another digest is CORRUPT (a chunk stored under the
   * wrong name); one bound to this digest that decodes is authenticated as this chunk's content.
   */
  digest?: string | undefined;
}

/** The encrypted fields and payload of a checked blob, or the plain payload; WRONG_KEY when encrypted and no key. */
function sealedParts(blob: Uint8Array, key: CryptKey | undefined, what: string, options: DecodeOptions): { header: BlobHeader; payload: Buffer; sealed?: { iv: Uint8Array; tag: Uint8Array; aad?: Uint8Array } } {
  const header = options.crc === false ? readBlobHeader(blob, what) : checkBlobCrc(blob, what);
  if (header.bound !== undefined && options.digest !== undefined && header.bound !== options.digest) {
    throw new IbsError('CORRUPT', `${what}: the blob stored under it is chunk ${header.bound} (misplaced chunk)`);
  }
  const payload = Buffer.from(blob.buffer, blob.byteOffset + header.headerSize, blob.length - header.headerSize);
  if (!isEncryptedBlob(header)) return { header, payload };
  if (!key) throw new IbsError('WRONG_KEY', `${what} is encrypted: a key is needed to read it`);
  return { header, payload, sealed: { iv: blob.subarray(12, 24), tag: blob.subarray(24, 40), ...(header.bound !== undefined ? { aad: blob.subarray(CRYPT_HEADER, BOUND_HEADER) } : {}) } };
}

/** After a failed decryption: CORRUPT when the CRC (not checked before) shows damage, else `error` again. */
function damagedOr(error: unknown, blob: Uint8Array, what: string, options: DecodeOptions): never {
  if (options.crc === false) checkBlobCrc(blob, what);
  throw error;
}

function undecodable(what: string, error: unknown): IbsError {
  return new IbsError('CORRUPT', `${what}: zstd payload does not decompress`, { cause: error });
}

/** Decodes a blob to its plaintext; CORRUPT on a bad CRC, WRONG_KEY when it is encrypted and no key fits. */
export async function decodeBlob(blob: Uint8Array, key: CryptKey | undefined, what: string, options: DecodeOptions = {}): Promise<Buffer> {
  const { header, payload: stored, sealed } = sealedParts(blob, key, what, options);
  let payload = sealed && key ? await key.decryptAsync(sealed.iv, sealed.tag, stored, sealed.aad).catch((error: unknown) => damagedOr(error, blob, what, options)) : stored;
  if (isCompressed(header)) {
    const packed = payload;
    try {
      payload = await decompress(packed, decompressOptions(packed));
    } catch (error) {
      throw undecodable(what, error);
    }
    // Decrypted here, and decompressed since: freed now.
    if (sealed) release(packed);
  }
  return payload;
}

/** `decodeBlob` on the calling thread (a worker's: see ChunkPool). */
export function decodeBlobSync(blob: Uint8Array, key: CryptKey | undefined, what: string, options: DecodeOptions = {}): Buffer {
  const { header, payload: stored, sealed } = sealedParts(blob, key, what, options);
  let payload: Buffer;
  try {
    payload = sealed && key ? key.decrypt(sealed.iv, sealed.tag, stored, sealed.aad) : stored;
  } catch (error) {
    damagedOr(error, blob, what, options);
  }
  if (isCompressed(header)) {
    const packed = payload;
    payload = decompressSync(packed, what);
    if (sealed) release(packed);
  }
  return payload;
}
