import { IbsError, formatSnapshot, parseSnapshot, type Manifest, type ManifestFile, type SnapshotRef } from '../core/index.ts';
import type { ApiClient } from './api-client.ts';
import { retry } from '../lib/index.ts';
import type { LinkPace } from './link-pace.ts';

/**
 * Chunks per request, by bytes. The server checks a batch once all of it has arrived and answers for all of
 * it, and the sender frees window only on that answer: smaller batches keep a link with latency fuller at the
 * same bytes in flight. A push of 361 MiB with 50 ms added each way (2 runs each, same window of 48 MiB):
 * 8 MiB x 6 4.85-5.17 s, 4 MiB x 12 3.89-4.44 s, 2 MiB x 24 4.11-4.25 s; without latency all 2.8-3.2 s.
 * (4 MiB x 10, the 40 MiB used: 4.16-4.38 s.)
 */
const BATCH_BYTES = 4 * 1024 * 1024;
const RETRY = { attempts: 3, baseDelayMs: 500, maxDelayMs: 5000, retryable: (e: unknown) => e instanceof IbsError && e.code === 'UNAVAILABLE' };
/**
 * Batches awaiting the server's answer. Each waits one round trip plus the server's checks, so the bytes in
 * flight set the pace on a slow link. With 8 MiB batches, a push of 359 MiB with 50 ms added each way took
 * 7.6 s with 4 batches (32 MiB), 5.8-6.4 s with 6 and 6.1 s with 8; 64 MiB in flight took the receiving
 * server's peak memory past 300 MiB. 40 MiB now (10 batches of 4 MiB): the receiving server's peak was
 * 264 MiB over two latency and two direct pushes, 4.16-4.38 s with latency; 12 batches were a little faster
 * (3.89-4.16 s) but peaked at 289-297 MiB, and 299 MiB in the bench.
 */
const IN_FLIGHT = 10;

interface Pending {
  frames: Array<{ digest: string; header: Buffer; blob: Buffer }>;
  bytes: number;
  waiters: Array<{ resolve: (existed: boolean) => void; reject: (e: unknown) => void }>;
}

/**
 * A snapshot being uploaded to a server (the client half of the backup session API; it has the shape of a
 * datastore SnapshotSink). Chunks travel in batches of about 4 MiB, several batches in flight on one HTTP/2
 * connection, so a link with latency stays busy and no chunk costs a request of its own. Files and the
 * manifest are sent after every batch before them has been stored, so the server can check references.
 */
export class RemoteSnapshotSink {
  readonly ref: SnapshotRef;
  readonly known: ReadonlySet<string>;
  readonly #client: ApiClient;
  readonly #session: string;
  /** Ask before each batch which chunks the server holds already (off when the caller asked beforehand). */
  readonly #askKnown: boolean;
  #batch: Pending = { frames: [], bytes: 0, waiters: [] };
  readonly #inFlight = new Set<Promise<void>>();
  #failure: unknown;
  #seq = 0;
  /** Batches whose request body has not yet left (waiting for a slot, or being written). */
  readonly #unsent = new Set<Promise<void>>();
  #timer: NodeJS.Timeout | undefined;
  sentBytes = 0;
  /** Bytes of chunks it keeps in flight at most: every batch it may have outstanding, full, with the room a link with latency adds (LinkPace). */
  static readonly WINDOW = BATCH_BYTES * (IN_FLIGHT + Math.floor(IN_FLIGHT / 2));
  /** The previous snapshot of the group on the server, whose chunks this session may reference. */
  readonly previous: SnapshotRef | undefined;

  private constructor(client: ApiClient, session: string, ref: SnapshotRef, known: Set<string>, askKnown: boolean, previous: SnapshotRef | undefined) {
    this.previous = previous;
    this.#client = client;
    this.#askKnown = askKnown;
    this.#session = session;
    this.ref = ref;
    this.known = known;
  }

  /** Of the `digests` given to `start`, those the server holds for this session (undefined when none were given). */
  present: ReadonlySet<string> | undefined;

  /** Opens an upload session; `digests` (at most 10,000) are asked about at once, answered in `present`. */
  static async start(
    client: ApiClient,
    input: { store: string; ref: SnapshotRef; keyFingerprint?: string | undefined; askKnown?: boolean; amend?: boolean; digests?: readonly string[] },
  ): Promise<RemoteSnapshotSink> {
    const r = await client.request<{ session: string; known: string[]; previous?: string; present?: string[] }>('POST', '/backup/start', {
      store: input.store,
      ...(input.ref.ns.length ? { ns: input.ref.ns.join('/') } : {}),
      'backup-type': input.ref.type,
      'backup-id': input.ref.id,
      'backup-time': input.ref.time,
      ...(input.keyFingerprint ? { 'key-fingerprint': input.keyFingerprint } : {}),
      ...(input.amend ? { amend: true } : {}),
      ...(input.digests?.length ? { digests: input.digests } : {}),
    });
    const previous = r.previous !== undefined ? parseSnapshot(r.previous, input.ref.ns) : undefined;
    const sink = new RemoteSnapshotSink(client, r.session, input.ref, new Set(r.known), input.askKnown ?? true, previous);
    if (input.digests?.length && Array.isArray(r.present)) sink.present = new Set(r.present);
    return sink;
  }

  insertChunk(digest: string, blob: Uint8Array): Promise<{ existed: boolean }> {
    if (this.#failure) return Promise.reject(this.#failure);
    const header = Buffer.alloc(36);
    header.write(digest, 0, 32, 'hex');
    header.writeUInt32LE(blob.length, 32);
    const promise = new Promise<boolean>((resolve, reject) => this.#batch.waiters.push({ resolve, reject }));
    this.#batch.frames.push({ digest, header, blob: Buffer.from(blob.buffer, blob.byteOffset, blob.length) });
    this.#batch.bytes += 36 + blob.length;
    // A batch goes out when full, or shortly after its first chunk: callers wait for their chunk's answer.
    if (this.#batch.bytes >= BATCH_BYTES) void this.#send();
    else this.#timer ??= setTimeout(() => void this.#send(), 20);
    return promise.then((existed) => ({ existed }));
  }

  async #send(): Promise<void> {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    const batch = this.#batch;
    if (batch.frames.length === 0) return;
    this.#batch = { frames: [], bytes: 0, waiters: [] };
    // Numbered, so that a finish sent behind it can name the batches it waits for on the server.
    const seq = ++this.#seq;
    let markSent = (): void => {};
    const out = new Promise<void>((resolve) => (markSent = resolve));
    this.#unsent.add(out);
    void out.then(() => this.#unsent.delete(out));
    await this.#pace.acquire();
    const p: Promise<void> = (async () => {
      // First ask which chunks the server already holds for us (an interrupted earlier run); send the rest.
      const { known } = this.#askKnown ? await retry(() => this.#client.request<{ known: string[] }>('POST', `/backup/${this.#session}/known`, { digests: batch.frames.map((f) => f.digest) }), RETRY) : { known: [] as string[] };
      const have = new Set(known);
      const send = batch.frames.filter((f) => !have.has(f.digest));
      const existed = new Map<string, boolean>(known.map((d) => [d, true]));
      if (send.length > 0) {
        const body = send.flatMap((f) => [f.header, f.blob]);
        // A batch is idempotent (chunks are content-addressed): retry it when a transfer fails on the way.
        const since = this.#pace.mark();
        const r = await retry(() => this.#client.requestBinary<{ existed: boolean[] }>(`/backup/${this.#session}/chunks`, { seq }, body, { sent: markSent }), RETRY);
        const bytes = body.reduce((n, p) => n + p.length, 0);
        this.#pace.answered(bytes, since);
        this.sentBytes += bytes;
        send.forEach((f, i) => existed.set(f.digest, r.existed[i] ?? false));
      }
      return existed;
    })()
      .then(
        (existed) => {
          batch.waiters.forEach((w, i) => w.resolve(existed.get(batch.frames[i]?.digest ?? '') ?? false));
        },
        (error: unknown) => {
          this.#failure ??= error;
          for (const w of batch.waiters) w.reject(error);
        },
      )
      .finally(() => {
        markSent();
        this.#inFlight.delete(p);
        this.#pace.done();
      });
    this.#inFlight.add(p);
  }

  /** Pushes over one connection share its pace: batches of BATCH_BYTES, IN_FLIGHT at most. */
  get #pace(): LinkPace {
    return this.#client.pace('push', BATCH_BYTES, IN_FLIGHT);
  }

  /** Sends the open batch and waits for every batch in flight. */
  async flush(): Promise<void> {
    await this.#send();
    while (this.#inFlight.size > 0) await Promise.race(this.#inFlight);
    if (this.#failure) throw this.#failure;
  }

  /** Of `digests`, those the server holds that this session may reference without sending them. */
  async queryKnown(digests: readonly string[]): Promise<string[]> {
    const { known } = await retry(() => this.#client.request<{ known: string[] }>('POST', `/backup/${this.#session}/known`, { digests }), RETRY);
    return known;
  }

  async putFile(file: ManifestFile, data: Buffer): Promise<void> {
    await this.flush();
    await this.#client.requestBinary(`/backup/${this.#session}/file`, fileParams(file), data);
    this.sentBytes += data.length;
  }

  /**
   * Ends the upload in one request, sent as soon as every chunk batch has left (not after their answers: the
   * server waits for them): the server checks the chunks it newly stored and, when all pass, stores `files` and
   * commits `manifest`; returns [] then. Otherwise returns the failed chunks (moved aside) and commits nothing:
   * send them again (insertChunk) and finish again.
   */
  async finish(files: ReadonlyArray<{ file: ManifestFile; data: Buffer }>, manifest: Manifest): Promise<string[]> {
    // Batches that ask first may be skipped whole: then the server cannot count them, and this waits for all.
    if (this.#askKnown) await this.flush();
    else void this.#send();
    const after = this.#askKnown ? 0 : this.#seq;
    while (this.#unsent.size > 0) await Promise.all([...this.#unsent]);
    if (this.#failure) throw this.#failure;
    const head = Buffer.from(JSON.stringify({ after, manifest, files: files.map((f) => fileParams(f.file)) }));
    const r = await this.#client.requestBinary<{ bad: string[]; snapshot?: string }>(`/backup/${this.#session}/finish`, { head: head.length }, [head, ...files.map((f) => f.data)]);
    this.sentBytes += head.length + files.reduce((n, f) => n + f.data.length, 0);
    if (r.bad.length > 0) return r.bad;
    if (r.snapshot !== formatSnapshot(this.ref)) throw new IbsError('INTERNAL', `Server committed ${r.snapshot}, expected ${formatSnapshot(this.ref)}`);
    return [];
  }

  async commit(manifest: Manifest): Promise<void> {
    await this.flush();
    const r = await this.#client.request<{ snapshot: string }>('POST', `/backup/${this.#session}/commit`, { manifest });
    if (r.snapshot !== formatSnapshot(this.ref)) throw new IbsError('INTERNAL', `Server committed ${r.snapshot}, expected ${formatSnapshot(this.ref)}`);
  }

  async abort(): Promise<void> {
    await this.#client.request('POST', `/backup/${this.#session}/abort`).catch(() => {});
  }
}

/** A snapshot file as the upload API names its fields. */
function fileParams(file: ManifestFile): Record<string, unknown> {
  return { filename: file.filename, size: file.size, csum: file.csum, 'crypt-mode': file.cryptMode, 'archive-size': file.archiveSize, 'source-stamp': file.sourceStamp };
}
