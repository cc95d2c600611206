import { ApiClient, RemoteSnapshotSink, RemoteSnapshotSource } from '../client/index.ts';
import { IbsError, formatGroup, formatNamespace, formatSnapshot, parseManifest, parseNamespace, type GroupRef, type Namespace, type SnapshotRef } from '../core/index.ts';
import { isWhole, mapConcurrent, prefetch, release, retry } from '../lib/index.ts';
import { groupKey, type BeginInput, type OpOptions, type SideListing, type SourceSnapshot, type SyncSource, type SyncTarget, type TargetSnapshot } from './types.ts';

/** A listing as the API carries it. */
export interface ListingJson {
  namespaces: string[];
  snapshots: Array<{ ns: string; protected: boolean; manifest: unknown }>;
  owners: Array<{ ns: string; group: string; owner: string }>;
}

export function encodeListing(listing: SideListing): ListingJson {
  return {
    namespaces: listing.namespaces.map(formatNamespace),
    snapshots: listing.snapshots.map((s) => ({ ns: formatNamespace(s.ref.ns), protected: s.protected, manifest: s.manifest })),
    owners: [...listing.owners].map(([key, owner]) => {
      const [ns, group] = key.split('\0') as [string, string];
      return { ns, group, owner };
    }),
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
  return { namespaces, snapshots, owners };
}

/** Reads are idempotent: a cut or stalled connection is retried on a new one. */
const RETRY = { attempts: 4, baseDelayMs: 500, maxDelayMs: 5000, retryable: (e: unknown) => e instanceof IbsError && e.code === 'UNAVAILABLE' };
const again = <T>(fn: () => Promise<T>): Promise<T> => retry(fn, RETRY);

const CHUNKS_PER_REQUEST = 16;
const REQUESTS_IN_FLIGHT = 4;
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
    const json = await again(() => this.client.request<unknown>('GET', this.#path('/sync-listing'), { ns: formatNamespace(root), 'max-depth': maxDepth }));
    return decodeListing(json, this.label);
  }

  async open(ref: SnapshotRef): Promise<SourceSnapshot> {
    const source = await again(() => RemoteSnapshotSource.open(this.client, { store: this.store, ref }));
    return {
      manifest: source.manifest,
      readFile: (filename) => again(() => source.readFile(filename)),
      chunkBlobs: async function* (digests) {
        const batches: string[][] = [];
        for (let i = 0; i < digests.length; i += CHUNKS_PER_REQUEST) batches.push(digests.slice(i, i + CHUNKS_PER_REQUEST));
        for await (const frames of prefetch(batches, REQUESTS_IN_FLIGHT, (b) => again(() => source.chunkBatch(b)))) yield* frames;
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
