import { IbsError } from '../core/index.ts';
import { apiPath, decodeApiResponse } from './api-client.ts';

/**
 * Client of the server's local admin socket (`api.sock` in the state directory): the same API, as root@pam,
 * for the administrator on the server machine. Reaching it requires file access to the socket.
 */
export class LocalApiClient {
  readonly #socketPath: string;

  constructor(socketPath: string) {
    this.#socketPath = socketPath;
  }

  async request<T = unknown>(method: 'GET' | 'POST' | 'PUT' | 'DELETE', path: string, params: Record<string, unknown> = {}): Promise<T> {
    const query = method === 'GET' || method === 'DELETE';
    const fullPath = apiPath(path, query ? params : {});
    const body = query ? undefined : JSON.stringify(params);
    // Loaded on first use: importing node:http as a module loads node:http2 too (20-24 ms), and most commands
    // never call the server.
    const { request } = await import('node:http');
    return new Promise((resolve, reject) => {
      const req = request({ socketPath: this.#socketPath, path: fullPath, method, headers: body !== undefined ? { 'content-type': 'application/json' } : {} }, (res) => {
        const pieces: Buffer[] = [];
        res.on('data', (d: Buffer) => pieces.push(d));
        res.on('end', () => {
          try {
            resolve(decodeApiResponse<T>(res.statusCode ?? 0, Buffer.concat(pieces).toString('utf8'), `${method} ${path}`));
          } catch (error) {
            reject(error);
          }
        });
      });
      req.on('error', (error: NodeJS.ErrnoException) =>
        reject(
          error.code === 'ENOENT' || error.code === 'ECONNREFUSED'
            ? new IbsError('UNAVAILABLE', `The server is not running (no admin socket at ${this.#socketPath}): start it with "ironcore-backup server"`, { details: { serverRunning: false } })
            : error.code === 'ECONNRESET' || error.code === 'EPIPE'
              ? new IbsError('UNAVAILABLE', `The server closed the admin connection (${error.code}): it stopped or restarted; see "task list" for the task's result`)
              : error.code === 'EACCES'
              ? new IbsError('PERMISSION_DENIED', `No access to the admin socket ${this.#socketPath}: run as the user the server runs as`)
              : error,
        ),
      );
      req.end(body);
    });
  }
}
