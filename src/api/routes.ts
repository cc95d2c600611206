import * as app from '../app/index.ts';
import { IbsError, KEEP_RULES, aclPathOrRoot, datastoreAclPath, parseStoreName, effectivePrivileges, parseAuthId, parseNamespace, requirePrivilege, type KeepOptions, type ManifestFile, type Privilege } from '../core/index.ts';
import { SchemaError, validate, type Schema } from '../lib/index.ts';
import type { ApiRequest, Route } from './route.ts';

const STORE: Schema = { type: 'string', pattern: /^[A-Za-z0-9_][A-Za-z0-9._-]{1,31}$/, description: 'datastore name' };
const NS: Schema = { type: 'string', pattern: /^$|^[A-Za-z0-9_][A-Za-z0-9._-]{0,30}(\/[A-Za-z0-9_][A-Za-z0-9._-]{0,30}){0,6}$/, optional: true, description: 'namespace a/b/c' };
const UPID: Schema = { type: 'string', pattern: /^UPID:[^\s]+:$/, maxLength: 800, description: 'task id' };
const TASK_RECORD: Schema = {
  type: 'object',
  additional: true,
  properties: {
    upid: UPID,
    type: { type: 'string' },
    state: { type: 'string' },
    code: { type: 'string', optional: true, description: "a failed task's error code (NO_SPACE, PERMISSION_DENIED, …: the CLI exit code table)" },
  },
};
const ANY_LIST: Schema = { type: 'array', items: { type: 'any' }, maxItems: 1_000_000 };

function storePath(input: Record<string, unknown>): string {
  return datastoreAclPath(input.store as string, parseNamespace((input.ns as string | undefined) ?? ''));
}

function privileged(privileges: Privilege[]): Route['permission'] {
  return { kind: 'privilege', path: storePath, privileges };
}

/**
 * Whether the caller holds Datastore.Audit on a namespace of `store`, for listings that reach below the
 * namespace they were checked on: a child may have an ACL of its own (NoAccess, or a parent role that does
 * not propagate). Each namespace is worked out once.
 */
function auditsNamespace(req: ApiRequest, store: string): (ns: string) => boolean {
  const known = new Map<string, boolean>();
  return (ns) => {
    let ok = known.get(ns);
    if (ok === undefined) known.set(ns, (ok = effectivePrivileges(req.acl, req.authId, datastoreAclPath(store, parseNamespace(ns))).has('Datastore.Audit')));
    return ok;
  };
}

/** A task's owner may see and stop it; others need Sys.Audit (see) or Sys.Modify (stop) on /system/tasks. */
function checkTaskAccess(req: ApiRequest, upid: string, privilege: 'Sys.Audit' | 'Sys.Modify'): void {
  const task = req.tasks.status(upid);
  const owner = task.authId === req.authId || task.authId === req.authId.split('!')[0];
  if (!owner) requirePrivilege(req.acl, req.authId, '/system/tasks', privilege);
}

/** The settings of a verify job in API input (create and update). */
const VERIFY_JOB_SETTINGS = {
  'ignore-verified': { type: 'boolean', optional: true },
  'outdated-after': { type: 'integer', minimum: 0, maximum: 36500, optional: true },
  'verify-window-days': { type: 'integer', minimum: 1, maximum: 3650, optional: true },
  'max-concurrent-snapshots': { type: 'integer', minimum: 1, maximum: 32, optional: true },
  'notification-mode': { type: 'string', enum: ['always', 'error', 'never'], optional: true },
  comment: { type: 'string', maxLength: 1024, optional: true },
} as const;

function verifyJobSettings(input: Record<string, unknown>): { ignoreVerified?: boolean; outdatedAfterDays?: number; windowDays?: number; maxConcurrentSnapshots?: number; notificationMode?: 'always' | 'error' | 'never'; comment?: string } {
  return {
    ...(input['ignore-verified'] === true ? { ignoreVerified: true } : {}),
    ...(input['outdated-after'] !== undefined ? { outdatedAfterDays: input['outdated-after'] as number } : {}),
    ...(input['verify-window-days'] !== undefined ? { windowDays: input['verify-window-days'] as number } : {}),
    ...(input['max-concurrent-snapshots'] !== undefined ? { maxConcurrentSnapshots: input['max-concurrent-snapshots'] as number } : {}),
    ...(input['notification-mode'] ? { notificationMode: input['notification-mode'] as 'always' } : {}),
    ...(input.comment !== undefined ? { comment: input.comment as string } : {}),
  };
}

/**
 * The ACL path of a verify or prune job's datastore and namespace, as stored: '/' when they do not read (a job
 * edited by hand; see aclPathOrRoot).
 */
function jobAclPath(job: { store: string; ns: string }): string {
  return aclPathOrRoot(() => datastoreAclPath(parseStoreName(job.store), parseNamespace(job.ns)));
}

/**
 * A verify job as stored (a change may correct it, a removal must work on it), once the caller is found to
 * have Datastore.Verify on its datastore and namespace.
 */
async function verifyJobFor(req: ApiRequest, id: string): Promise<app.VerifyJobConfig> {
  const job = await req.ctx.jobs.verify.getStored(id);
  requirePrivilege(req.acl, req.authId, jobAclPath(job), 'Datastore.Verify');
  return job;
}

/** A prune job as stored (see verifyJobFor), once the caller is found to have Datastore.Prune and Datastore.Modify on it. */
async function pruneJobFor(req: ApiRequest, id: string): Promise<app.PruneJobConfig> {
  const job = await req.ctx.jobs.prune.getStored(id);
  for (const privilege of ['Datastore.Prune', 'Datastore.Modify'] as const) requirePrivilege(req.acl, req.authId, jobAclPath(job), privilege);
  return job;
}

/** A job run now: by the server's scheduler when it runs one (its last run and notifications follow), else as a task here. */
function runJobNow(req: ApiRequest, type: string, job: string, id: string, run: (ctx: app.AppContext) => Promise<unknown>): Promise<string> {
  return req.runJob ? req.runJob(job) : asTask(req, type, id, run);
}

async function asTask(req: ApiRequest, type: string, id: string, run: (ctx: app.AppContext) => Promise<unknown>): Promise<string> {
  const { upid } = req.tasks.spawn({ type, id, authId: req.authId }, async (task) => {
    const result = await run({ ...req.ctx, reporter: app.taskReporter(task), signal: task.signal });
    task.log(`result: ${JSON.stringify(result)}`);
  });
  return upid;
}

const KEEP_INPUT: Record<string, Schema> = Object.fromEntries(KEEP_RULES.map((k) => [k, { type: 'integer', minimum: 0, maximum: 100000, optional: true } as Schema]));
function keepInput(input: Record<string, unknown>): KeepOptions {
  return Object.fromEntries(KEEP_RULES.filter((k) => input[k] !== undefined).map((k) => [k, input[k] as number]));
}
const USERID: Schema = { type: 'string', pattern: /^[A-Za-z0-9._-]{1,64}@[A-Za-z0-9._-]{1,32}$/, description: 'user@realm' };
const KEY_NAME: Schema = { type: 'string', pattern: /^[A-Za-z0-9_][A-Za-z0-9._-]{0,63}$/, description: 'server key name' };
const NOTIFY_NAME: Schema = { type: 'string', pattern: /^[A-Za-z0-9_][A-Za-z0-9._-]{1,31}$/ };

const TARGET_FIELDS: Record<string, Schema> = {
  url: { type: 'string', maxLength: 2048, optional: true },
  method: { type: 'string', enum: ['POST', 'PUT', 'GET'], optional: true },
  headers: { type: 'array', items: { type: 'string', maxLength: 1024 }, maxItems: 32, optional: true },
  'secret-headers': { type: 'array', items: { type: 'string', maxLength: 4096 }, maxItems: 32, optional: true },
  body: { type: 'string', maxLength: 65536, optional: true },
  mailto: { type: 'array', items: { type: 'string', maxLength: 256 }, maxItems: 64, optional: true },
  from: { type: 'string', maxLength: 256, optional: true },
  path: { type: 'string', maxLength: 1024, optional: true },
  server: { type: 'string', maxLength: 256, optional: true },
  port: { type: 'integer', minimum: 1, maximum: 65535, optional: true },
  mode: { type: 'string', enum: ['starttls', 'tls', 'insecure'], optional: true },
  username: { type: 'string', maxLength: 256, optional: true },
  password: { type: 'string', maxLength: 1024, optional: true },
  comment: { type: 'string', maxLength: 1024, optional: true },
};

const MATCHER_FIELDS: Record<string, Schema> = {
  target: { type: 'array', items: NOTIFY_NAME, maxItems: 32 },
  'match-severity': { type: 'array', items: { type: 'string', maxLength: 32 }, maxItems: 8, optional: true },
  'match-type': { type: 'array', items: { type: 'string', maxLength: 32 }, maxItems: 16, optional: true },
  'match-datastore': { type: 'array', items: STORE, maxItems: 64, optional: true },
  'match-job': { type: 'array', items: { type: 'string', maxLength: 64 }, maxItems: 64, optional: true },
  'match-calendar': { type: 'string', maxLength: 200, optional: true },
  mode: { type: 'string', enum: ['all', 'any'], optional: true },
  invert: { type: 'boolean', optional: true },
  disable: { type: 'boolean', optional: true, description: 'a disabled matcher matches nothing (kept, for turning it on again)' },
  comment: { type: 'string', maxLength: 1024, optional: true },
};

function matcherInput(input: Record<string, unknown>): Partial<app.MatcherInput> {
  return {
    ...(input['match-severity'] ? { severities: input['match-severity'] as string[] } : {}),
    ...(input['match-type'] ? { types: input['match-type'] as string[] } : {}),
    ...(input['match-datastore'] ? { datastores: input['match-datastore'] as string[] } : {}),
    ...(input['match-job'] ? { jobs: input['match-job'] as string[] } : {}),
    ...(input['match-calendar'] ? { calendar: input['match-calendar'] as string } : {}),
    ...(input.mode ? { mode: input.mode as string } : {}),
    ...(input.invert !== undefined ? { invert: input.invert === true } : {}),
    ...(input.disable !== undefined ? { disable: input.disable === true } : {}),
    ...(input.comment ? { comment: input.comment as string } : {}),
  };
}

const SESSION: Schema = { type: 'string', pattern: /^[0-9a-f-]{36}$/, description: 'session id' };
const CSUM: Schema = { type: 'string', pattern: /^[0-9a-f]{64}$/ };
/** A snapshot file as an upload describes it (the body carries its bytes). */
const SNAPSHOT_FILE = {
  filename: { type: 'string', pattern: /^[A-Za-z0-9_][A-Za-z0-9._-]{0,120}$/ },
  size: { type: 'integer', minimum: 0, maximum: 64 * 1024 * 1024 },
  csum: CSUM,
  'crypt-mode': { type: 'string', enum: ['none', 'encrypt'] },
  'archive-size': { type: 'integer', minimum: 0, optional: true },
  'source-stamp': { type: 'string', pattern: /^[0-9:]{1,200}$/, optional: true },
} satisfies Record<string, Schema>;

function snapshotFile(input: Record<string, unknown>): ManifestFile {
  return {
    filename: input.filename as string,
    size: input.size as number,
    csum: input.csum as string,
    cryptMode: input['crypt-mode'] as 'none',
    ...(input['archive-size'] !== undefined ? { archiveSize: input['archive-size'] as number } : {}),
    ...(input['source-stamp'] !== undefined ? { sourceStamp: input['source-stamp'] as string } : {}),
  };
}

const FINISH_HEAD: Schema = {
  type: 'object',
  properties: {
    after: { type: 'integer', minimum: 0, maximum: 2 ** 31 },
    manifest: { type: 'object', additional: true, properties: {} },
    files: { type: 'array', maxItems: 1000, items: { type: 'object', properties: SNAPSHOT_FILE } },
  },
};

/** The body of /backup/{session}/finish: a JSON head of `headLength` bytes, then the bytes of each file it lists. */
function finishBody(pieces: readonly Buffer[], headLength: number): { after: number; manifest: unknown; files: Array<{ file: ManifestFile; data: Buffer }> } {
  const body = pieces.length === 1 ? (pieces[0] as Buffer) : Buffer.concat(pieces);
  if (headLength > body.length) throw new IbsError('INVALID_ARGUMENT', `Invalid value for "head": ${headLength} bytes, but the body has ${body.length}`);
  let head: { after: number; manifest: unknown; files: Array<Record<string, unknown>> };
  try {
    head = validate(FINISH_HEAD, JSON.parse(body.toString('utf8', 0, headLength)), 'head') as typeof head;
  } catch (error) {
    throw new IbsError('INVALID_ARGUMENT', error instanceof SchemaError ? error.message : `Invalid value for "head": not JSON (${(error as Error).message})`);
  }
  let at = headLength;
  const files = head.files.map((f) => {
    const file = snapshotFile(f);
    const data = body.subarray(at, at + file.size);
    at += file.size;
    return { file, data };
  });
  if (at !== body.length) throw new IbsError('INVALID_ARGUMENT', `The finish body holds ${body.length - headLength} bytes after its head, but its files list ${at - headLength}`);
  return { after: head.after, manifest: head.manifest, files };
}

const REMOTE: Schema = { type: 'string', pattern: /^[A-Za-z0-9_][A-Za-z0-9._-]{1,31}$/, description: 'remote name' };
const JOB_ID: Schema = { type: 'string', pattern: /^[A-Za-z0-9_][A-Za-z0-9._-]{1,31}$/, description: 'job name' };
const MIBS: Schema = { type: 'integer', minimum: 0, maximum: 1_000_000, optional: true, description: 'MiB/s (0: unlimited)' };
const FILTERS: Schema = { type: 'array', items: { type: 'string', maxLength: 300 }, maxItems: 100, optional: true };
const SYNC_JOB = {
  type: 'object',
  properties: {
    id: JOB_ID,
    store: STORE,
    remote: { ...REMOTE, optional: true },
    'remote-store': STORE,
    direction: { type: 'string', enum: ['push', 'pull'] },
    schedule: { type: 'string', maxLength: 200, optional: true },
    ns: NS,
    'remote-ns': NS,
    'max-depth': { type: 'integer', minimum: 0, maximum: 7, optional: true },
    include: FILTERS,
    'group-filter': FILTERS,
    'remove-vanished': { type: 'boolean', optional: true },
    'verified-only': { type: 'boolean', optional: true },
    'encrypted-only': { type: 'boolean', optional: true },
    'transfer-last': { type: 'integer', minimum: 1, maximum: 1_000_000, optional: true },
    'resync-corrupt': { type: 'boolean', optional: true },
    owner: { type: 'string', maxLength: 200, optional: true },
    'worker-threads': { type: 'integer', minimum: 1, maximum: 32, optional: true },
    bwlimit: MIBS,
    'rate-in': MIBS,
    'rate-out': MIBS,
    'burst-in': MIBS,
    'burst-out': MIBS,
    'io-weight': { type: 'string', enum: ['low', 'normal'], optional: true },
    'encrypt-on-push': { type: 'boolean', optional: true },
    'active-encryption-key': { type: 'string', maxLength: 64, optional: true },
    'associated-key': FILTERS,
    comment: { type: 'string', maxLength: 500, optional: true },
  },
} as const satisfies Extract<Schema, { type: 'object' }>;

function backupPath(input: Record<string, unknown>): string {
  return storePath(input);
}

export const ROUTES: Route[] = [
  // ---- sync: what a remote side of a sync needs ------------------------------------------------------------
  {
    method: 'GET',
    path: '/admin/datastore/{store}/sync-listing',
    summary: 'namespaces below a root with every snapshot (manifest, protected) and group owner, in one answer: what a sync plans from',
    input: {
      type: 'object',
      properties: {
        store: STORE,
        ns: NS,
        'max-depth': { type: 'integer', minimum: 0, maximum: 7, optional: true },
        'with-damaged': { type: 'boolean', optional: true, description: 'list snapshots whose manifest does not read apart (damaged: ns, snapshot, reason, protected) instead of failing on them' },
      },
    },
    output: { type: 'object', properties: { namespaces: ANY_LIST, snapshots: ANY_LIST, owners: ANY_LIST, damaged: { ...ANY_LIST, optional: true } } },
    permission: { kind: 'handler', description: 'Datastore.Audit or Datastore.Read on the namespace; with only Datastore.Backup, the caller\'s own groups' },
    handler: (req, input) =>
      app.syncListing(req.ctx, req.acl, { store: input.store as string, ns: (input.ns as string | undefined) ?? '', ...(input['max-depth'] !== undefined ? { maxDepth: input['max-depth'] as number } : {}), withDamaged: input['with-damaged'] === true }),
  },
  {
    method: 'POST',
    path: '/reader/{session}/chunks',
    summary: 'several chunk blobs of the open snapshot in one response (frames: digest 32 bytes | length u32 LE | blob)',
    input: { type: 'object', properties: { session: SESSION, digests: { type: 'array', items: CSUM, maxItems: 64 } } },
    output: { type: 'any', description: 'application/octet-stream' },
    permission: { kind: 'handler', description: 'the identity that opened the session; only chunks of that snapshot' },
    response: 'binary',
    handler: (req, input) => req.readers.chunks(input.session as string, req.authId, input.digests as string[]),
  },
  {
    method: 'DELETE',
    path: '/admin/datastore/{store}/groups',
    summary: 'remove a group that has no snapshots left',
    input: { type: 'object', properties: { store: STORE, ns: NS, group: { type: 'string', pattern: /^(vm|ct|host)\/[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$/ } } },
    output: { type: 'any' },
    permission: privileged(['Datastore.Modify', 'Datastore.Prune']),
    handler: (req, input) => app.removeGroup(req.ctx, { store: input.store as string, ns: (input.ns as string | undefined) ?? '', group: input.group as string }),
  },
  {
    method: 'POST',
    path: '/admin/datastore/{store}/check-chunks',
    summary: 'check stored chunks (digest of plaintext, CRC of encrypted); answers the missing or damaged ones, moved aside',
    input: { type: 'object', properties: { store: STORE, digests: { type: 'array', items: CSUM, maxItems: 10_000 } } },
    output: { type: 'object', properties: { bad: { type: 'array', items: CSUM, maxItems: 10_000 } } },
    permission: privileged(['Datastore.Verify']),
    handler: async (req, input) => ({ bad: await app.checkChunks(req.ctx, { store: input.store as string, digests: input.digests as string[] }) }),
  },
  {
    method: 'GET',
    path: '/access/permissions',
    summary: "the caller's own privileges on an ACL path",
    input: { type: 'object', properties: { path: { type: 'string', pattern: /^\/[A-Za-z0-9_./-]{0,300}$/ } } },
    output: { type: 'object', properties: { path: { type: 'string' }, privileges: { type: 'array', items: { type: 'string' } } } },
    permission: { kind: 'authenticated' },
    handler: async (req, input) => ({ path: input.path as string, privileges: [...effectivePrivileges(req.acl, req.authId, input.path as string)].sort() }),
  },
  // ---- remotes -----------------------------------------------------------------------------------------------
  {
    method: 'GET',
    path: '/config/remote',
    summary: 'registered remotes (never their secrets)',
    input: { type: 'object', properties: {} },
    output: ANY_LIST,
    permission: { kind: 'handler', description: 'lists the remotes on which the caller has Remote.Audit' },
    handler: async (req) => (await req.ctx.remotes.list()).filter((r) => effectivePrivileges(req.acl, req.authId, `/remote/${r.name}`).has('Remote.Audit')),
  },
  {
    method: 'POST',
    path: '/config/remote',
    summary: 'register a remote server (its certificate fingerprint is pinned)',
    input: { type: 'object', properties: { name: REMOTE, host: { type: 'string', maxLength: 253 }, port: { type: 'integer', minimum: 1, maximum: 65535, optional: true }, 'auth-id': { type: 'string', maxLength: 200 }, secret: { type: 'string', maxLength: 1000 }, fingerprint: { type: 'string', maxLength: 100 }, comment: { type: 'string', maxLength: 500, optional: true } } },
    output: { type: 'any' },
    permission: { kind: 'privilege', path: () => '/remote', privileges: ['Remote.Modify'] },
    handler: (req, input) => app.createRemote(req.ctx, { name: input.name as string, host: input.host as string, ...(input.port !== undefined ? { port: input.port as number } : {}), authId: input['auth-id'] as string, secret: input.secret as string, fingerprint: input.fingerprint as string, ...(input.comment ? { comment: input.comment as string } : {}) }),
  },
  {
    method: 'PUT',
    path: '/config/remote/{name}',
    summary: 'change a remote (host, port, auth-id, secret, fingerprint after verifying it out of band)',
    input: { type: 'object', properties: { name: REMOTE, host: { type: 'string', maxLength: 253, optional: true }, port: { type: 'integer', minimum: 1, maximum: 65535, optional: true }, 'auth-id': { type: 'string', maxLength: 200, optional: true }, secret: { type: 'string', maxLength: 1000, optional: true }, fingerprint: { type: 'string', maxLength: 100, optional: true }, comment: { type: 'string', maxLength: 500, optional: true } } },
    output: { type: 'any' },
    permission: { kind: 'privilege', path: (input) => `/remote/${input.name as string}`, privileges: ['Remote.Modify'] },
    handler: (req, input) => app.updateRemote(req.ctx, input.name as string, { host: input.host as string | undefined, port: input.port as number | undefined, authId: input['auth-id'] as string | undefined, secret: input.secret as string | undefined, fingerprint: input.fingerprint as string | undefined, comment: input.comment as string | undefined }),
  },
  {
    method: 'DELETE',
    path: '/config/remote/{name}',
    summary: 'remove a remote (not while a sync job uses it)',
    input: { type: 'object', properties: { name: REMOTE } },
    output: { type: 'any' },
    permission: { kind: 'privilege', path: (input) => `/remote/${input.name as string}`, privileges: ['Remote.Modify'] },
    handler: (req, input) => app.removeRemote(req.ctx, input.name as string),
  },
  {
    method: 'POST',
    path: '/config/remote/{name}/test',
    summary: 'check a remote: reachable, TLS version, fingerprint, authentication, privileges on a store, version',
    input: { type: 'object', properties: { name: REMOTE, store: { ...STORE, optional: true } } },
    output: { type: 'object', properties: { ok: { type: 'boolean' }, lines: ANY_LIST } },
    permission: { kind: 'privilege', path: (input) => `/remote/${input.name as string}`, privileges: ['Remote.Audit'] },
    handler: (req, input) => app.testRemote(req.ctx, { name: input.name as string, ...(input.store ? { store: input.store as string } : {}) }),
  },
  // ---- sync jobs -----------------------------------------------------------------------------------------------
  {
    method: 'GET',
    path: '/admin/sync',
    summary: 'sync jobs with last run (time, result, UPID) and next run',
    input: { type: 'object', properties: {} },
    output: ANY_LIST,
    permission: { kind: 'handler', description: 'lists the jobs whose local datastore the caller may audit' },
    handler: async (req) => (await app.listSyncJobs(req.ctx)).filter((j) => effectivePrivileges(req.acl, req.authId, datastoreAclPath(j.store)).has('Datastore.Audit')),
  },
  {
    method: 'POST',
    path: '/admin/sync',
    summary: 'create a sync job',
    input: SYNC_JOB,
    output: { type: 'any' },
    permission: { kind: 'handler', description: 'the privileges the job needs to run (pull: Datastore.Audit+Backup locally, Remote.Read; push: Remote.Audit+DatastoreBackup, Datastore.Read+Audit locally)' },
    handler: async (req, input) => {
      const job = app.syncJobInput(input) as app.SyncJobInput;
      app.checkSyncPermissions(req.acl, req.authId, app.syncJobDefaults(job));
      return app.createSyncJob(req.ctx, job);
    },
  },
  {
    method: 'PUT',
    path: '/admin/sync/{id}',
    summary: 'change a sync job',
    input: { type: 'object', properties: { ...SYNC_JOB.properties, id: JOB_ID, store: { ...STORE, optional: true }, 'remote-store': { ...STORE, optional: true }, direction: { type: 'string', enum: ['push', 'pull'], optional: true }, delete: { type: 'array', items: { type: 'string', maxLength: 40 }, maxItems: 30, optional: true } } },
    output: { type: 'any' },
    permission: { kind: 'handler', description: 'the privileges the changed job needs to run' },
    handler: async (req, input) => {
      const { id, delete: drop, ...rest } = input;
      const change = { ...app.syncJobInput(rest), ...(drop ? { delete: (drop as string[]).map((k) => Object.keys(app.syncJobInput({ [k]: true }))[0] as string) } : {}) };
      // As stored: the change may correct a setting edited by hand.
      const current = await req.ctx.jobs.sync.getStored(id as string);
      app.checkSyncPermissions(req.acl, req.authId, current);
      const updated = await app.updateSyncJob(req.ctx, id as string, change);
      return updated;
    },
  },
  {
    method: 'DELETE',
    path: '/admin/sync/{id}',
    summary: 'remove a sync job',
    input: { type: 'object', properties: { id: JOB_ID } },
    output: { type: 'any' },
    permission: { kind: 'handler', description: 'the privileges the job needs to run' },
    handler: async (req, input) => {
      app.checkSyncPermissions(req.acl, req.authId, await req.ctx.jobs.sync.getStored(input.id as string));
      return app.removeSyncJob(req.ctx, input.id as string);
    },
  },
  {
    method: 'POST',
    path: '/admin/sync/{id}/run',
    summary: 'run a sync job now, as a task (its last-run state and notifications follow)',
    input: { type: 'object', properties: { id: JOB_ID } },
    output: UPID,
    permission: { kind: 'handler', description: 'the privileges the job needs to run' },
    handler: async (req, input) => {
      const job = await req.ctx.jobs.sync.get(input.id as string);
      app.checkSyncPermissions(req.acl, req.authId, job);
      return runJobNow(req, 'syncjob', `sync/${job.id}`, job.id, (ctx) => app.runSyncJob(ctx, { id: job.id }));
    },
  },
  {
    method: 'POST',
    path: '/admin/sync/{id}/repair',
    summary: 'compare both sides fully, re-send missing or damaged chunks and snapshots (a task)',
    input: { type: 'object', properties: { id: JOB_ID } },
    output: UPID,
    permission: { kind: 'handler', description: 'the privileges the job needs to run' },
    handler: async (req, input) => {
      const job = await req.ctx.jobs.sync.get(input.id as string);
      app.checkSyncPermissions(req.acl, req.authId, job);
      return asTask(req, 'syncjob', job.id, (ctx) => app.syncRepair(ctx, { id: job.id }));
    },
  },
  {
    method: 'GET',
    path: '/admin/sync/{id}/diff',
    summary: 'snapshots present on one side only, and ones whose content differs',
    input: { type: 'object', properties: { id: JOB_ID } },
    output: { type: 'object', properties: { aligned: { type: 'boolean' }, source: { type: 'string' }, target: { type: 'string' }, rows: ANY_LIST } },
    permission: { kind: 'handler', description: 'the privileges the job needs to run' },
    handler: async (req, input) => {
      app.checkSyncPermissions(req.acl, req.authId, await req.ctx.jobs.sync.get(input.id as string));
      return app.syncDiff(req.ctx, { id: input.id as string });
    },
  },
  {
    method: 'GET',
    path: '/admin/sync/{id}/bandwidth',
    summary: 'bytes per minute the job moved (for a bandwidth chart), up to 31 days back',
    input: { type: 'object', properties: { id: JOB_ID, minutes: { type: 'integer', minimum: 1, maximum: 44640, optional: true } } },
    output: ANY_LIST,
    permission: { kind: 'handler', description: 'Datastore.Audit on the job\'s local datastore' },
    handler: async (req, input) => {
      const job = await req.ctx.jobs.sync.get(input.id as string);
      requirePrivilege(req.acl, req.authId, datastoreAclPath(job.store), 'Datastore.Audit');
      return app.syncBandwidth(req.ctx, { id: job.id, ...(input.minutes !== undefined ? { minutes: input.minutes as number } : {}) });
    },
  },

  {
    method: 'POST',
    path: '/reader/start',
    summary: 'open a snapshot for reading (Datastore.Read, or Datastore.Backup as owner of its group)',
    input: { type: 'object', properties: { store: STORE, ns: NS, snapshot: { type: 'string', maxLength: 300 } } },
    output: { type: 'object', properties: { session: SESSION, manifest: { type: 'object', additional: true, properties: {} } } },
    permission: { kind: 'handler', description: 'Datastore.Read on the namespace, or Datastore.Backup as owner of the group' },
    handler: (req, input) => req.readers.start(req.ctx, req.acl, { store: input.store as string, ...(input.ns ? { ns: input.ns as string } : {}), snapshot: input.snapshot as string }),
  },
  {
    method: 'GET',
    path: '/reader/{session}/file',
    summary: 'a file of the open snapshot (manifest, index, blob), as bytes',
    input: { type: 'object', properties: { session: SESSION, filename: { type: 'string', pattern: /^[A-Za-z0-9_][A-Za-z0-9._-]{0,120}$/ } } },
    output: { type: 'any', description: 'application/octet-stream' },
    permission: { kind: 'handler', description: 'the identity that opened the session' },
    response: 'binary',
    handler: (req, input) => req.readers.file(input.session as string, req.authId, input.filename as string),
  },
  {
    method: 'GET',
    path: '/reader/{session}/chunk',
    summary: 'a chunk blob referenced by the open snapshot, as bytes',
    input: { type: 'object', properties: { session: SESSION, digest: CSUM } },
    output: { type: 'any', description: 'application/octet-stream' },
    permission: { kind: 'handler', description: 'the identity that opened the session; only chunks of that snapshot' },
    response: 'binary',
    handler: (req, input) => req.readers.chunk(input.session as string, req.authId, input.digest as string),
  },
  {
    method: 'POST',
    path: '/reader/{session}/close',
    summary: 'close a reader session',
    input: { type: 'object', properties: { session: SESSION } },
    output: { type: 'any' },
    permission: { kind: 'handler', description: 'the identity that opened the session' },
    handler: (req, input) => req.readers.close(input.session as string, req.authId),
  },
  {
    method: 'POST',
    path: '/backup/start',
    summary: 'start uploading a snapshot: returns a session and the chunks of the previous snapshot of the group (and of `digests`, those the session may reference)',
    input: {
      type: 'object',
      properties: {
        store: STORE,
        ns: NS,
        'backup-type': { type: 'string', enum: ['vm', 'ct', 'host'] },
        'backup-id': { type: 'string', pattern: /^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$/ },
        'backup-time': { type: 'integer', minimum: 0, maximum: 2 ** 40 },
        'key-fingerprint': { type: 'string', pattern: /^[0-9a-f]{2}(:[0-9a-f]{2}){31}$/, optional: true },
        amend: { type: 'boolean', optional: true, description: 'replace the existing snapshot at commit, keeping its files and adding new ones (it stays as it was if the upload fails); its chunks are not in `known`: ask /known, answered from what is stored' },
        digests: { type: 'array', items: CSUM, maxItems: 10_000, optional: true, description: 'chunks to ask about at once, as with /known (answered in `present`): saves a round trip' },
      },
    },
    output: {
      type: 'object',
      properties: {
        session: SESSION,
        snapshot: { type: 'string' },
        known: { type: 'array', items: CSUM, maxItems: 10_000_000 },
        previous: { type: 'string', optional: true, description: 'the previous snapshot of the group (TYPE/ID/TIME), whose chunks may be referenced' },
        present: { type: 'array', items: CSUM, maxItems: 10_000, optional: true, description: 'of `digests`, those the session may reference without sending them' },
      },
    },
    permission: { kind: 'privilege', path: backupPath, privileges: ['Datastore.Backup'] },
    handler: (req, input) =>
      req.backups.start(req.ctx, {
        store: input.store as string,
        ...(input.ns ? { ns: input.ns as string } : {}),
        type: input['backup-type'] as string,
        id: input['backup-id'] as string,
        time: input['backup-time'] as number,
        ...(input['key-fingerprint'] ? { keyFingerprint: input['key-fingerprint'] as string } : {}),
        ...(input.amend === true ? { amend: true } : {}),
        ...(input.digests ? { digests: input.digests as string[] } : {}),
      }),
  },
  {
    method: 'POST',
    path: '/backup/{session}/chunks',
    summary: 'upload a batch of chunks (frames: digest 32 bytes | blob length u32 LE | blob); each is checked before it is stored',
    input: { type: 'object', properties: { session: SESSION, seq: { type: 'integer', minimum: 1, maximum: 2 ** 31, optional: true, description: 'the number of this batch (from 1), for a finish sent before the answers' } } },
    output: { type: 'object', properties: { existed: { type: 'array', items: { type: 'boolean' }, maxItems: 100_000 } } },
    permission: { kind: 'handler', description: 'the identity that started the session' },
    body: 'binary',
    maxBodyBytes: 64 * 1024 * 1024,
    handler: (req, input) => req.backups.chunks(input.session as string, req.authId, req.body ?? [], input.seq as number | undefined),
  },
  {
    method: 'POST',
    path: '/backup/{session}/known',
    summary: 'batched existence query: which of these chunks the session may reference without sending (previous snapshot; stored and uploaded by the caller in an unfinished session, or referenced by the snapshot being amended)',
    input: { type: 'object', properties: { session: SESSION, digests: { type: 'array', items: CSUM, maxItems: 10_000 } } },
    output: { type: 'object', properties: { known: { type: 'array', items: CSUM, maxItems: 10_000 } } },
    permission: { kind: 'handler', description: 'the identity that started the session' },
    handler: (req, input) => req.backups.known(input.session as string, req.authId, input.digests as string[]),
  },
  {
    method: 'POST',
    path: '/backup/{session}/file',
    summary: 'upload an index or blob file of the snapshot; an index may reference only chunks of this session or of the previous snapshot',
    input: {
      type: 'object',
      properties: {
        session: SESSION,
        ...SNAPSHOT_FILE,
      },
    },
    output: { type: 'any' },
    permission: { kind: 'handler', description: 'the identity that started the session' },
    body: 'binary',
    maxBodyBytes: 64 * 1024 * 1024,
    handler: (req, input) =>
      req.backups.file(input.session as string, req.authId, snapshotFile(input), Buffer.concat(req.body ?? [])),
  },
  {
    method: 'POST',
    path: '/backup/{session}/commit',
    summary: 'finish the upload: the manifest is checked against the uploaded files and written last',
    input: { type: 'object', properties: { session: SESSION, manifest: { type: 'object', additional: true, properties: {} } } },
    output: { type: 'object', properties: { snapshot: { type: 'string' } } },
    permission: { kind: 'handler', description: 'the identity that started the session' },
    maxBodyBytes: 16 * 1024 * 1024,
    handler: (req, input) => req.backups.commit(input.session as string, req.authId, input.manifest),
  },
  {
    method: 'POST',
    path: '/backup/{session}/finish',
    summary:
      'end the upload in one request once chunk batches 1..after (numbered with `seq`) are stored: the chunks it newly stored are read back and checked; when all pass, the files are stored and the manifest written last. Otherwise answers the failed chunks (moved aside; send them, then finish again) and commits nothing. Body: the head (JSON, `head` bytes: after, manifest, files) and then each file\'s bytes in the order listed',
    input: { type: 'object', properties: { session: SESSION, head: { type: 'integer', minimum: 2, maximum: 16 * 1024 * 1024 } } },
    output: { type: 'object', properties: { bad: { type: 'array', items: CSUM, maxItems: 1_000_000 }, snapshot: { type: 'string', optional: true } } },
    permission: { kind: 'handler', description: 'the identity that started the session' },
    body: 'binary',
    maxBodyBytes: 256 * 1024 * 1024,
    handler: (req, input) => req.backups.finish(input.session as string, req.authId, () => finishBody(req.body ?? [], input.head as number), req.signal),
  },
  {
    method: 'POST',
    path: '/backup/{session}/abort',
    summary: 'give up the upload: no snapshot appears',
    input: { type: 'object', properties: { session: SESSION } },
    output: { type: 'any' },
    permission: { kind: 'handler', description: 'the identity that started the session' },
    handler: (req, input) => req.backups.abort(input.session as string, req.authId),
  },
  {
    method: 'GET',
    path: '/version',
    summary: 'server version',
    input: { type: 'object', properties: {} },
    output: { type: 'object', properties: { version: { type: 'string' }, node: { type: 'string' } } },
    permission: { kind: 'authenticated' },
    handler: async () => ({ version: process.env.npm_package_version ?? '0.1.0', node: process.version }),
  },
  {
    method: 'GET',
    path: '/admin/datastore',
    summary: 'datastores the caller may audit',
    input: { type: 'object', properties: {} },
    output: ANY_LIST,
    permission: { kind: 'handler', description: 'lists the datastores on which the caller has Datastore.Audit' },
    handler: async (req) => (await app.listDatastores(req.ctx)).filter((d) => effectivePrivileges(req.acl, req.authId, datastoreAclPath(d.name)).has('Datastore.Audit')).map((d) => ({ name: d.name, comment: ('comment' in d ? d.comment : undefined) ?? '', ...('problem' in d ? { problem: d.problem } : {}) })),
  },
  {
    method: 'GET',
    path: '/admin/datastore/{store}/status',
    summary: 'datastore statistics',
    input: { type: 'object', properties: { store: STORE } },
    output: { type: 'object', additional: true, properties: {} },
    permission: privileged(['Datastore.Audit']),
    handler: (req, input) => app.statsDatastore(req.ctx, input.store as string),
  },
  {
    method: 'GET',
    path: '/admin/datastore/{store}/snapshots',
    summary: 'snapshots of a namespace or group',
    input: { type: 'object', properties: { store: STORE, ns: NS, group: { type: 'string', pattern: /^(vm|ct|host)\/[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$/, optional: true }, recursive: { type: 'boolean', optional: true, description: 'include child namespaces' } } },
    output: ANY_LIST,
    permission: privileged(['Datastore.Audit']),
    handler: async (req, input) => {
      const store = input.store as string;
      const rows = await app.listSnapshots(req.ctx, { store, ...(input.ns ? { ns: input.ns as string } : {}), ...(input.group ? { group: input.group as string } : {}), recursive: input.recursive === true });
      if (input.recursive !== true) return rows;
      const may = auditsNamespace(req, store);
      return rows.filter((r) => may(r.namespace));
    },
  },
  {
    method: 'POST',
    path: '/admin/datastore/{store}/verify',
    summary: 'start a verification task',
    input: { type: 'object', properties: { store: STORE, ns: NS, snapshot: { type: 'string', optional: true, maxLength: 300 }, 'ignore-verified': { type: 'boolean', optional: true }, 'outdated-after': { type: 'integer', minimum: 0, maximum: 36500, optional: true }, 'max-concurrent-snapshots': { type: 'integer', minimum: 1, maximum: 32, optional: true } } },
    output: UPID,
    permission: privileged(['Datastore.Verify']),
    handler: (req, input) =>
      asTask(req, 'verify', input.store as string, async (ctx) => {
        const r = await app.verifyStore(ctx, {
          store: input.store as string,
          ...(input.ns ? { ns: input.ns as string } : {}),
          ...(input.snapshot ? { snapshot: input.snapshot as string } : {}),
          ignoreVerified: input['ignore-verified'] === true,
          ...(input['outdated-after'] !== undefined ? { outdatedAfterDays: input['outdated-after'] as number } : {}),
          ...(input['max-concurrent-snapshots'] !== undefined ? { maxConcurrentSnapshots: input['max-concurrent-snapshots'] as number } : {}),
        });
        if (!r.ok) throw new IbsError('VERIFY_FAILED', `verification failed: ${r.badChunks.map((b) => `chunk ${b.digest} (${b.snapshots.join(', ')})`).join('; ') || r.snapshots.filter((s) => s.state === 'failed').map((s) => s.snapshot).join(', ')}`);
        return r;
      }),
  },
  {
    method: 'POST',
    path: '/admin/datastore/{store}/gc',
    summary: 'start garbage collection',
    input: { type: 'object', properties: { store: STORE } },
    output: UPID,
    permission: privileged(['Datastore.Modify']),
    handler: (req, input) => asTask(req, 'garbage_collection', input.store as string, (ctx) => app.gcStore(ctx, { store: input.store as string })),
  },
  {
    method: 'GET',
    path: '/admin/datastore/{store}/namespace',
    summary: 'namespaces below a parent',
    input: { type: 'object', properties: { store: STORE, ns: NS, 'max-depth': { type: 'integer', minimum: 0, maximum: 7, optional: true } } },
    output: { type: 'array', items: { type: 'string' } },
    permission: privileged(['Datastore.Audit']),
    handler: async (req, input) => {
      const store = input.store as string;
      const may = auditsNamespace(req, store);
      return (await app.listNamespaces(req.ctx, { store, ...(input.ns ? { parent: input.ns as string } : {}), ...(input['max-depth'] !== undefined ? { maxDepth: input['max-depth'] as number } : {}) })).filter(may);
    },
  },
  {
    method: 'POST',
    path: '/admin/datastore/{store}/namespace',
    summary: 'create a namespace (its parent path needs Datastore.Modify)',
    input: { type: 'object', properties: { store: STORE, ns: { type: 'string', pattern: /^[A-Za-z0-9_][A-Za-z0-9._-]{0,30}(\/[A-Za-z0-9_][A-Za-z0-9._-]{0,30}){0,6}$/ }, parents: { type: 'boolean', optional: true } } },
    output: { type: 'string' },
    permission: { kind: 'privilege', path: (input) => datastoreAclPath(input.store as string, parseNamespace(input.ns as string).slice(0, -1)), privileges: ['Datastore.Modify'] },
    handler: (req, input) => app.createNamespace(req.ctx, { store: input.store as string, ns: input.ns as string, parents: input.parents === true }),
  },
  {
    method: 'DELETE',
    path: '/admin/datastore/{store}/namespace',
    summary: 'remove a namespace (with delete-groups: its groups and child namespaces too)',
    input: { type: 'object', properties: { store: STORE, ns: { type: 'string', pattern: /^[A-Za-z0-9_][A-Za-z0-9._-]{0,30}(\/[A-Za-z0-9_][A-Za-z0-9._-]{0,30}){0,6}$/ }, 'delete-groups': { type: 'boolean', optional: true } } },
    output: { type: 'any' },
    permission: { kind: 'privilege', path: (input) => datastoreAclPath(input.store as string, parseNamespace(input.ns as string).slice(0, -1)), privileges: ['Datastore.Modify'] },
    handler: (req, input) => app.removeNamespace(req.ctx, { store: input.store as string, ns: input.ns as string, deleteGroups: input['delete-groups'] === true }),
  },
  {
    method: 'GET',
    path: '/admin/datastore/{store}/groups',
    summary: 'backup groups of a namespace with snapshot count and owner',
    input: { type: 'object', properties: { store: STORE, ns: NS } },
    output: ANY_LIST,
    permission: privileged(['Datastore.Audit']),
    handler: (req, input) => app.listGroups(req.ctx, { store: input.store as string, ...(input.ns ? { ns: input.ns as string } : {}) }),
  },
  {
    method: 'DELETE',
    path: '/admin/datastore/{store}/snapshots',
    summary: 'forget a snapshot (not when protected)',
    input: { type: 'object', properties: { store: STORE, ns: NS, snapshot: { type: 'string', maxLength: 300 } } },
    output: { type: 'object', properties: { removed: { type: 'string' } } },
    permission: privileged(['Datastore.Modify', 'Datastore.Prune']),
    handler: async (req, input) => ({ removed: await app.forgetSnapshot(req.ctx, { store: input.store as string, snapshot: input.snapshot as string, ...(input.ns ? { ns: input.ns as string } : {}) }) }),
  },
  {
    method: 'PUT',
    path: '/admin/datastore/{store}/protected',
    summary: 'protect or unprotect a snapshot',
    input: { type: 'object', properties: { store: STORE, ns: NS, snapshot: { type: 'string', maxLength: 300 }, protected: { type: 'boolean' } } },
    output: { type: 'any' },
    permission: privileged(['Datastore.Modify']),
    handler: (req, input) => app.protectSnapshot(req.ctx, { store: input.store as string, snapshot: input.snapshot as string, protect: input.protected === true, ...(input.ns ? { ns: input.ns as string } : {}) }),
  },
  {
    method: 'PUT',
    path: '/admin/datastore/{store}/notes',
    summary: 'set the notes of a snapshot',
    input: { type: 'object', properties: { store: STORE, ns: NS, snapshot: { type: 'string', maxLength: 300 }, notes: { type: 'string', maxLength: 65536 } } },
    output: { type: 'string' },
    permission: privileged(['Datastore.Modify']),
    handler: (req, input) => app.snapshotNotes(req.ctx, { store: input.store as string, snapshot: input.snapshot as string, set: input.notes as string, ...(input.ns ? { ns: input.ns as string } : {}) }),
  },
  {
    method: 'POST',
    path: '/admin/datastore/{store}/prune',
    summary: 'apply retention to a group (as a task unless dry-run, which answers at once)',
    input: {
      type: 'object',
      properties: {
        store: STORE,
        ns: NS,
        group: { type: 'string', pattern: /^(vm|ct|host)\/[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$/ },
        'dry-run': { type: 'boolean', optional: true },
        ...KEEP_INPUT,
      },
    },
    output: { type: 'any', description: 'the marks (dry-run) or a UPID' },
    permission: privileged(['Datastore.Prune']),
    handler: (req, input) => {
      const keep = keepInput(input);
      const run = (ctx: app.AppContext) => app.pruneStore(ctx, { store: input.store as string, group: input.group as string, keep, dryRun: input['dry-run'] === true, ...(input.ns ? { ns: input.ns as string } : {}) });
      return input['dry-run'] === true ? run(req.ctx) : asTask(req, 'prune', input.store as string, run);
    },
  },
  {
    method: 'GET',
    path: '/access/users',
    summary: 'users',
    input: { type: 'object', properties: {} },
    output: ANY_LIST,
    permission: { kind: 'privilege', path: () => '/access', privileges: ['Sys.Audit'] },
    handler: (req) => app.listUsers(req.ctx),
  },
  {
    method: 'POST',
    path: '/access/users',
    summary: 'create a user',
    input: { type: 'object', properties: { userid: { type: 'string', maxLength: 100 }, password: { type: 'string', minLength: 8, maxLength: 1024, optional: true }, comment: { type: 'string', maxLength: 1024, optional: true }, email: { type: 'string', maxLength: 256, optional: true } } },
    output: { type: 'any' },
    permission: { kind: 'privilege', path: () => '/access', privileges: ['Sys.Modify'] },
    handler: (req, input) => app.createUser(req.ctx, input as { userid: string }),
  },
  {
    method: 'POST',
    path: '/access/tokens',
    summary: 'create an API token (for oneself, or any user with Sys.Modify on /access); the secret is in the answer only',
    input: { type: 'object', properties: { tokenid: { type: 'string', maxLength: 200 }, comment: { type: 'string', maxLength: 1024, optional: true } } },
    output: { type: 'object', properties: { tokenid: { type: 'string' }, secret: { type: 'string' } } },
    permission: { kind: 'handler', description: 'own tokens, or Sys.Modify on /access' },
    handler: (req, input) => {
      const { user } = parseAuthId(input.tokenid as string);
      if (user !== req.authId) requirePrivilege(req.acl, req.authId, '/access', 'Sys.Modify');
      return app.createToken(req.ctx, input as { tokenid: string });
    },
  },
  {
    method: 'GET',
    path: '/access/acl',
    summary: 'ACL entries',
    input: { type: 'object', properties: {} },
    output: ANY_LIST,
    permission: { kind: 'privilege', path: () => '/access', privileges: ['Sys.Audit'] },
    handler: (req) => app.listAcl(req.ctx),
  },
  {
    method: 'PUT',
    path: '/access/acl',
    summary: 'grant or (with delete) take away a role on a path',
    input: { type: 'object', properties: { path: { type: 'string', maxLength: 500 }, 'auth-id': { type: 'string', maxLength: 200 }, role: { type: 'string', maxLength: 64 }, propagate: { type: 'boolean', optional: true }, delete: { type: 'boolean', optional: true } } },
    output: ANY_LIST,
    permission: { kind: 'privilege', path: () => '/access', privileges: ['Sys.Modify'] },
    handler: (req, input) => app.updateAcl(req.ctx, { path: input.path as string, authId: input['auth-id'] as string, role: input.role as string, propagate: input.propagate !== false, remove: input.delete === true }),
  },
  {
    method: 'POST',
    path: '/admin/datastore',
    summary: 'create a datastore (in a new or empty directory; default under the data directory)',
    input: { type: 'object', properties: { name: STORE, path: { type: 'string', pattern: /^\/[^\0]{0,4095}$/, optional: true }, comment: { type: 'string', maxLength: 1024, optional: true } } },
    output: { type: 'object', additional: true, properties: {} },
    permission: { kind: 'privilege', path: () => '/datastore', privileges: ['Datastore.Allocate'] },
    handler: (req, input) => app.createDatastore(req.ctx, { name: input.name as string, ...(input.path ? { path: input.path as string } : {}), ...(input.comment ? { comment: input.comment as string } : {}) }),
  },
  {
    method: 'DELETE',
    path: '/admin/datastore/{store}',
    summary: 'forget a datastore (its data stays unless destroy-data)',
    input: { type: 'object', properties: { store: STORE, 'destroy-data': { type: 'boolean', optional: true } } },
    output: { type: 'object', additional: true, properties: {} },
    permission: { kind: 'privilege', path: (input) => datastoreAclPath(input.store as string), privileges: ['Datastore.Allocate'] },
    handler: (req, input) => app.removeDatastore(req.ctx, { name: input.store as string, destroyData: input['destroy-data'] === true }),
  },
  {
    method: 'GET',
    path: '/config/notifications/targets',
    summary: 'notification targets (never their secrets)',
    input: { type: 'object', properties: {} },
    output: ANY_LIST,
    permission: { kind: 'privilege', path: () => '/system/notifications', privileges: ['Sys.Audit'] },
    handler: (req) => app.listNotificationTargets(req.ctx),
  },
  {
    method: 'POST',
    path: '/config/notifications/targets',
    summary: 'add a webhook, sendmail or smtp target (secrets go to a 0600 file)',
    input: {
      type: 'object',
      properties: {
        type: { type: 'string', enum: ['webhook', 'sendmail', 'smtp'] },
        name: { type: 'string', pattern: /^[A-Za-z0-9_][A-Za-z0-9._-]{1,31}$/ },
        ...TARGET_FIELDS,
      },
    },
    output: { type: 'object', properties: { type: { type: 'string' }, name: { type: 'string' } } },
    permission: { kind: 'privilege', path: () => '/system/notifications', privileges: ['Sys.Modify'] },
    handler: (req, input) => {
      const { 'secret-headers': secretHeaders, headers, ...rest } = input as Record<string, unknown>;
      return app.createNotificationTarget(req.ctx, { ...(rest as unknown as app.TargetInput), ...(headers ? { headers: headers as string[] } : {}), ...(secretHeaders ? { secretHeaders: secretHeaders as string[] } : {}) });
    },
  },
  {
    method: 'POST',
    path: '/config/notifications/targets/{name}/test',
    summary: 'send a test notification through a target',
    input: { type: 'object', properties: { name: { type: 'string', pattern: /^[A-Za-z0-9_][A-Za-z0-9._-]{1,31}$/ }, recipient: { type: 'string', maxLength: 256, optional: true } } },
    output: { type: 'object', additional: true, properties: {} },
    permission: { kind: 'privilege', path: () => '/system/notifications', privileges: ['Sys.Modify'] },
    handler: (req, input) => app.testNotificationTarget(req.ctx, { name: input.name as string, ...(input.recipient ? { recipient: input.recipient as string } : {}) }),
  },
  {
    method: 'GET',
    path: '/config/notifications/matchers',
    summary: 'notification matchers',
    input: { type: 'object', properties: {} },
    output: ANY_LIST,
    permission: { kind: 'privilege', path: () => '/system/notifications', privileges: ['Sys.Audit'] },
    handler: (req) => app.listNotificationMatchers(req.ctx),
  },
  {
    method: 'GET',
    path: '/nodes/localhost/calendar',
    summary: 'the normalized form of a calendar event and its next elapses',
    input: { type: 'object', properties: { event: { type: 'string', maxLength: 256 }, iterations: { type: 'integer', minimum: 1, maximum: 1000, optional: true }, from: { type: 'string', maxLength: 64, optional: true } } },
    output: { type: 'object', properties: { normalized: { type: 'string' }, utc: { type: 'boolean' }, next: { type: 'array', items: { type: 'string' } } } },
    permission: { kind: 'authenticated' },
    handler: async (_req, input) => app.previewCalendar({ expression: input.event as string, ...(input.iterations !== undefined ? { iterations: input.iterations as number } : {}), ...(input.from ? { from: input.from as string } : {}) }),
  },
  {
    method: 'GET',
    path: '/admin/jobs',
    summary: 'scheduled jobs with last and next run',
    input: { type: 'object', properties: {} },
    output: ANY_LIST,
    permission: { kind: 'privilege', path: () => '/system', privileges: ['Sys.Audit'] },
    handler: (req) => app.listJobs(req.ctx),
  },
  {
    method: 'GET',
    path: '/nodes/localhost/tasks',
    summary: 'tasks (own ones; all with Sys.Audit on /system/tasks)',
    input: { type: 'object', properties: { state: { type: 'string', enum: ['queued', 'running', 'ok', 'warnings', 'error', 'aborted', 'finished'], optional: true }, type: { type: 'string', pattern: /^[a-z][a-z0-9_-]{0,31}$/, optional: true }, since: { type: 'integer', minimum: 0, optional: true }, limit: { type: 'integer', minimum: 1, maximum: 10000, optional: true } } },
    output: { type: 'array', items: TASK_RECORD },
    permission: { kind: 'handler', description: 'own tasks, or all with Sys.Audit on /system/tasks' },
    handler: async (req, input) => {
      const all = effectivePrivileges(req.acl, req.authId, '/system/tasks').has('Sys.Audit');
      const user = req.authId.split('!')[0];
      return req.tasks
        .list({ ...(input.state ? { state: input.state as 'running' } : {}), ...(input.type ? { type: input.type as string } : {}), ...(input.since !== undefined ? { since: input.since as number } : {}), limit: (input.limit as number | undefined) ?? 1000 })
        .filter((t) => all || t.authId === req.authId || t.authId === user);
    },
  },
  {
    method: 'GET',
    path: '/nodes/localhost/tasks/{upid}/status',
    summary: 'state, result and live progress of a task',
    input: { type: 'object', properties: { upid: UPID } },
    output: TASK_RECORD,
    permission: { kind: 'handler', description: 'the task owner, or Sys.Audit on /system/tasks' },
    handler: async (req, input) => {
      checkTaskAccess(req, input.upid as string, 'Sys.Audit');
      return req.tasks.status(input.upid as string);
    },
  },
  {
    method: 'GET',
    path: '/nodes/localhost/tasks/{upid}/log',
    summary: 'the log of a task from byte offset `start`',
    input: { type: 'object', properties: { upid: UPID, start: { type: 'integer', minimum: 0, optional: true } } },
    output: { type: 'object', properties: { text: { type: 'string' }, size: { type: 'integer' } } },
    permission: { kind: 'handler', description: 'the task owner, or Sys.Audit on /system/tasks' },
    handler: async (req, input) => {
      checkTaskAccess(req, input.upid as string, 'Sys.Audit');
      return req.tasks.store.readLog(input.upid as string, { start: (input.start as number | undefined) ?? 0 });
    },
  },
  {
    method: 'DELETE',
    path: '/nodes/localhost/tasks/{upid}',
    summary: 'stop a running task',
    input: { type: 'object', properties: { upid: UPID } },
    output: { type: 'object', properties: { stopped: { type: 'boolean' } } },
    permission: { kind: 'handler', description: 'the task owner, or Sys.Modify on /system/tasks' },
    handler: async (req, input) => {
      checkTaskAccess(req, input.upid as string, 'Sys.Modify');
      return { stopped: req.tasks.abort(input.upid as string, `stopped by ${req.authId}`) };
    },
  },
  {
    method: 'GET',
    path: '/nodes/localhost/workers',
    summary: 'worker slots per task type: in use and queued',
    input: { type: 'object', properties: {} },
    output: ANY_LIST,
    permission: { kind: 'privilege', path: () => '/system', privileges: ['Sys.Audit'] },
    handler: async (req) => req.tasks.workerStatus(),
  },

  // ---- datastore administration, snapshot details ------------------------------------------------------------
  {
    method: 'GET',
    path: '/admin/datastore/{store}',
    summary: 'a datastore: path, id, format, retention, GC schedule, quarantine, last sync',
    input: { type: 'object', properties: { store: STORE } },
    output: { type: 'object', additional: true, properties: {} },
    permission: { kind: 'privilege', path: (input) => datastoreAclPath(input.store as string), privileges: ['Datastore.Audit'] },
    handler: (req, input) => app.showDatastore(req.ctx, input.store as string),
  },
  {
    method: 'PUT',
    path: '/admin/datastore/{store}',
    summary: 'change the comment, the retention settings or the GC schedule ("" removes it) of a datastore',
    input: { type: 'object', properties: { store: STORE, comment: { type: 'string', maxLength: 1024, optional: true }, 'gc-schedule': { type: 'string', maxLength: 200, optional: true }, ...KEEP_INPUT } },
    output: { type: 'object', additional: true, properties: {} },
    permission: { kind: 'privilege', path: (input) => datastoreAclPath(input.store as string), privileges: ['Datastore.Modify'] },
    handler: (req, input) => app.updateDatastore(req.ctx, { name: input.store as string, ...(input.comment !== undefined ? { comment: input.comment as string } : {}), keep: keepInput(input), ...(input['gc-schedule'] !== undefined ? { gcSchedule: input['gc-schedule'] as string } : {}) }),
  },
  {
    method: 'GET',
    path: '/admin/datastore/{store}/probe',
    summary: 'is the datastore reachable, writable and of a supported format',
    input: { type: 'object', properties: { store: STORE } },
    output: { type: 'object', additional: true, properties: {} },
    permission: { kind: 'privilege', path: (input) => datastoreAclPath(input.store as string), privileges: ['Datastore.Audit'] },
    handler: (req, input) => app.probeDatastore(req.ctx, input.store as string),
  },
  {
    method: 'PUT',
    path: '/admin/datastore/{store}/quarantine',
    summary: 'quarantine a datastore (refuses new writes and GC, says why) or lift the quarantine',
    input: { type: 'object', properties: { store: STORE, quarantine: { type: 'boolean' }, reason: { type: 'string', maxLength: 1024, optional: true } } },
    output: { type: 'object', properties: { name: { type: 'string' }, quarantined: { type: 'boolean' } } },
    permission: { kind: 'privilege', path: (input) => datastoreAclPath(input.store as string), privileges: ['Datastore.Modify'] },
    handler: async (req, input) => {
      const name = input.store as string;
      if (input.quarantine === true) await app.quarantineDatastore(req.ctx, { name, reason: (input.reason as string | undefined) ?? 'quarantined by an administrator' });
      else await app.unquarantineDatastore(req.ctx, name);
      return { name, quarantined: input.quarantine === true };
    },
  },
  {
    method: 'GET',
    path: '/admin/datastore/{store}/snapshot',
    summary: 'one snapshot: manifest, size, verify state, notes (with files: the catalog of unencrypted archives)',
    input: { type: 'object', properties: { store: STORE, ns: NS, snapshot: { type: 'string', maxLength: 300 }, files: { type: 'boolean', optional: true } } },
    output: { type: 'object', additional: true, properties: {} },
    permission: privileged(['Datastore.Audit']),
    handler: (req, input) => app.showSnapshot(req.ctx, { store: input.store as string, snapshot: input.snapshot as string, listFiles: input.files === true, ...(input.ns ? { ns: input.ns as string } : {}) }),
  },
  {
    method: 'GET',
    path: '/admin/datastore/{store}/notes',
    summary: 'the notes of a snapshot',
    input: { type: 'object', properties: { store: STORE, ns: NS, snapshot: { type: 'string', maxLength: 300 } } },
    output: { type: 'string' },
    permission: privileged(['Datastore.Audit']),
    handler: (req, input) => app.snapshotNotes(req.ctx, { store: input.store as string, snapshot: input.snapshot as string, ...(input.ns ? { ns: input.ns as string } : {}) }),
  },
  {
    method: 'GET',
    path: '/admin/datastore/{store}/gc',
    summary: 'the result of the last garbage collection',
    input: { type: 'object', properties: { store: STORE } },
    output: { type: 'object', additional: true, properties: {} },
    permission: { kind: 'privilege', path: (input) => datastoreAclPath(input.store as string), privileges: ['Datastore.Audit'] },
    handler: async (req, input) => (await app.gcStatus(req.ctx, input.store as string)) ?? { status: 'never run' },
  },
  {
    method: 'GET',
    path: '/admin/verify',
    summary: 'per datastore: snapshots verified ok, failed and never; verify jobs with last and next run; notes on windows outgrown',
    input: { type: 'object', properties: {} },
    output: { type: 'object', additional: true, properties: {} },
    permission: { kind: 'handler', description: 'the datastores and jobs on which the caller has Datastore.Audit' },
    handler: async (req) => {
      const status = await app.verifyStatus(req.ctx);
      const mayAudit = (path: string): boolean => effectivePrivileges(req.acl, req.authId, path).has('Datastore.Audit');
      const paths = new Map((await req.ctx.jobs.verify.listStored()).map((j) => [`verify/${j.id}`, jobAclPath(j)]));
      const jobs = status.jobs.filter((j) => mayAudit(paths.get(j.job) ?? '/'));
      const shown = new Set(jobs.map((j) => j.job));
      return { datastores: status.datastores.filter((d) => mayAudit(datastoreAclPath(d.store))), jobs, notes: status.notes.filter((n) => shown.has(n.slice(0, n.indexOf(':')))) };
    },
  },
  // ---- verify and prune jobs ---------------------------------------------------------------------------------
  {
    method: 'GET',
    path: '/config/verify',
    summary: 'verify jobs',
    input: { type: 'object', properties: {} },
    output: ANY_LIST,
    permission: { kind: 'handler', description: 'the jobs whose datastore the caller may audit' },
    handler: async (req) => (await app.listVerifyJobs(req.ctx)).filter((j) => effectivePrivileges(req.acl, req.authId, jobAclPath(j)).has('Datastore.Audit')),
  },
  {
    method: 'POST',
    path: '/config/verify',
    summary: 'schedule verification of a datastore (namespace)',
    input: {
      type: 'object',
      properties: {
        id: JOB_ID,
        store: STORE,
        ns: NS,
        schedule: { type: 'string', maxLength: 200 },
        ...VERIFY_JOB_SETTINGS,
      },
    },
    output: { type: 'object', additional: true, properties: {} },
    permission: privileged(['Datastore.Verify']),
    handler: (req, input) =>
      app.createVerifyJob(req.ctx, {
        id: input.id as string,
        store: input.store as string,
        schedule: input.schedule as string,
        ...(input.ns ? { ns: input.ns as string } : {}),
        ...verifyJobSettings(input),
      }),
  },
  {
    method: 'PUT',
    path: '/config/verify/{id}',
    summary: 'change a verify job: given settings replace the stored ones, "delete" names settings to remove; a window replaces ignore-verified and outdated-after',
    input: {
      type: 'object',
      properties: {
        id: JOB_ID,
        schedule: { type: 'string', maxLength: 200, optional: true },
        ...VERIFY_JOB_SETTINGS,
        delete: { type: 'array', items: { type: 'string', enum: [...app.VERIFY_JOB_DELETABLE] }, maxItems: app.VERIFY_JOB_DELETABLE.length, optional: true },
      },
    },
    output: { type: 'object', additional: true, properties: {} },
    permission: { kind: 'handler', description: "Datastore.Verify on the job's datastore and namespace" },
    handler: async (req, input) => {
      const job = await verifyJobFor(req, input.id as string);
      return app.updateVerifyJob(req.ctx, job.id, {
        ...verifyJobSettings(input),
        ...(input.schedule !== undefined ? { schedule: input.schedule as string } : {}),
        ...(input.delete ? { delete: input.delete as app.VerifyJobDeletable[] } : {}),
      });
    },
  },
  {
    method: 'POST',
    path: '/admin/verify/{id}/run',
    summary: 'run a verify job now, as a task (its last-run state and notifications follow)',
    input: { type: 'object', properties: { id: JOB_ID } },
    output: UPID,
    permission: { kind: 'handler', description: "Datastore.Verify on the job's datastore and namespace" },
    handler: async (req, input) => {
      // Run only as checked: one whose settings do not is CORRUPT, naming what.
      const job = await req.ctx.jobs.verify.get((await verifyJobFor(req, input.id as string)).id);
      return runJobNow(req, 'verificationjob', `verify/${job.id}`, job.id, (ctx) => app.runVerifyJob(ctx, job));
    },
  },
  {
    method: 'DELETE',
    path: '/config/verify/{id}',
    summary: 'remove a verify job',
    input: { type: 'object', properties: { id: JOB_ID } },
    output: { type: 'object', properties: { removed: { type: 'string' } } },
    permission: { kind: 'handler', description: "Datastore.Verify on the job's datastore and namespace" },
    handler: async (req, input) => {
      const job = await verifyJobFor(req, input.id as string);
      await req.ctx.jobs.verify.remove(job.id);
      return { removed: job.id };
    },
  },
  {
    method: 'GET',
    path: '/config/prune',
    summary: 'prune jobs',
    input: { type: 'object', properties: {} },
    output: ANY_LIST,
    permission: { kind: 'handler', description: 'the jobs whose datastore the caller may audit' },
    handler: async (req) => (await app.listPruneJobs(req.ctx)).filter((j) => effectivePrivileges(req.acl, req.authId, jobAclPath(j)).has('Datastore.Audit')),
  },
  {
    method: 'POST',
    path: '/config/prune',
    summary: 'schedule pruning of every group of a namespace',
    input: { type: 'object', properties: { id: JOB_ID, store: STORE, ns: NS, schedule: { type: 'string', maxLength: 200 }, ...KEEP_INPUT, comment: { type: 'string', maxLength: 1024, optional: true } } },
    output: { type: 'object', additional: true, properties: {} },
    permission: privileged(['Datastore.Prune', 'Datastore.Modify']),
    handler: (req, input) => app.createPruneJob(req.ctx, { id: input.id as string, store: input.store as string, schedule: input.schedule as string, ...(input.ns ? { ns: input.ns as string } : {}), keep: keepInput(input), ...(input.comment ? { comment: input.comment as string } : {}) }),
  },
  {
    method: 'DELETE',
    path: '/config/prune/{id}',
    summary: 'remove a prune job',
    input: { type: 'object', properties: { id: JOB_ID } },
    output: { type: 'object', properties: { removed: { type: 'string' } } },
    permission: { kind: 'handler', description: "Datastore.Prune and Datastore.Modify on the job's datastore and namespace" },
    handler: async (req, input) => {
      const job = await pruneJobFor(req, input.id as string);
      await req.ctx.jobs.prune.remove(job.id);
      return { removed: job.id };
    },
  },
  {
    method: 'PUT',
    path: '/config/prune/{id}',
    summary: 'change a prune job: given settings replace the stored ones, "delete" names retention rules (or comment) to remove',
    input: {
      type: 'object',
      properties: {
        id: JOB_ID,
        schedule: { type: 'string', maxLength: 200, optional: true },
        ...KEEP_INPUT,
        comment: { type: 'string', maxLength: 1024, optional: true },
        delete: { type: 'array', items: { type: 'string', enum: [...app.PRUNE_JOB_DELETABLE] }, maxItems: app.PRUNE_JOB_DELETABLE.length, optional: true },
      },
    },
    output: { type: 'object', additional: true, properties: {} },
    permission: { kind: 'handler', description: "Datastore.Prune and Datastore.Modify on the job's datastore and namespace" },
    handler: async (req, input) => {
      const job = await pruneJobFor(req, input.id as string);
      return app.updatePruneJob(req.ctx, job.id, {
        keep: keepInput(input),
        ...(input.schedule !== undefined ? { schedule: input.schedule as string } : {}),
        ...(input.comment !== undefined ? { comment: input.comment as string } : {}),
        ...(input.delete ? { delete: input.delete as app.PruneJobDeletable[] } : {}),
      });
    },
  },
  // ---- server keys (sync encryption) -------------------------------------------------------------------------
  {
    method: 'GET',
    path: '/config/keys',
    summary: 'server keys: fingerprint, created, archived, the sync jobs that use each (never key material)',
    input: { type: 'object', properties: {} },
    output: ANY_LIST,
    permission: { kind: 'privilege', path: () => '/system/keys', privileges: ['Sys.Audit'] },
    handler: (req) => app.listServerKeys(req.ctx),
  },
  {
    method: 'POST',
    path: '/config/keys',
    summary: 'create a server key (random AES-256) for --encrypt-on-push / --associated-key',
    input: { type: 'object', properties: { name: KEY_NAME } },
    output: { type: 'object', additional: true, properties: {} },
    permission: { kind: 'privilege', path: () => '/system/keys', privileges: ['Sys.Modify'] },
    handler: (req, input) => app.createServerKey(req.ctx, { name: input.name as string }),
  },
  {
    method: 'GET',
    path: '/config/keys/{name}',
    summary: 'one server key with the sync jobs that use it',
    input: { type: 'object', properties: { name: KEY_NAME } },
    output: { type: 'object', additional: true, properties: {} },
    permission: { kind: 'privilege', path: () => '/system/keys', privileges: ['Sys.Audit'] },
    handler: (req, input) => app.serverKeyInfo(req.ctx, input.name as string),
  },
  {
    method: 'POST',
    path: '/config/keys/{name}/archive',
    summary: 'archive a server key: it still decrypts, never encrypts again',
    input: { type: 'object', properties: { name: KEY_NAME } },
    output: { type: 'object', additional: true, properties: {} },
    permission: { kind: 'privilege', path: () => '/system/keys', privileges: ['Sys.Modify'] },
    handler: (req, input) => req.ctx.keys.archive(input.name as string),
  },
  {
    method: 'DELETE',
    path: '/config/keys/{name}',
    summary: 'remove a server key (refused while a sync job uses it)',
    input: { type: 'object', properties: { name: KEY_NAME } },
    output: { type: 'object', properties: { removed: { type: 'string' } } },
    permission: { kind: 'privilege', path: () => '/system/keys', privileges: ['Sys.Modify'] },
    handler: async (req, input) => {
      await app.removeServerKey(req.ctx, input.name as string);
      return { removed: input.name as string };
    },
  },
  {
    method: 'GET',
    path: '/config/masterkey',
    summary: "the master key that wraps the server keys: configured, fingerprint, unlocked in the server and how (never key material)",
    input: { type: 'object', properties: {} },
    output: { type: 'object', additional: true, properties: { configured: { type: 'boolean' }, unlocked: { type: 'boolean' } } },
    permission: { kind: 'privilege', path: () => '/system/keys', privileges: ['Sys.Audit'] },
    handler: (req) => app.masterKeyStatus(req.ctx),
  },
  {
    method: 'POST',
    path: '/config/masterkey/unlock',
    summary: 'unlock the master key in the server with its passphrase (when its unlock file could not be read at start)',
    input: { type: 'object', properties: { passphrase: { type: 'string', minLength: 1, maxLength: 1024 } } },
    output: { type: 'object', additional: true, properties: { configured: { type: 'boolean' }, unlocked: { type: 'boolean' } } },
    permission: { kind: 'privilege', path: () => '/system/keys', privileges: ['Sys.Modify'] },
    handler: (req, input) => app.unlockMasterKey(req.ctx, input.passphrase as string),
  },
  // ---- users and tokens --------------------------------------------------------------------------------------
  {
    method: 'PUT',
    path: '/access/users/{userid}',
    summary: 'change a user (enable, expire, comment, email)',
    input: { type: 'object', properties: { userid: USERID, enable: { type: 'boolean', optional: true }, expire: { type: 'integer', minimum: 0, maximum: 253402300799, optional: true }, comment: { type: 'string', maxLength: 1024, optional: true }, email: { type: 'string', maxLength: 256, optional: true } } },
    output: { type: 'any' },
    permission: { kind: 'privilege', path: () => '/access', privileges: ['Sys.Modify'] },
    handler: (req, input) => app.updateUser(req.ctx, { userid: input.userid as string, ...(input.enable !== undefined ? { enable: input.enable as boolean } : {}), ...(input.expire !== undefined ? { expire: input.expire as number } : {}), ...(input.comment !== undefined ? { comment: input.comment as string } : {}), ...(input.email !== undefined ? { email: input.email as string } : {}) }),
  },
  {
    method: 'DELETE',
    path: '/access/users/{userid}',
    summary: 'remove a user with its tokens and ACL entries',
    input: { type: 'object', properties: { userid: USERID } },
    output: { type: 'object', properties: { removed: { type: 'string' } } },
    permission: { kind: 'privilege', path: () => '/access', privileges: ['Sys.Modify'] },
    handler: async (req, input) => {
      await app.removeUser(req.ctx, input.userid as string);
      return { removed: input.userid as string };
    },
  },
  {
    method: 'PUT',
    path: '/access/users/{userid}/password',
    summary: "set a user's password (one's own, or any with Sys.Modify on /access)",
    input: { type: 'object', properties: { userid: USERID, password: { type: 'string', minLength: 8, maxLength: 1024 } } },
    output: { type: 'object', properties: { userid: { type: 'string' }, changed: { type: 'boolean' } } },
    permission: { kind: 'handler', description: "one's own password (not with a token), or Sys.Modify on /access" },
    handler: async (req, input) => {
      if (input.userid !== req.authId) requirePrivilege(req.acl, req.authId, '/access', 'Sys.Modify');
      await app.setPassword(req.ctx, { userid: input.userid as string, password: input.password as string });
      return { userid: input.userid as string, changed: true };
    },
  },
  {
    method: 'GET',
    path: '/access/tokens',
    summary: "API tokens (never their secrets): one's own, or all (or one user's) with Sys.Audit on /access",
    input: { type: 'object', properties: { userid: { ...USERID, optional: true } } },
    output: ANY_LIST,
    permission: { kind: 'handler', description: "one's own tokens, or any with Sys.Audit on /access" },
    handler: async (req, input) => {
      const user = req.authId.split('!')[0] as string;
      const wanted = (input.userid as string | undefined) ?? (effectivePrivileges(req.acl, req.authId, '/access').has('Sys.Audit') ? undefined : user);
      if (wanted !== user) requirePrivilege(req.acl, req.authId, '/access', 'Sys.Audit');
      return app.listTokens(req.ctx, wanted);
    },
  },
  {
    method: 'DELETE',
    path: '/access/tokens/{tokenid}',
    summary: 'remove an API token and its ACL entries',
    input: { type: 'object', properties: { tokenid: { type: 'string', maxLength: 200 } } },
    output: { type: 'object', properties: { removed: { type: 'string' } } },
    permission: { kind: 'handler', description: "one's own tokens, or any with Sys.Modify on /access" },
    handler: async (req, input) => {
      const { user } = parseAuthId(input.tokenid as string);
      if (user !== req.authId.split('!')[0]) requirePrivilege(req.acl, req.authId, '/access', 'Sys.Modify');
      await app.removeToken(req.ctx, input.tokenid as string);
      return { removed: input.tokenid as string };
    },
  },
  // ---- notifications -----------------------------------------------------------------------------------------
  {
    method: 'DELETE',
    path: '/config/notifications/targets/{name}',
    summary: 'remove a notification target and its secrets',
    input: { type: 'object', properties: { name: NOTIFY_NAME } },
    output: { type: 'object', properties: { removed: { type: 'string' } } },
    permission: { kind: 'privilege', path: () => '/system/notifications', privileges: ['Sys.Modify'] },
    handler: async (req, input) => {
      await req.ctx.notifications.remove('target', input.name as string);
      return { removed: input.name as string };
    },
  },
  {
    method: 'POST',
    path: '/config/notifications/matchers',
    summary: 'route events to targets: conditions combine by mode (all by default); invert negates',
    input: {
      type: 'object',
      properties: {
        name: NOTIFY_NAME,
        ...MATCHER_FIELDS,
      },
    },
    output: { type: 'object', additional: true, properties: {} },
    permission: { kind: 'privilege', path: () => '/system/notifications', privileges: ['Sys.Modify'] },
    handler: (req, input) =>
      app.createNotificationMatcher(req.ctx, { name: input.name as string, targets: input.target as string[], ...matcherInput(input) }),
  },
  {
    method: 'DELETE',
    path: '/config/notifications/matchers/{name}',
    summary: 'remove a matcher',
    input: { type: 'object', properties: { name: NOTIFY_NAME } },
    output: { type: 'object', properties: { removed: { type: 'string' } } },
    permission: { kind: 'privilege', path: () => '/system/notifications', privileges: ['Sys.Modify'] },
    handler: async (req, input) => {
      await req.ctx.notifications.remove('matcher', input.name as string);
      return { removed: input.name as string };
    },
  },
  {
    method: 'PUT',
    path: '/config/notifications/targets/{name}',
    summary: 'change a notification target: given values replace the stored ones, secrets stay unless given',
    input: { type: 'object', properties: { name: NOTIFY_NAME, ...TARGET_FIELDS } },
    output: { type: 'object', properties: { type: { type: 'string' }, name: { type: 'string' } } },
    permission: { kind: 'privilege', path: () => '/system/notifications', privileges: ['Sys.Modify'] },
    handler: (req, input) => {
      const { name, 'secret-headers': secretHeaders, headers, ...rest } = input as Record<string, unknown>;
      return app.updateNotificationTarget(req.ctx, name as string, { ...(rest as Partial<app.TargetInput>), ...(headers ? { headers: headers as string[] } : {}), ...(secretHeaders ? { secretHeaders: secretHeaders as string[] } : {}) });
    },
  },
  {
    method: 'PUT',
    path: '/config/notifications/matchers/{name}',
    summary: 'change a matcher: given values replace the stored ones (lists as a whole)',
    input: { type: 'object', properties: { name: NOTIFY_NAME, ...MATCHER_FIELDS, target: { type: 'array', items: NOTIFY_NAME, maxItems: 32, optional: true } } },
    output: { type: 'object', additional: true, properties: {} },
    permission: { kind: 'privilege', path: () => '/system/notifications', privileges: ['Sys.Modify'] },
    handler: (req, input) => app.updateNotificationMatcher(req.ctx, input.name as string, { ...(input.target ? { targets: input.target as string[] } : {}), ...matcherInput(input) }),
  },
  // ---- remotes and sync jobs, one at a time ------------------------------------------------------------------
  {
    method: 'GET',
    path: '/config/remote/{name}',
    summary: 'one remote (never its secret)',
    input: { type: 'object', properties: { name: REMOTE } },
    output: { type: 'object', additional: true, properties: {} },
    permission: { kind: 'privilege', path: (input) => `/remote/${input.name as string}`, privileges: ['Remote.Audit'] },
    handler: (req, input) => req.ctx.remotes.get(input.name as string),
  },
  {
    method: 'GET',
    path: '/admin/sync/{id}',
    summary: 'one sync job with its options and last run',
    input: { type: 'object', properties: { id: JOB_ID } },
    output: { type: 'object', additional: true, properties: {} },
    permission: { kind: 'handler', description: "Datastore.Audit on the job's local datastore" },
    handler: async (req, input) => {
      const job = await req.ctx.jobs.sync.get(input.id as string);
      requirePrivilege(req.acl, req.authId, datastoreAclPath(job.store), 'Datastore.Audit');
      return app.showSyncJob(req.ctx, job.id);
    },
  },
  // ---- the node ----------------------------------------------------------------------------------------------
  {
    method: 'GET',
    path: '/nodes/localhost/services',
    summary: "the server's services and their states",
    input: { type: 'object', properties: {} },
    output: { type: 'object', additional: true, properties: {} },
    permission: { kind: 'privilege', path: () => '/system', privileges: ['Sys.Audit'] },
    handler: (req) => app.servicesStatus(req.ctx),
  },
  {
    method: 'PUT',
    path: '/nodes/localhost/certificate',
    summary: 'install an own certificate and its key (PEM; checked to be a pair); used from the next server start',
    input: { type: 'object', properties: { certificate: { type: 'string', maxLength: 65536 }, key: { type: 'string', maxLength: 65536 } } },
    output: { type: 'object', additional: true, properties: {} },
    permission: { kind: 'privilege', path: () => '/system/certificates', privileges: ['Sys.Modify'] },
    handler: (req, input) => app.installCertificate(req.ctx.paths.configDir, { cert: Buffer.from(input.certificate as string), key: Buffer.from(input.key as string) }),
  },
  {
    method: 'GET',
    path: '/nodes/localhost/certificate',
    summary: 'the server certificate: subject, validity, SANs and SHA-256 fingerprint',
    input: { type: 'object', properties: {} },
    output: { type: 'object', additional: true, properties: {} },
    permission: { kind: 'authenticated' },
    handler: (req) => app.certificateInfo(req.ctx.paths.configDir),
  },
];
