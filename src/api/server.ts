import { createSecureServer, type Http2SecureServer, type Http2ServerRequest, type Http2ServerResponse } from 'node:http2';
import type { AddressInfo } from 'node:net';
import type { AppContext, BackupSessions, ReaderSessions, TaskManager } from '../app/index.ts';
import { IbsError, SUPERUSER, requirePrivilege, toIbsError, type AclEntry } from '../core/index.ts';
import { createServer as createHttpServer, type IncomingMessage, type Server as HttpServer, type ServerResponse } from 'node:http';
import { chmod, rm } from 'node:fs/promises';
import { SchemaError, schemaToJson, validate } from '../lib/index.ts';
import type { ApiRequest, Route } from './route.ts';
import { CSRF_HEADER, TICKET_COOKIE, TICKET_LIFETIME_S, checkCsrf, cookieValue, issueTicket, verifyTicket } from './ticket.ts';

export const API_PREFIX = '/api2/json';
const AUTH_RE = /^IBSAPIToken=([^\s:]+):(\S+)$/;

export interface ApiAuth {
  verifyToken(tokenid: string, secret: string): Promise<boolean>;
  verifyPassword(userid: string, password: string): Promise<boolean>;
  /** False for users that are gone, disabled or expired (tickets are checked against it). */
  userActive(userid: string): Promise<boolean>;
  acl(): Promise<AclEntry[]>;
}

export interface ApiServerOptions {
  routes: Route[];
  auth: ApiAuth;
  tasks: TaskManager;
  backups: BackupSessions;
  readers: ReaderSessions;
  /** Starts a configured scheduled job now (sync run); absent where no scheduler runs. */
  runJob?: (jobId: string) => Promise<string>;
  makeContext(authId: string, signal: AbortSignal): AppContext;
  /** Signs login tickets; without it, ticket login is off. */
  ticketKey?: Buffer;
  log?: (level: 'info' | 'warn' | 'error', msg: string, fields?: Record<string, unknown>) => void;
  maxBodyBytes?: number;
}

export interface ApiResponse {
  status: number;
  body: unknown;
  /** Set instead of a JSON body for binary responses. */
  binary?: Buffer;
  setCookie?: string;
}

interface Compiled {
  route: Route;
  re: RegExp;
  params: string[];
}

function compile(route: Route): Compiled {
  const params: string[] = [];
  const re = new RegExp(
    `^${route.path.replace(/[.*+?^$()|[\]\\]/g, '\\$&').replace(/\\?\{(\w[\w-]*)\\?\}/g, (_m, name: string) => {
      params.push(name);
      return '([^/]+)';
    })}$`,
  );
  return { route, re, params };
}

/**
 * The API dispatcher: matches a route, authenticates the API token, checks the route's privilege, validates
 * the input against its schema, runs the handler and maps errors to statuses from the error table. The
 * same function serves HTTPS requests and in-process tests (`dispatch`), so both see the same checks.
 */
export class ApiDispatcher {
  readonly #routes: Compiled[];
  readonly #options: ApiServerOptions;

  constructor(options: ApiServerOptions) {
    this.#options = options;
    this.#routes = options.routes.map(compile);
  }

  /** The body limit of the route a request goes to (checked before the body is read). */
  bodyLimit(method: string, url: string): number {
    const path = new URL(url, 'https://localhost').pathname.slice(API_PREFIX.length);
    const hit = this.#routes.find((c) => c.route.method === method && c.re.test(path));
    return hit?.route.maxBodyBytes ?? this.#options.maxBodyBytes ?? 1024 * 1024;
  }

  openApi(): Record<string, unknown> {
    const paths: Record<string, Record<string, unknown>> = {};
    for (const { route } of this.#routes) {
      paths[`${API_PREFIX}${route.path}`] ??= {};
      (paths[`${API_PREFIX}${route.path}`] as Record<string, unknown>)[route.method.toLowerCase()] = {
        summary: route.summary,
        'x-permission': route.permission.kind === 'privilege' ? { privileges: route.permission.privileges } : route.permission,
        'x-input': schemaToJson(route.input),
        responses: { 200: { content: { 'application/json': { schema: { type: 'object', properties: { data: schemaToJson(route.output) } } } } } },
      };
    }
    return { openapi: '3.1.0', info: { title: 'ironcore-backup API', version: '1' }, paths };
  }

  /**
   * Handles one request. `trustedAuthId` is for the local admin socket only (its callers are authenticated by
   * the socket's file permissions): it replaces token authentication.
   */
  /** POST /access/ticket {username, password}: a login ticket (also set as a cookie) and its CSRF token. */
  async #login(text: string): Promise<ApiResponse> {
    const key = this.#options.ticketKey;
    if (!key) return { status: 404, body: { message: 'Ticket login is not enabled on this server' } };
    let input: { username?: unknown; password?: unknown };
    try {
      input = JSON.parse(text) as typeof input;
    } catch {
      return { status: 400, body: { message: 'The request body is not JSON: expected {"username": "user@realm", "password": "…"}' } };
    }
    if (typeof input.username !== 'string' || typeof input.password !== 'string' || input.username.includes('!')) {
      return { status: 400, body: { message: 'Expected {"username": "user@realm", "password": "…"}' } };
    }
    if (!(await this.#options.auth.verifyPassword(input.username, input.password))) {
      this.#options.log?.('warn', 'login failed', { user: input.username });
      return { status: 401, body: { message: 'Login failed: wrong user name or password, or the user is disabled' } };
    }
    const { ticket, csrf } = issueTicket(key, input.username);
    return { status: 200, body: { data: { username: input.username, ticket, CSRFPreventionToken: csrf } }, setCookie: `${TICKET_COOKIE}=${encodeURIComponent(ticket)}; Path=/; Secure; HttpOnly; SameSite=Strict; Max-Age=${TICKET_LIFETIME_S}` };
  }

  /** `rawBody` may come as the pieces it arrived in: binary routes take them as they are (no copy into one buffer). */
  async dispatch(method: string, url: string, headers: Record<string, string | string[] | undefined>, rawBody: string | Buffer | readonly Buffer[], signal: AbortSignal, trustedAuthId?: string): Promise<ApiResponse> {
    const pieces = typeof rawBody === 'string' ? [Buffer.from(rawBody)] : Buffer.isBuffer(rawBody) ? [rawBody] : rawBody;
    const body = typeof rawBody === 'string' ? rawBody : undefined;
    const asText = (): string => body ?? Buffer.concat(pieces).toString('utf8');
    try {
      const parsed = new URL(url, 'https://localhost');
      if (!parsed.pathname.startsWith(API_PREFIX)) throw new IbsError('NOT_FOUND', `No such API path ${parsed.pathname}: the API lives under ${API_PREFIX}`);
      const path = parsed.pathname.slice(API_PREFIX.length) || '/';
      if (method === 'GET' && path === '/openapi') return { status: 200, body: { data: this.openApi() } };
      if (method === 'POST' && path === '/access/ticket') return await this.#login(asText());
      const candidates = this.#routes.map((c) => ({ c, m: c.re.exec(path) })).filter((x) => x.m);
      if (candidates.length === 0) throw new IbsError('NOT_FOUND', `No such API path ${path}`);
      const hit = candidates.find((x) => x.c.route.method === method);
      if (!hit || !hit.m) return { status: 405, body: { message: `Method ${method} not allowed on ${path}; allowed: ${candidates.map((x) => x.c.route.method).join(', ')}` } };
      const { route, params } = hit.c;
      // Authentication before anything else is parsed.
      let authId: string | undefined = trustedAuthId;
      if (route.permission.kind !== 'public' && authId === undefined) {
        const header = headers.authorization;
        const m = typeof header === 'string' ? AUTH_RE.exec(header) : null;
        const ticket = cookieValue(headers.cookie, TICKET_COOKIE);
        const key = this.#options.ticketKey;
        if (m) {
          if (await this.#options.auth.verifyToken(m[1] as string, m[2] as string)) authId = m[1] as string;
        } else if (ticket !== undefined && key) {
          const user = verifyTicket(key, ticket);
          if (user && (await this.#options.auth.userActive(user))) {
            if (method !== 'GET' && !checkCsrf(key, ticket, headers[CSRF_HEADER] as string | undefined)) {
              return { status: 401, body: { message: 'A write with a login ticket needs the CSRFPreventionToken header returned at login' } };
            }
            authId = user;
          }
        }
        if (authId === undefined) {
          return { status: 401, body: { message: 'Authentication failed: expected header Authorization: IBSAPIToken=user@realm!token:SECRET with a valid token, or a valid login ticket' } };
        }
      }
      let raw: Record<string, unknown> = {};
      const binary = route.body === 'binary';
      const text = binary ? '' : asText();
      if ((method === 'POST' || method === 'PUT') && !binary) {
        if (text.trim() !== '') {
          let parsedBody: unknown;
          try {
            parsedBody = JSON.parse(text);
          } catch {
            throw new IbsError('INVALID_ARGUMENT', 'The request body is not JSON: expected a JSON object');
          }
          if (parsedBody === null || typeof parsedBody !== 'object' || Array.isArray(parsedBody)) {
            throw new IbsError('INVALID_ARGUMENT', `The request body is ${parsedBody === null ? 'null' : Array.isArray(parsedBody) ? 'a list' : `a ${typeof parsedBody}`}: expected a JSON object`);
          }
          raw = parsedBody as Record<string, unknown>;
        }
      }
      if (method === 'GET' || method === 'DELETE' || binary) {
        for (const [k, v] of parsed.searchParams) raw[k] = raw[k] === undefined ? v : ([] as string[]).concat(raw[k] as string, v);
      }
      params.forEach((name, i) => {
        const value = hit.m?.[i + 1] ?? '';
        try {
          raw[name] = decodeURIComponent(value);
        } catch {
          throw new IbsError('INVALID_ARGUMENT', `Invalid ${name} "${value.slice(0, 100)}" in the path: malformed %-escape`);
        }
      });
      let input: Record<string, unknown>;
      try {
        input = validate(route.input, raw, 'input', method === 'GET' || method === 'DELETE' || binary) as Record<string, unknown>;
      } catch (error) {
        if (error instanceof SchemaError) return { status: 400, body: { message: error.message, errors: { [error.field]: error.message } } };
        throw error;
      }
      const acl = authId !== undefined ? await this.#options.auth.acl() : [];
      if (route.permission.kind === 'privilege' && authId !== undefined) requirePrivilege(acl, authId, route.permission.path(input), ...route.permission.privileges);
      const request: ApiRequest = {
        authId: authId ?? '',
        acl,
        ctx: this.#options.makeContext(authId ?? '', signal),
        tasks: this.#options.tasks,
        backups: this.#options.backups,
        readers: this.#options.readers,
        ...(this.#options.runJob ? { runJob: this.#options.runJob } : {}),
        signal,
        ...(binary ? { body: pieces } : {}),
      };
      const data = await route.handler(request, input);
      if (route.response === 'binary') return { status: 200, body: null, binary: data as Buffer };
      return { status: 200, body: { data: data ?? null } };
    } catch (error) {
      const e = toIbsError(error);
      if (e.code === 'INTERNAL') this.#options.log?.('error', 'internal error', { url, message: e.message, stack: (error as Error).stack });
      return { status: e.httpStatus, body: { message: e.message, code: e.code } };
    }
  }
}

/**
 * The HTTPS API server: TLS 1.3 only, HTTP/2 with HTTP/1.1 fallback, JSON bodies up to `maxBodyBytes`.
 */
export function createApiServer(options: ApiServerOptions & { key: string | Buffer; cert: string | Buffer }): {
  server: Http2SecureServer;
  dispatcher: ApiDispatcher;
  listen(host: string, port: number): Promise<number>;
  /** The local admin socket (0600): its callers act as root@pam, authenticated by file permissions. */
  listenAdminSocket(path: string): Promise<void>;
  close(): Promise<void>;
} {
  const dispatcher = new ApiDispatcher(options);
  // Chunk batches of up to 64 MiB, several in flight: the default 10 MB per session is far too small, and larger
  // flow-control windows keep a link with latency full.
  const server = createSecureServer({ key: options.key, cert: options.cert, allowHTTP1: true, minVersion: 'TLSv1.3', maxVersion: 'TLSv1.3', maxSessionMemory: 512, settings: { initialWindowSize: 8 * 1024 * 1024 } });
  server.on('session', (session) => session.on('connect', () => session.setLocalWindowSize(64 * 1024 * 1024)));
  const handle = (req: Http2ServerRequest | IncomingMessage, response: Http2ServerResponse | ServerResponse, trustedAuthId?: string): void => {
    // Both response kinds share this subset; the union of their overloads is not callable as such.
    const res = response as unknown as { writeHead(status: number, headers: Record<string, string | number>): void; end(data: string | Buffer): void; destroy(): void };
    const controller = new AbortController();
    // The client went away when the response closes before it was ended. Not the request's 'close': over
    // HTTP/1.1 (the admin socket) that comes as soon as the body has been read, and aborted every request
    // through the socket whose handler looks at its signal (the datastores of "GET /admin/verify" read
    // "client went away").
    response.on('close', () => {
      if (!response.writableEnded) controller.abort(new IbsError('ABORTED', 'client went away'));
    });
    const pieces: Buffer[] = [];
    let size = 0;
    let refused = false;
    const limit = dispatcher.bodyLimit(req.method ?? 'GET', req.url ?? '/');
    req.on('data', (d: Buffer) => {
      size += d.length;
      if (size > limit) {
        if (!refused) {
          refused = true;
          res.writeHead(413, { 'content-type': 'application/json' });
          res.end(JSON.stringify({ message: `Request body larger than ${limit} bytes` }));
        }
        return;
      }
      pieces.push(d);
    });
    req.on('end', () => {
      if (refused) return;
      const started = Date.now();
      dispatcher
        .dispatch(req.method ?? 'GET', req.url ?? '/', req.headers, pieces, controller.signal, trustedAuthId)
        .then((response) => {
          options.log?.('info', 'request', { method: req.method, path: (req.url ?? '').split('?')[0], status: response.status, ms: Date.now() - started, proto: trustedAuthId ? 'admin-socket' : req.httpVersion });
          if (response.binary) {
            res.writeHead(response.status, { 'content-type': 'application/octet-stream', 'content-length': response.binary.length });
            res.end(response.binary);
            return;
          }
          const text = JSON.stringify(response.body);
          res.writeHead(response.status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text), ...(response.setCookie ? { 'set-cookie': response.setCookie } : {}) });
          res.end(text);
        })
        .catch(() => res.destroy());
    });
  };
  server.on('request', (req: Http2ServerRequest, res: Http2ServerResponse) => handle(req, res));
  let admin: HttpServer | undefined;
  return {
    server,
    dispatcher,
    listenAdminSocket: async (path) => {
      await rm(path, { force: true });
      admin = createHttpServer((req, res) => handle(req, res, SUPERUSER));
      await new Promise<void>((resolve, reject) => {
        admin?.once('error', reject);
        admin?.listen(path, () => resolve());
      });
      await chmod(path, 0o600);
    },
    listen: (host, port) =>
      new Promise((resolve, reject) => {
        server.once('error', reject);
        server.listen(port, host, () => {
          server.off('error', reject);
          resolve((server.address() as AddressInfo).port);
        });
      }),
    close: () =>
      new Promise((resolve) => {
        admin?.close();
        server.close(() => resolve());
        // Active HTTP/2 sessions would keep close() waiting.
        setTimeout(() => resolve(), 2000).unref();
      }),
  };
}
