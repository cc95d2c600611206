import { readFile } from 'node:fs/promises';
import { ApiClient } from '../client/index.ts';
import { IbsError, parseAuthId, parseFingerprint, parseStoreName } from '../core/index.ts';

export interface Repository {
  authId: string;
  host: string;
  port: number;
  store: string;
}

/** Parses `user@realm!token@host[:port]:store` (IPv6 hosts in brackets). */
export function parseRepository(value: string): Repository {
  const bad = (): IbsError => new IbsError('INVALID_ARGUMENT', `Invalid repository "${value}": expected user@realm!token@host[:port]:store, such as backup@ibs!client@10.0.0.5:8007:store1`);
  const at = value.lastIndexOf('@');
  if (at <= 0) throw bad();
  const authId = value.slice(0, at);
  const rest = value.slice(at + 1);
  const m = /^(\[[0-9a-fA-F:]+\]|[A-Za-z0-9.-]+)(?::(\d{1,5}))?:([^:]+)$/.exec(rest);
  if (!m) throw bad();
  try {
    parseAuthId(authId);
    parseStoreName(m[3] as string);
  } catch (error) {
    throw new IbsError('INVALID_ARGUMENT', `Invalid repository "${value}": ${(error as Error).message}`);
  }
  const port = m[2] !== undefined ? Number(m[2]) : 8007;
  if (port < 1 || port > 65535) throw bad();
  return { authId, host: (m[1] as string).replace(/^\[|\]$/g, ''), port, store: m[3] as string };
}

/** Connects to the server of a repository: the fingerprint pins its certificate; the secret is the token's. */
export async function connectRepository(input: { repository: string; fingerprint: string | undefined; secretFile?: string | undefined; secret?: string | undefined }): Promise<{ client: ApiClient; repository: Repository }> {
  const repository = parseRepository(input.repository);
  if (!input.fingerprint) throw new IbsError('INVALID_ARGUMENT', 'Missing --fingerprint (or IBS_FINGERPRINT): the server certificate fingerprint, as "cert info" prints it on the server');
  const fingerprint = parseFingerprint(input.fingerprint);
  let secret = input.secret;
  if (input.secretFile !== undefined) {
    secret = (await readFile(input.secretFile, 'utf8').catch((e: Error) => {
      throw new IbsError('NOT_FOUND', `Cannot read secret file "${input.secretFile}": ${e.message}`);
    })).trim();
  }
  if (!secret) throw new IbsError('INVALID_ARGUMENT', 'Missing token secret: pass --secret-file or set IBS_SECRET');
  const client = await ApiClient.connect({ host: repository.host, port: repository.port, fingerprint, authId: repository.authId, secret });
  return { client, repository };
}
