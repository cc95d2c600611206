import { ApiClient, CHUNK_BATCH_BYTES, CHUNK_BATCHES_IN_FLIGHT, RemoteSnapshotSink, RemoteSnapshotSource } from '../client/index.ts';
import { IbsError, formatGroup, formatNamespace, formatSnapshot, parseManifest, parseNamespace, parseSnapshot, type GroupRef, type Namespace, type SnapshotRef } from '../core/index.ts';
import { isWhole, mapConcurrent, prefetch, release, retry } from '../lib/index.ts';
import { DEFAULT_CHUNKER } from '../datastore/index.ts';
import { groupKey, type BeginInput, type OpOptions, type SideListing, type SourceSnapshot, type SyncSource, type SyncTarget, type TargetSnapshot } from './types.ts';

/** A listing as the API carries it. */
export interface ListingJson {
  namespaces: string[];
  snapshots: Array<{ ns: string; protected: boolean; manifest: unknown }>;
  owners: Array<{ ns: string; group: string; owner: string }>;
  /** Snapshots whose manifest does not read: only for a caller that asked (`with-damaged`). */
  damaged?: Array<{ ns: string; snapshot: string; reason: string; protected?: boolean }>;
}

/**
 * The listing for the API. Snapshots that do not read go along only when `withDamaged` says the caller knows
 * them; otherwise the listing fails with the first one's error, since a caller that left one out (an older
 * client) would take it for vanished.
 */
export function encodeListing(listing: SideListing, options: { withDamaged?: boolean } = {}): ListingJson {
  const damaged = listing.damaged ?? [];
  const first = damaged[0];
  if (first && !options.withDamaged) throw new IbsError('CORRUPT', first.reason);
  return {
    namespaces: listing.namespaces.map(formatNamespace),
    snapshots: listing.snapshots.map((s) => ({ ns: formatNamespace(s.ref.ns), protected: s.protected, manifest: s.manifest })),
    owners: [...listing.owners].map(([key, owner]) => {
      const [ns, group] = key.split('\0') as [string, string];
      return { ns, group, owner };
    }),
    ...(damaged.length > 0 ? { damaged: damaged.map((d) => ({ ns: formatNamespace(d.ref.ns), snapshot: formatSnapshot({ ...d.ref, ns: [] }), reason: d.reason, ...(d.protected !== undefined ? { protected: d.protected } : {}) })) } : {}),
  };
}

/** Checks a listing received from a server: every name and manifest is validated like data read from storage. */
export function decodeListing(value: unknown, what: string): SideListing {
  const v = value as Partial<ListingJson> | null;
  if (!v || !Array.isArray(v.namespaces) || !Array.isArray(v.snapshots) || !Array.isArray(v.owners)) throw new IbsError('CORRUPT', `${what}: the listing is malformed (expected namespaces, snapshots, owners)`);
  const namespaces = v.namespaces.map((n) => parseNamespace(String(n)));
  const snapshots = v.snapshots.map((s) => {
    const ns = parseNamespace(String(s?.ns ?? ''));
    const manifest = parseManifest(Buffer.from(JSON.stringify(s?.manifest ?? null)), `${what}: a snapshot manifest`);
    const ref: SnapshotRef = { ns, type: manifest.backupType, id: manifest.backupId, time: manifest.backupTime };
    return { ref, manifest, protected: s?.protected === true };
  });
  const owners = new Map<string, string>();
  for (const o of v.owners) {
    const ns = parseNamespace(String(o?.ns ?? ''));
    const m = /^(vm|ct|host)\/(.+)$/.exec(String(o?.group ?? ''));
    if (!m || typeof o?.owner !== 'string') throw new IbsError('CORRUPT', `${what}: malformed owner entry`);
    owners.set(groupKey({ ns, type: m[1] as 'vm', id: m[2] as string }), o.owner);
  }
  const listing: SideListing = { namespaces, snapshots, owners };
  if (v.damaged !== undefined) {
    if (!Array.isArray(v.damaged)) throw new IbsError('CORRUPT', `${what}: the listing is malformed (damaged is not a list)`);
    listing.damaged = v.damaged.map((d) => {
      let ref: SnapshotRef | undefined;
      try {
        if (typeof d?.reason === 'string' && typeof d.snapshot === 'string') ref = parseSnapshot(d.snapshot, parseNamespace(String(d.ns ?? '')));
      } catch {
        // reported below
      }
      if (!ref) throw new IbsError('CORRUPT', `${what}: malformed damaged entry ${JSON.stringify(d).slice(0, 200)}`);
      return { ref, reason: `${what}: ${String(d?.reason).slice(0, 2000)}`, ...(typeof d?.protected === 'boolean' ? { protected: d.protected } : {}) };
    });
  }
  return listing;
}

/** Reads are idempotent: a cut or stalled connection is retried on a new one. */
const RETRY = { attempts: 4, baseDelayMs: 500, maxDelayMs: 5000, retryable: (e: unknown) => e instanceof IbsError && e.code === 'UNAVAILABLE' };
const again = <T>(fn: () => Promise<T>): Promise<T> => retry(fn, RETRY);

/**
 * Chunk reads: requests of at most 4 MiB of plaintext (a blob is at most its plaintext and a header) and 64
 * chunks, up to 16 in flight as the connection's pace allows (client/link-pace.ts), so that at most 64 MiB of
 * bodies are under way whatever the chunk sizes. Chunks of unknown size count as the chunker's largest.
 * Pulling the benchmark's datastore (377 MiB of text chunks and 4 MiB image chunks), two runs each: direct 3.99-4.22 s, peaks 253-279 MB pulling and 229-266 MiB
 * serving; with 50 ms added each way 6.11-6.22 s. Before, 16 chunks per request and 4 in flight (up to 256 MiB
 * with 4 MiB chunks): 4.28-4.96 s, 462 MB and 415-428 MiB; 6.12 s with 50 ms. 8 MiB x 6 used less memory
 * but let too little of the compressible part be under way for the latency (7.33 s).
 */
const CHUNKS_PER_REQUEST = 64;

/** `digests` in order, in batches of at most `maxBytes` by `sizeOf` (unknown: the largest chunk) and `maxCount`; at least one each. */
export function batchBySize(digests: readonly string[], sizeOf: ((digest: string) => number | undefined) | undefined, maxBytes: number, maxCount: number): string[][] {
  const batches: string[][] = [];
  let batch: string[] = [];
  let bytes = 0;
  for (const d of digests) {
    const size = sizeOf?.(d) ?? DEFAULT_CHUNKER.max;
    if (batch.length > 0 && (bytes + size > maxBytes || batch.length >= maxCount)) {
      batches.push(batch);
      batch = [];
      bytes = 0;
    }
    batch.push(d);
    bytes += size;
  }
  if (batch.length > 0) batches.push(batch);
  return batches;
}
const KNOWN_BATCH = 4096;

/** A datastore on another server, reached through the API with a pinned certificate and an API token. */
export class RemoteSide implements SyncSource, SyncTarget {
  readonly label: string;
  readonly client: ApiClient;
  readonly store: string;

  constructor(client: ApiClient, store: string, label: string) {
    this.client = client;
    this.store = store;
    this.label = label;
  }

  #path(rest: string): string {
    return `/admin/datastore/${encodeURIComponent(this.store)}${rest}`;
  }

  async list(root: Namespace, maxDepth: number | undefined): Promise<SideListing> {
    const ask = (withDamaged: boolean): Promise<unknown> =>
      again(() => this.client.request<unknown>('GET', this.#path('/sync-listing'), { ns: formatNamespace(root), 'max-depth': maxDepth, ...(withDamaged ? { 'with-damaged': true } : {}) }));
    let json: unknown;
    try {
      json = await ask(true);
    } catch (error) {
      // A server from before unreadable snapshots were listed refuses the parameter; its listing then fails
      // on such a snapshot instead, which is safe.
      if (!(error instanceof IbsError && error.code === 'INVALID_ARGUMENT' && error.message.includes('with-damaged'))) throw error;
      json = await ask(false);
    }
    return decodeListing(json, this.label);
  }

  async open(ref: SnapshotRef): Promise<SourceSnapshot> {
    const source = await again(() => RemoteSnapshotSource.open(this.client, { store: this.store, ref }));
    return {
      manifest: source.manifest,
      readFile: (filename) => again(() => source.readFile(filename)),
      chunkBlobs: async function* (digests, options = {}) {
        // The source's pace decides how many of these are under way on a slow link.
        const batches = batchBySize(digests, options.sizeOf, CHUNK_BATCH_BYTES, CHUNKS_PER_REQUEST);
        for await (const frames of prefetch(batches, CHUNK_BATCHES_IN_FLIGHT, (b) => again(() => source.chunkBatch(b)))) yield* frames;
      },
      close: () => source.close(),
    };
  }

  async createNamespace(ns: Namespace): Promise<void> {
    if (ns.length === 0) return;
    await this.client.request('POST', this.#path('/namespace'), { ns: formatNamespace(ns), parents: true });
  }

  async begin(ref: SnapshotRef, input: BeginInput): Promise<TargetSnapshot> {
    // The engine asks which chunks the target has before sending, so batches go without asking again. The first
    // of those questions travels with the request that opens the session.
    const first = input.chunks?.slice(0, KNOWN_BATCH);
    const sink = await RemoteSnapshotSink.start(this.client, { store: this.store, ref, keyFingerprint: input.keyFingerprint ?? undefined, askKnown: false, amend: input.amend === true, ...(first ? { digests: first } : {}) });
    const answered = new Set(sink.present ? first : []);
    return {
      present: async (digests) => {
        // The previous snapshot's chunks are known from the start, and those asked about at opening are
        // answered; the server is asked about the rest.
        const out = new Set(digests.filter((d) => sink.known.has(d) || sink.present?.has(d)));
        const ask = digests.filter((d) => !out.has(d) && !answered.has(d));
        const batches: string[][] = [];
        for (let i = 0; i < ask.length; i += KNOWN_BATCH) batches.push(ask.slice(i, i + KNOWN_BATCH));
        for (const known of await mapConcurrent(batches, 4, (b) => sink.queryKnown(b))) for (const d of known) out.add(d);
        return out;
      },
      insertChunk: async (digest, blob) => {
        await sink.insertChunk(digest, blob);
        // Sent and acknowledged, and the caller gave it up: freed now rather than piling up for the collector
        // (a blob sharing its memory with others, a view into a response body, is left alone).
        if (isWhole(blob)) release(blob);
      },
      window: RemoteSnapshotSink.WINDOW,
      finish: (files, manifest) => sink.finish(files, manifest),
      abort: () => sink.abort(),
    };
  }

  async forget(ref: SnapshotRef): Promise<void> {
    await this.client.request('DELETE', this.#path('/snapshots'), { ns: formatNamespace(ref.ns), snapshot: formatSnapshot({ ...ref, ns: [] }) });
  }

  async removeGroup(group: GroupRef): Promise<void> {
    await this.client.request('DELETE', this.#path('/groups'), { ns: formatNamespace(group.ns), group: formatGroup(group) });
  }

  async removeNamespace(ns: Namespace): Promise<void> {
    await this.client.request('DELETE', this.#path('/namespace'), { ns: formatNamespace(ns) });
  }

  async setNotes(ref: SnapshotRef, notes: string | undefined): Promise<void> {
    await this.client.request('PUT', this.#path('/notes'), { ns: formatNamespace(ref.ns), snapshot: formatSnapshot({ ...ref, ns: [] }), notes: notes ?? '' });
  }

  async checkChunks(digests: readonly string[], _options: OpOptions = {}): Promise<string[]> {
    const bad: string[] = [];
    for (let i = 0; i < digests.length; i += KNOWN_BATCH) {
      const r = await this.client.request<{ bad: string[] }>('POST', this.#path('/check-chunks'), { digests: digests.slice(i, i + KNOWN_BATCH) });
      bad.push(...r.bad);
    }
    return bad;
  }

  close(): Promise<void> {
    return this.client.close();
  }
}
