import type { ClientHttp2Session, ClientHttp2Stream } from 'node:http2';
import { isIP } from 'node:net';
import { connect as tlsConnect, type TLSSocket } from 'node:tls';
import { once } from 'node:events';
import { IbsError, parseFingerprint, type ErrorCode, ERROR_CODES } from '../core/index.ts';
import { LinkPace } from './link-pace.ts';

export interface ApiClientOptions {
  host: string;
  port: number;
  /** The server certificate's SHA-256 fingerprint, colon-separated hex: the only identity we accept. */
  fingerprint: string;
  authId: string;
  secret: string;
  timeoutMs?: number;
  /** A request with no data moving for this long fails as UNAVAILABLE (default 60 s): a stalled link is not waited on forever. */
  idleTimeoutMs?: number;
}

/** `/api2/json` + path, with `query` (undefined values left out) as the query string. */
export function apiPath(path: string, query: Record<string, unknown> = {}): string {
  const params = new URLSearchParams();
  for (const [k, v] of Object.entries(query)) if (v !== undefined) params.append(k, String(v));
  const text = params.toString();
  return `/api2/json${path}${text ? `?${text}` : ''}`;
}

/** Runs one request; connection and stream failures become UNAVAILABLE (transient) errors saying what failed. */
async function transport<T>(what: string, fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (error) {
    if (error instanceof IbsError) throw error;
    const code = (error as NodeJS.ErrnoException).code;
    throw new IbsError('UNAVAILABLE', `${what}: connection to the server failed (${code ?? (error as Error).message})`, { cause: error });
  }
}

/**
 * Waits for a stream's response and reads its body. A stream that closes before answering, or is reset
 * mid-body (the peer died, the link was cut), fails as UNAVAILABLE instead of hanging or yielding a
 * truncated body.
 */
async function exchange(stream: ClientHttp2Stream, what: string): Promise<{ status: number; pieces: Buffer[] }> {
  const headers = await new Promise<Record<string, string | number>>((resolve, reject) => {
    let answered = false;
    stream.once('response', (h: Record<string, string | number>) => {
      answered = true;
      resolve(h);
    });
    stream.once('error', reject);
    // Every stream closes in the end: the error (and its stack) is made only when no answer came before.
    stream.once('close', () => {
      if (!answered) reject(new IbsError('UNAVAILABLE', `${what}: the connection closed before the server answered`));
    });
  });
  const pieces: Buffer[] = [];
  for await (const piece of stream) pieces.push(piece as Buffer);
  if (stream.rstCode !== undefined && stream.rstCode !== 0) throw new IbsError('UNAVAILABLE', `${what}: the transfer was reset (HTTP/2 code ${stream.rstCode})`);
  return { status: Number(headers[':status']), pieces };
}

/** The `data` of an API response, or an IbsError with the server's code and message. */
export function decodeApiResponse<T>(status: number, text: string, what: string): T {
  let parsed: { data?: T; message?: string; code?: string };
  try {
    parsed = JSON.parse(text) as typeof parsed;
  } catch {
    throw new IbsError('UNAVAILABLE', `${what}: HTTP ${status} with a body that is not JSON`);
  }
  if (status !== 200) {
    const code: ErrorCode = parsed.code && parsed.code in ERROR_CODES ? (parsed.code as ErrorCode) : status === 401 ? 'UNAUTHENTICATED' : status === 400 ? 'INVALID_ARGUMENT' : 'UNAVAILABLE';
    throw new IbsError(code, parsed.message ?? `${what}: HTTP ${status}`, { details: { status } });
  }
  return parsed.data as T;
}

async function openSession(options: ApiClientOptions): Promise<{ session: ClientHttp2Session; tls: { version: string; fingerprint: string } }> {
  const expected = parseFingerprint(options.fingerprint);
  const where = `${options.host}:${options.port}`;
  const socket: TLSSocket = tlsConnect({
    host: options.host,
    port: options.port,
    ...(isIP(options.host) ? {} : { servername: options.host }),
    rejectUnauthorized: false, // identity is the pinned fingerprint, checked below
    minVersion: 'TLSv1.3',
    ALPNProtocols: ['h2'],
  });
  const timer = setTimeout(() => socket.destroy(new IbsError('UNAVAILABLE', `Connecting to ${where} timed out`)), options.timeoutMs ?? 15_000);
  try {
    await once(socket, 'secureConnect');
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    throw new IbsError('UNAVAILABLE', `Cannot reach ${where}: ${code ?? (error as Error).message}`, { cause: error });
  } finally {
    clearTimeout(timer);
  }
  const actual = (socket.getPeerCertificate().fingerprint256 ?? '').toLowerCase();
  if (actual !== expected) {
    socket.destroy();
    throw new IbsError(
      'CERT_MISMATCH',
      `Refusing ${where}: its certificate fingerprint is ${actual}, but the registered fingerprint is ${expected}. ` +
        'If the certificate was renewed, verify the new fingerprint out of band, then update the registration ' +
        '(ironcore-backup remote update --name NAME --fingerprint "NEW"). It is never accepted automatically.',
    );
  }
  const tls = { version: socket.getProtocol() ?? '', fingerprint: actual };
  // Loaded here, not with the module: node:http2 takes 20-24 ms to load (67 ms with a cold cache), which every
  // command paid though only those that reach a remote use it.
  const { connect: http2Connect } = await import('node:http2');
  const session = http2Connect(`https://${where}`, { createConnection: () => socket, maxSessionMemory: 512, settings: { initialWindowSize: 8 * 1024 * 1024 } });
  session.on('connect', () => session.setLocalWindowSize(64 * 1024 * 1024));
  session.on('error', () => {});
  return { session, tls };
}

/**
 * HTTPS client of the API: TLS 1.3, HTTP/2, API token auth. The server is identified only by its pinned
 * certificate fingerprint, checked on the TLS socket before HTTP/2 starts, so no request (and no token) is
 * ever sent to a server that does not match; a mismatch is refused with both fingerprints in the message.
 */
export class ApiClient {
  #session: ClientHttp2Session;
  #reconnecting: Promise<{ session: ClientHttp2Session }> | undefined;
  readonly #options: ApiClientOptions;
  readonly tls: { version: string; fingerprint: string };

  /** The link's round trip, from an HTTP/2 ping when the session opened (0 until answered). */
  #roundTripMs = 0;

  private constructor(session: ClientHttp2Session, options: ApiClientOptions, tls: { version: string; fingerprint: string }) {
    this.#session = session;
    this.#options = options;
    this.tls = tls;
    this.#measure(session);
  }

  /** Pings a new session once it is up, while the link is idle, for its round trip. */
  #measure(session: ClientHttp2Session): void {
    const ping = (): void => {
      if (!session.closed && !session.destroyed) session.ping((error, ms) => void (error ? undefined : (this.#roundTripMs = ms)));
    };
    if (session.connecting) session.once('connect', ping);
    else ping();
  }

  static async connect(options: ApiClientOptions): Promise<ApiClient> {
    const { session, tls } = await openSession(options);
    return new ApiClient(session, options, tls);
  }

  /** The HTTP/2 session, opened again (fingerprint checked again) when the previous one was lost. */
  async #live(): Promise<ClientHttp2Session> {
    if (this.#session.closed || this.#session.destroyed) {
      this.#session = (await (this.#reconnecting ??= openSession(this.#options).finally(() => (this.#reconnecting = undefined)))).session;
      this.#measure(this.#session);
    }
    return this.#session;
  }

  /** How long a request may see no data before it fails as stalled. */
  get idleTimeoutMs(): number {
    return this.#options.idleTimeoutMs ?? 60_000;
  }

  readonly #paces = new Map<'push' | 'pull', LinkPace>();

  /**
   * The pace of one kind of request over this connection (see LinkPace), made on first use: every snapshot and
   * group using the connection shares it, and the next one starts from what the last one learned.
   */
  pace(kind: 'push' | 'pull', unit: number, max: number): LinkPace {
    let pace = this.#paces.get(kind);
    if (!pace) this.#paces.set(kind, (pace = new LinkPace(this.idleTimeoutMs, unit, max, () => this.#roundTripMs)));
    return pace;
  }

  #watch(stream: ClientHttp2Stream, what: string): void {
    const ms = this.idleTimeoutMs;
    stream.setTimeout(ms, () => {
      stream.destroy(new IbsError('UNAVAILABLE', `${what}: no data from ${this.#options.host}:${this.#options.port} for ${Math.round(ms / 1000)} s (link stalled)`));
      // The whole connection is suspect: the next request opens a new one.
      stream.session?.destroy();
    });
  }

  /**
   * Sends a binary body to a path (below /api2/json) with `query` parameters; returns `data`. The body may be
   * given in pieces, which are written one after another (no copy into one buffer).
   */
  requestBinary<T = unknown>(path: string, query: Record<string, unknown>, body: Uint8Array | readonly Uint8Array[], options: { sent?: () => void } = {}): Promise<T> {
    const pieces = body instanceof Uint8Array ? [body] : body;
    return transport(`POST ${path}`, () => this.#requestBinary<T>(path, query, pieces, options.sent));
  }

  /** `sent` is called once the whole body has left this process (handed to the connection), before the answer. */
  async #requestBinary<T>(path: string, query: Record<string, unknown>, pieces: readonly Uint8Array[], sent?: () => void): Promise<T> {
    const stream = (await this.#live()).request({
      ':method': 'POST',
      ':path': apiPath(path, query),
      authorization: `IBSAPIToken=${this.#options.authId}:${this.#options.secret}`,
      'content-type': 'application/octet-stream',
      'content-length': pieces.reduce((n, p) => n + p.length, 0),
    });
    this.#watch(stream, `POST ${path}`);
    for (const piece of pieces) stream.write(piece);
    stream.end(sent);
    const r = await exchange(stream, `POST ${path}`);
    return decodeApiResponse<T>(r.status, Buffer.concat(r.pieces).toString('utf8'), `POST ${path}`);
  }

  /** GETs a binary response (below /api2/json); errors arrive as JSON and are thrown as IbsError. */
  requestBytes(path: string, query: Record<string, unknown> = {}): Promise<Buffer> {
    return transport(`GET ${path}`, async () => Buffer.concat(await this.#requestBytes('GET', path, query, undefined)));
  }

  /**
   * POSTs JSON and returns a binary response in the pieces it arrived in (batched chunk reads): a caller that
   * splits it into parts of its own need not copy it into one buffer first.
   */
  postForPieces(path: string, params: Record<string, unknown>): Promise<Buffer[]> {
    return transport(`POST ${path}`, () => this.#requestBytes('POST', path, {}, JSON.stringify(params)));
  }

  async #requestBytes(method: 'GET' | 'POST', path: string, query: Record<string, unknown>, body: string | undefined): Promise<Buffer[]> {
    const stream = (await this.#live()).request({
      ':method': method,
      ':path': apiPath(path, query),
      authorization: `IBSAPIToken=${this.#options.authId}:${this.#options.secret}`,
      ...(body !== undefined ? { 'content-type': 'application/json' } : {}),
    });
    this.#watch(stream, `${method} ${path}`);
    stream.end(body);
    const r = await exchange(stream, `${method} ${path}`);
    if (r.status !== 200) decodeApiResponse(r.status, Buffer.concat(r.pieces).toString('utf8'), `${method} ${path}`);
    return r.pieces;
  }

  /** Calls an API path (below /api2/json); returns `data`, or throws IbsError with the server's code. */
  request<T = unknown>(method: 'GET' | 'POST' | 'PUT' | 'DELETE', path: string, params: Record<string, unknown> = {}): Promise<T> {
    return transport(`${method} ${path}`, () => this.#request<T>(method, path, params));
  }

  async #request<T>(method: 'GET' | 'POST' | 'PUT' | 'DELETE', path: string, params: Record<string, unknown>): Promise<T> {
    const query = method === 'GET' || method === 'DELETE';
    const fullPath = apiPath(path, query ? params : {});
    const body = query ? undefined : JSON.stringify(params);
    const stream = (await this.#live()).request({
      ':method': method,
      ':path': fullPath,
      authorization: `IBSAPIToken=${this.#options.authId}:${this.#options.secret}`,
      ...(body !== undefined ? { 'content-type': 'application/json' } : {}),
    });
    this.#watch(stream, `${method} ${path}`);
    if (body !== undefined) stream.end(body);
    else stream.end();
    const r = await exchange(stream, `${method} ${path}`);
    return decodeApiResponse<T>(r.status, Buffer.concat(r.pieces).toString('utf8'), `${method} ${path}`);
  }

  /** Closes the connection after requests in flight; a lost or unresponsive connection is dropped after 2 s. */
  close(): Promise<void> {
    const session = this.#session;
    if (session.closed || session.destroyed) return Promise.resolve();
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        session.destroy();
        resolve();
      }, 2000);
      timer.unref();
      session.close(() => {
        clearTimeout(timer);
        resolve();
      });
    });
  }
}
