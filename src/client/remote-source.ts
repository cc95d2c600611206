import { parseManifest, type Manifest, type SnapshotRef, formatSnapshot, formatNamespace } from '../core/index.ts';
import type { ApiClient } from './api-client.ts';
import { parseChunkFrames } from './frames.ts';

/**
 * Chunk batches read over one connection share its pace (see client/link-pace.ts): callers ask for at most this many
 * bytes per batch (by plaintext size, which bounds a blob) and this many batches at a time.
 */
export const CHUNK_BATCH_BYTES = 4 * 1024 * 1024;
export const CHUNK_BATCHES_IN_FLIGHT = 16;

/**
 * A snapshot read from a server (the client half of the reader session API; it has the shape of a datastore
 * SnapshotSource). The server serves only this snapshot's files and chunks; the reader on top of this checks
 * every one of them against the manifest and the chunk digests.
 */
export class RemoteSnapshotSource {
  readonly manifest: Manifest;
  readonly #client: ApiClient;
  readonly #session: string;

  private constructor(client: ApiClient, session: string, manifest: Manifest) {
    this.#client = client;
    this.#session = session;
    this.manifest = manifest;
  }

  static async open(client: ApiClient, input: { store: string; ref: SnapshotRef }): Promise<RemoteSnapshotSource> {
    const r = await client.request<{ session: string; manifest: unknown }>('POST', '/reader/start', {
      store: input.store,
      ...(input.ref.ns.length ? { ns: formatNamespace(input.ref.ns) } : {}),
      snapshot: formatSnapshot({ ...input.ref, ns: [] }),
    });
    return new RemoteSnapshotSource(client, r.session, parseManifest(Buffer.from(JSON.stringify(r.manifest)), formatSnapshot(input.ref)));
  }

  readFile(filename: string): Promise<Buffer> {
    return this.#client.requestBytes(`/reader/${this.#session}/file`, { filename });
  }

  chunkBlob(digest: string): Promise<Buffer> {
    return this.#client.requestBytes(`/reader/${this.#session}/chunk`, { digest });
  }

  /**
   * Several chunks in one request: frames of digest (32 bytes) | blob length (u32 LE) | blob, in request order.
   * Read from the pieces the body arrived in: each blob gathered into a buffer of its own, which a check
   * thread can take over whole and which is freed with its chunk, not with the whole body.
   */
  async chunkBatch(digests: readonly string[]): Promise<Array<{ digest: string; blob: Buffer }>> {
    const pace = this.#client.pace('pull', CHUNK_BATCH_BYTES, CHUNK_BATCHES_IN_FLIGHT);
    await pace.acquire();
    try {
      const since = pace.mark();
      const pieces = await this.#client.postForPieces(`/reader/${this.#session}/chunks`, { digests });
      pace.answered(pieces.reduce((n, p) => n + p.length, 0), since);
      return parseChunkFrames(pieces, 'chunk batch from the server');
    } finally {
      pace.done();
    }
  }

  async close(): Promise<void> {
    await this.#client.request('POST', `/reader/${this.#session}/close`).catch(() => {});
  }
}
