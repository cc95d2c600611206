/** client: the typed HTTPS API client, with certificate fingerprint pinning (DESIGN invariant 7). */
export { ApiClient, type ApiClientOptions } from './api-client.ts';
