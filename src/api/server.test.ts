import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { request as httpRequest, type ClientRequest, type IncomingMessage } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { connect } from 'node:http2';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ensureCertificate } from '../app/certificate.ts';
import type { AppContext } from '../app/index.ts';
import type { Route } from './route.ts';
import { createApiServer } from './server.ts';

/**
 * A request's signal aborts when its client goes away before the answer, over HTTP/2 and over HTTP/1.1 (the
 * admin socket, scripts over HTTPS), and not otherwise: over HTTP/1.1 the request's own 'close' comes once its
 * body has been read, which used to abort every such request whose handler looked at its signal.
 */
test('a request is aborted when its client goes away before the answer, and only then (HTTP/2, HTTP/1.1, the admin socket)', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'ibs-api-server-'));
  const outcomes: string[] = [];
  const slow: Route = {
    method: 'GET',
    path: '/slow',
    summary: 'waits 300 ms unless aborted',
    input: { type: 'object', properties: {} },
    output: { type: 'string' },
    permission: { kind: 'public' },
    handler: async (req) =>
      new Promise<string>((resolve) => {
        // Aborted already (as the admin socket's requests were once their body was read): no event follows.
        if (req.signal.aborted) {
          outcomes.push(`aborted at once: ${(req.signal.reason as Error).message}`);
          resolve('aborted');
          return;
        }
        const timer = setTimeout(() => {
          outcomes.push('done');
          resolve('done');
        }, 300);
        req.signal.addEventListener('abort', () => {
          clearTimeout(timer);
          outcomes.push(`aborted: ${(req.signal.reason as Error).message}`);
          resolve('aborted');
        });
      }),
  };
  const { key, cert } = await ensureCertificate(join(dir, 'etc'));
  const api = createApiServer({
    routes: [slow],
    auth: { verifyToken: async () => false, verifyPassword: async () => false, userActive: async () => false, acl: async () => [] },
    tasks: {} as never,
    backups: {} as never,
    readers: {} as never,
    makeContext: () => ({}) as AppContext,
    key,
    cert,
  });
  const socket = join(dir, 'api.sock');
  try {
    await api.listenAdminSocket(socket);
    const port = await api.listen('127.0.0.1', 0);
    /** The body of an HTTP/1.1 request made by `start` (given the response callback), once it has ended. */
    const answer = (start: (done: (res: IncomingMessage) => void) => ClientRequest): Promise<string> =>
      new Promise((resolve, reject) => {
        const r = start((res) => {
          let text = '';
          res.on('data', (d: Buffer) => (text += d.toString()));
          res.on('end', () => resolve(text));
        });
        r.on('error', reject);
        r.end();
      });
    const outcome = async (): Promise<string> => {
      for (let i = 0; i < 100 && outcomes.length === 0; i++) await new Promise((r) => setTimeout(r, 20));
      return outcomes.shift() ?? 'nothing';
    };

    // Admin socket, client waits: the answer comes.
    const body = await answer((done) => httpRequest({ socketPath: socket, path: '/api2/json/slow', method: 'GET' }, done));
    assert.deepEqual(JSON.parse(body), { data: 'done' });
    assert.equal(await outcome(), 'done');

    // Admin socket, client gone after 50 ms: aborted.
    const gone = httpRequest({ socketPath: socket, path: '/api2/json/slow', method: 'GET' });
    gone.on('error', () => {});
    gone.end();
    setTimeout(() => gone.destroy(), 50);
    assert.equal(await outcome(), 'aborted: client went away');

    // HTTPS with HTTP/1.1 (scripts, curl --http1.1), client waits: the answer comes.
    const h1 = await answer((done) => httpsRequest({ host: '127.0.0.1', port, path: '/api2/json/slow', method: 'GET', rejectUnauthorized: false }, done));
    assert.deepEqual(JSON.parse(h1), { data: 'done' });
    assert.equal(await outcome(), 'done');

    // HTTP/2, client waits, then a stream closed after 50 ms.
    const session = connect(`https://127.0.0.1:${port}`, { rejectUnauthorized: false });
    try {
      const h2 = await new Promise<string>((resolve, reject) => {
        const s = session.request({ ':method': 'GET', ':path': '/api2/json/slow' });
        let text = '';
        s.on('data', (d: Buffer) => (text += d.toString()));
        s.on('end', () => resolve(text));
        s.on('error', reject);
      });
      assert.deepEqual(JSON.parse(h2), { data: 'done' });
      assert.equal(await outcome(), 'done');
      const s = session.request({ ':method': 'GET', ':path': '/api2/json/slow' });
      s.on('error', () => {});
      setTimeout(() => s.close(), 50);
      assert.equal(await outcome(), 'aborted: client went away');
    } finally {
      session.close();
    }
  } finally {
    await api.close();
    await rm(dir, { recursive: true, force: true });
  }
});
