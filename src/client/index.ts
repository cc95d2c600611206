/** client: the typed HTTPS API client, with certificate fingerprint pinning (DESIGN invariant 7), and the local admin-socket client. */
export { ApiClient, decodeApiResponse, type ApiClientOptions } from './api-client.ts';
export { LocalApiClient } from './local-client.ts';
export { RemoteSnapshotSink } from './remote-sink.ts';
export { RemoteSnapshotSource, CHUNK_BATCH_BYTES, CHUNK_BATCHES_IN_FLIGHT } from './remote-source.ts';
export { encodeChunkFrames, parseChunkFrames, FRAME_HEADER } from './frames.ts';
