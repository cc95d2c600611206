import { ApiClient } from '../client/index.ts';
import { IbsError, isIbsError, parseStoreName, toIbsError } from '../core/index.ts';
import type { RemoteConfig } from '../config/index.ts';
import type { AppContext } from './context.ts';

export interface RemoteInput {
  name: string;
  host: string;
  port?: number;
  authId: string;
  secret: string;
  fingerprint: string;
  comment?: string;
}

export async function createRemote(ctx: AppContext, input: RemoteInput): Promise<RemoteConfig> {
  return ctx.remotes.add({ name: input.name, host: input.host, port: input.port ?? 8007, authId: input.authId, fingerprint: input.fingerprint, ...(input.comment ? { comment: input.comment } : {}) }, input.secret);
}

export async function updateRemote(ctx: AppContext, name: string, change: Partial<Omit<RemoteInput, 'name'>>): Promise<RemoteConfig> {
  const { secret, ...rest } = change;
  return ctx.remotes.update(name, rest, secret);
}

export async function removeRemote(ctx: AppContext, name: string): Promise<void> {
  await ctx.remotes.get(name);
  const users = (await ctx.jobs.sync.listStored()).filter((j) => j.remote === name);
  if (users.length > 0) throw new IbsError('BUSY', `Remote "${name}" is used by sync job(s) ${users.map((j) => j.id).join(', ')}: remove or change them first`);
  await ctx.remotes.remove(name);
}

/** Connects to a registered remote: its pinned fingerprint, its API token. */
export async function connectRemote(ctx: AppContext, name: string, options: { idleTimeoutMs?: number } = {}): Promise<{ client: ApiClient; remote: RemoteConfig }> {
  const remote = await ctx.remotes.get(name);
  const secret = await ctx.remotes.secret(name);
  try {
    const idle = options.idleTimeoutMs ?? ctx.linkIdleTimeoutMs;
    const client = await ApiClient.connect({ host: remote.host, port: remote.port, fingerprint: remote.fingerprint, authId: remote.authId, secret, ...(idle !== undefined ? { idleTimeoutMs: idle } : {}) });
    return { client, remote };
  } catch (error) {
    if (isIbsError(error, 'CERT_MISMATCH')) throw new IbsError('CERT_MISMATCH', `Remote "${name}": ${error.message.replace('--name NAME', `--name ${name}`)}`, { cause: error });
    if (isIbsError(error)) throw new IbsError(error.code, `Remote "${name}": ${error.message}`, { cause: error });
    throw error;
  }
}

export interface RemoteTestLine {
  check: string;
  ok: boolean;
  detail: string;
}

/**
 * Checks a remote step by step, one line each: reachable, TLS version, fingerprint, authentication,
 * privileges on the remote store, server version. Stops at the first step that fails (later ones cannot run).
 */
export async function testRemote(ctx: AppContext, input: { name: string; store?: string }): Promise<{ ok: boolean; lines: RemoteTestLine[] }> {
  const remote = await ctx.remotes.get(input.name);
  if (input.store !== undefined) parseStoreName(input.store);
  const lines: RemoteTestLine[] = [];
  const done = (): { ok: boolean; lines: RemoteTestLine[] } => ({ ok: lines.every((l) => l.ok), lines });
  let client: ApiClient;
  try {
    ({ client } = await connectRemote(ctx, input.name));
  } catch (error) {
    const e = toIbsError(error);
    if (e.code === 'CERT_MISMATCH') {
      lines.push({ check: 'reachable', ok: true, detail: `${remote.host}:${remote.port}` });
      lines.push({ check: 'fingerprint', ok: false, detail: e.message });
    } else lines.push({ check: 'reachable', ok: false, detail: e.message });
    return done();
  }
  try {
    lines.push({ check: 'reachable', ok: true, detail: `${remote.host}:${remote.port}` });
    lines.push({ check: 'tls', ok: client.tls.version === 'TLSv1.3', detail: client.tls.version });
    lines.push({ check: 'fingerprint', ok: true, detail: `matches ${remote.fingerprint}` });
    let version: { version?: string } = {};
    try {
      version = await client.request<{ version?: string }>('GET', '/version');
      await client.request('GET', '/admin/datastore');
      lines.push({ check: 'authentication', ok: true, detail: `accepted as ${remote.authId}` });
    } catch (error) {
      lines.push({ check: 'authentication', ok: false, detail: toIbsError(error).message });
      return done();
    }
    if (input.store !== undefined) {
      try {
        const r = await client.request<{ privileges: string[] }>('GET', `/access/permissions`, { path: `/datastore/${input.store}` });
        const privs = r.privileges;
        const ok = privs.some((p) => p === 'Datastore.Read' || p === 'Datastore.Backup');
        lines.push({ check: 'privileges', ok, detail: `on /datastore/${input.store}: ${privs.join(', ') || 'none'}${ok ? '' : ' (a pull needs Datastore.Read, a push Datastore.Backup)'}` });
      } catch (error) {
        lines.push({ check: 'privileges', ok: false, detail: toIbsError(error).message });
      }
    }
    lines.push({ check: 'version', ok: true, detail: version.version ?? 'unknown' });
    return done();
  } finally {
    await client.close();
  }
}
