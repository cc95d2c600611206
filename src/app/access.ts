import { randomBytes } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { IbsError, parseAuthId } from '../core/index.ts';
import { SchemaError, validate, type Schema } from '../lib/index.ts';
import type { AppContext } from './context.ts';

/** Users, tokens and ACL entries: thin use cases over the access configuration (which validates). */

export const createUser = (ctx: AppContext, input: { userid: string; password?: string; comment?: string; email?: string; expire?: number }) => ctx.access.createUser(input);
export const listUsers = (ctx: AppContext) => ctx.access.users();
export const updateUser = (ctx: AppContext, input: { userid: string; enable?: boolean; expire?: number; comment?: string; email?: string }) => {
  const { userid, ...change } = input;
  return ctx.access.updateUser(userid, change);
};
export const removeUser = (ctx: AppContext, userid: string) => ctx.access.removeUser(userid);
export const setPassword = (ctx: AppContext, input: { userid: string; password: string }) => ctx.access.setPassword(input.userid, input.password);
export const createToken = (ctx: AppContext, input: { tokenid: string; comment?: string; expire?: number }) => ctx.access.createToken(input);
export const listTokens = (ctx: AppContext, userid?: string) => ctx.access.tokens(userid);
export const removeToken = (ctx: AppContext, tokenid: string) => ctx.access.removeToken(tokenid);
export const listAcl = (ctx: AppContext) => ctx.access.acl();
export const updateAcl = (ctx: AppContext, input: { path: string; authId: string; role: string; propagate?: boolean; remove?: boolean }) => ctx.access.updateAcl(input);

/**
 * First start: when no user exists, creates admin@ibs with Admin on "/" and a password taken from
 * `passwordFile` or generated. Returns the generated password (to be shown once), or undefined.
 */
export async function ensureAdmin(ctx: AppContext, passwordFile?: string): Promise<{ userid: string; password?: string } | undefined> {
  if ((await ctx.access.users()).length > 0) return undefined;
  let password: string;
  let generated = false;
  if (passwordFile !== undefined) {
    password = (await readFile(passwordFile, 'utf8').catch((e: Error) => {
      throw new IbsError('NOT_FOUND', `Cannot read the admin password file "${passwordFile}": ${e.message}`);
    })).replace(/\r?\n$/, '');
  } else {
    password = randomBytes(18).toString('base64url');
    generated = true;
  }
  const userid = 'admin@ibs';
  parseAuthId(userid);
  await ctx.access.createUser({ userid, password, comment: 'created at first start' });
  await ctx.access.updateAcl({ path: '/', authId: userid, role: 'Admin', propagate: true });
  return generated ? { userid, password } : { userid };
}

export interface ServicesStatus {
  pid?: number;
  running: boolean;
  started?: string;
  listen?: string;
  services: Array<{ service: string; state: string; since?: string; reason?: string }>;
}

/** The status file's form: what the server writes (`running` is worked out here). */
const STATUS_FILE: Schema = {
  type: 'object',
  additional: true,
  properties: {
    pid: { type: 'integer', minimum: 1, optional: true },
    started: { type: 'string', optional: true },
    listen: { type: 'string', optional: true },
    services: { type: 'array', items: { type: 'object', additional: true, properties: { service: { type: 'string' }, state: { type: 'string' }, since: { type: 'string', optional: true }, reason: { type: 'string', optional: true } } } },
  },
};

/** The state of the server's services, from the status file the server keeps (stopped when its pid is gone). */
export async function servicesStatus(ctx: AppContext): Promise<ServicesStatus> {
  const path = join(ctx.paths.stateDir, 'services.json');
  const stopped = (reason: string, state = 'stopped'): ServicesStatus => ({ running: false, services: [{ service: 'server', state, reason }] });
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return stopped('not started (no status file)');
    throw error;
  }
  let status: ServicesStatus;
  try {
    status = validate(STATUS_FILE, JSON.parse(text), 'services.json') as ServicesStatus;
  } catch (error) {
    // Not what a server wrote (cut short, edited): nothing in it can be trusted; a server rewrites it at start.
    return stopped(`${path} does not read (${error instanceof SchemaError ? error.message : 'not JSON'}); a server rewrites it when it starts`, 'unknown');
  }
  let alive = false;
  try {
    if (status.pid !== undefined) process.kill(status.pid, 0);
    alive = status.pid !== undefined;
  } catch {
    alive = false;
  }
  if (!alive) return { ...status, running: false, services: status.services.map((s) => ({ ...s, state: s.state === 'running' ? 'failed' : s.state, reason: s.state === 'running' ? `process ${status.pid} is gone` : (s.reason ?? '') })) };
  return { ...status, running: true };
}
