/**
 * Every route of the API, walked from the route table: (1) a token without any privilege is refused on each
 * route that needs one, and nothing changes on disk; (2) fuzzed bodies and parameters (fast-check) never give a
 * 5xx or a crash, and no file appears outside the server's home. Runs the real dispatcher in this process on a
 * home prepared with the real command (datastore with a snapshot, remote, jobs, keys, users, notifications).
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomUUID } from 'node:crypto';
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import fc from 'fast-check';
import { ApiDispatcher, ROUTES } from '../src/api/index.ts';
import type { Route } from '../src/api/route.ts';
import { BackupSessions, ReaderSessions } from '../src/app/index.ts';
import { makeContext } from '../src/bin/ironcore-backup.ts';
import { AccessConfig, resolvePaths } from '../src/config/index.ts';
import { TaskManager, TaskStore } from '../src/jobs/index.ts';
import type { Schema } from '../src/lib/index.ts';
import { ibs } from './helpers.ts';

let parent: string;
let home: string;
let canary: string;
let dispatcher: ApiDispatcher;
let sessions: { backups: BackupSessions; readers: ReaderSessions };
let tasks: TaskStore;
const secrets: Record<string, string> = {};
let snapshot = '';
let digest = '';
let upid = '';

/** Values that name the objects the fixture created, by field name and route. */
function known(route: Route, field: string): unknown {
  const p = route.path;
  switch (field) {
    case 'store':
      return 'store1';
    case 'ns':
      return '';
    case 'snapshot':
      return snapshot;
    case 'group':
      return 'host/web1';
    case 'digests':
      return [digest];
    case 'upid':
      return upid;
    case 'session':
      return randomUUID();
    case 'userid':
      return 'reader@ibs';
    case 'tokenid':
      return 'reader@ibs!t';
    case 'auth-id':
      return 'reader@ibs';
    case 'path':
      return p === '/admin/datastore' ? undefined : '/datastore/store1';
    case 'role':
      return 'DatastoreReader';
    case 'id':
      return p.startsWith('/admin/sync') ? 'job1' : p.startsWith('/config/verify') ? 'verify1' : p.startsWith('/config/prune') ? 'prune1' : undefined;
    case 'name':
      if (p.startsWith('/config/remote')) return 'r1';
      if (p.startsWith('/config/keys')) return 'k1';
      if (p.startsWith('/config/notifications/targets')) return 'hook1';
      if (p.startsWith('/config/notifications/matchers')) return 'match1';
      return undefined;
    case 'target':
      return ['hook1'];
    case 'event':
      return 'daily';
    default:
      return undefined;
  }
}

/** Any value the schema accepts. */
function arbitraryFor(schema: Schema): fc.Arbitrary<unknown> {
  switch (schema.type) {
    case 'string':
      if (schema.enum) return fc.constantFrom(...schema.enum);
      if (schema.pattern) return fc.stringMatching(schema.pattern);
      return fc.string({ minLength: schema.minLength ?? 0, maxLength: Math.min(schema.maxLength ?? 40, 40) });
    case 'integer':
      return fc.integer({ min: schema.minimum ?? 0, max: Math.min(schema.maximum ?? 1000, 1_000_000) });
    case 'boolean':
      return fc.boolean();
    case 'array':
      return fc.array(arbitraryFor(schema.items), { maxLength: Math.min(schema.maxItems ?? 3, 3) });
    case 'object':
      return fc.record(Object.fromEntries(Object.entries(schema.properties).map(([k, v]) => [k, arbitraryFor(v)])));
    case 'any':
      return fc.jsonValue({ maxDepth: 2 });
  }
}

/** One valid input: the fixture's objects where a field names one, otherwise a value the schema accepts. */
function sampleInput(route: Route): Record<string, unknown> {
  const input: Record<string, unknown> = {};
  for (const [field, schema] of Object.entries(route.input.properties)) {
    if (schema.optional) continue;
    const good = known(route, field);
    const fits = good !== undefined && !(schema.type === 'string' && schema.pattern && typeof good === 'string' && !schema.pattern.test(good));
    input[field] = fits ? good : fc.sample(arbitraryFor(schema), { numRuns: 1, seed: 7 })[0];
  }
  return input;
}

interface Sent {
  status: number;
  body: unknown;
  where: string;
}

/**
 * Sends one request: path parameters from `input` (or from `params` when given), the rest as the query (GET,
 * DELETE, binary routes) or as the JSON body, which may be any JSON value. `rawParams` puts parameters into the
 * path unescaped.
 */
async function send(route: Route, input: unknown, secret: string, options: { params?: Record<string, unknown>; rawParams?: boolean } = {}): Promise<Sent> {
  const plain = input !== null && typeof input === 'object' && !Array.isArray(input);
  const fields: Record<string, unknown> = plain ? { ...(input as Record<string, unknown>) } : {};
  let path = route.path;
  for (const m of route.path.match(/\{(\w+)\}/g) ?? []) {
    const name = m.slice(1, -1);
    const value = String((options.params ?? fields)[name] ?? '');
    delete fields[name];
    path = path.replace(m, options.rawParams ? value : encodeURIComponent(value));
  }
  const query = route.method === 'GET' || route.method === 'DELETE' || route.body === 'binary';
  const search = new URLSearchParams();
  if (query) for (const [k, v] of Object.entries(fields)) for (const one of Array.isArray(v) ? v : [v]) search.append(k, typeof one === 'string' ? one : JSON.stringify(one));
  const body: string | Buffer = route.body === 'binary' ? Buffer.from('not a chunk frame') : query ? '' : JSON.stringify(plain ? fields : (input ?? {}));
  const url = `/api2/json${path}${search.size > 0 ? `?${search}` : ''}`;
  const authId = secret === secrets.nobody ? 'nobody@ibs!t' : 'admin@ibs!t';
  const r = await dispatcher.dispatch(route.method, url, { authorization: `IBSAPIToken=${authId}:${secret}` }, body, new AbortController().signal);
  return { status: r.status, body: r.body, where: `${route.method} ${url.slice(0, 300)}` };
}

/** Every file under `dir` with the hash of its content (what "nothing changed" compares). */
async function tree(dir: string, skip: (rel: string) => boolean = () => false): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  for (const e of await readdir(dir, { withFileTypes: true, recursive: true })) {
    if (!e.isFile()) continue;
    const full = join(e.parentPath, e.name);
    const rel = relative(dir, full);
    if (skip(rel)) continue;
    out.set(rel, createHash('sha256').update(await readFile(full).catch(() => Buffer.alloc(0))).digest('hex'));
  }
  return out;
}

const must = async (args: string[], env: Record<string, string> = {}): Promise<string> => {
  const r = await ibs(home, args, env);
  assert.equal(r.code, 0, `${args.join(' ')}: ${r.stderr}`);
  return r.stdout;
};

before(async () => {
  parent = await mkdtemp(join(tmpdir(), 'ibs-matrix-'));
  home = join(parent, 'home');
  canary = join(parent, 'canary');
  await mkdir(canary);
  await writeFile(join(canary, 'keep.txt'), 'untouched\n');
  const src = join(parent, 'canary', 'src');
  await mkdir(src);
  await writeFile(join(src, 'a.txt'), 'some data to back up\n'.repeat(1000));
  await must(['datastore', 'create', 'store1']);
  const backup = JSON.parse(await must(['backup', 'create', '--store', 'store1', '--id', 'web1', `root.tar:${src}`, '--output', 'json'])) as { snapshot: string };
  snapshot = backup.snapshot;
  for (const [user, role] of [['admin@ibs', 'Admin'], ['reader@ibs', 'DatastoreReader'], ['nobody@ibs', undefined]] as const) {
    await must(['user', 'create', user]);
    secrets[user.split('@')[0] as string] = (JSON.parse(await must(['token', 'create', `${user}!t`, '--output', 'json'])) as { secret: string }).secret;
    if (role) for (const id of [user, `${user}!t`]) await must(['acl', 'update', role === 'Admin' ? '/' : '/datastore/store1', role, '--auth-id', id]);
  }
  const secretFile = join(parent, 'remote-secret');
  await writeFile(secretFile, 'x'.repeat(32), { mode: 0o600 });
  await must(['remote', 'create', 'r1', '--host', '127.0.0.1', '--port', '9', '--auth-id', 'sync@ibs!t', '--secret-file', secretFile, '--fingerprint', Array.from({ length: 32 }, () => 'ab').join(':')]);
  await must(['sync', 'create', '--name', 'job1', '--store', 'store1', '--remote', 'r1', '--remote-store', 'far', '--direction', 'pull']);
  await must(['verify', 'job', 'create', 'verify1', '--store', 'store1', '--schedule', 'daily']);
  await must(['prune', 'job', 'create', 'prune1', '--store', 'store1', '--schedule', 'daily', '--keep-last', '3']);
  await must(['key', 'create', '--name', 'k1']);
  await must(['notification', 'target', 'create', 'hook1', '--type', 'webhook', '--url', 'http://127.0.0.1:9/hook']);
  await must(['notification', 'matcher', 'create', 'match1', '--target', 'hook1']);
  const chunks = await readdir(join(home, 'data', 'store1', '.chunks'), { recursive: true });
  digest = chunks.map((c) => c.split('/').pop() as string).find((c) => /^[0-9a-f]{64}$/.test(c)) as string;

  const paths = resolvePaths({ IRONCORE_HOME: home });
  tasks = await TaskStore.open(paths.stateDir);
  const manager = await TaskManager.start({ store: tasks, node: 'test' });
  dispatcher = new ApiDispatcher({
    routes: ROUTES,
    auth: new AccessConfig(paths.configDir),
    tasks: manager,
    backups: (sessions = { backups: new BackupSessions(), readers: new ReaderSessions() }).backups,
    readers: sessions.readers,
    ticketKey: Buffer.alloc(32, 9),
    makeContext: (authId, signal) => makeContext(paths, authId, undefined, signal),
  });
  // A task of the admin's, so that task routes have one to name.
  const verify = ROUTES.find((r) => r.method === 'POST' && r.path === '/admin/datastore/{store}/verify') as Route;
  const started = await send(verify, { store: 'store1' }, secrets.admin as string);
  assert.equal(started.status, 200, JSON.stringify(started.body));
  upid = (started.body as { data: string }).data;
  // It ends before the matrix compares the home before and after.
  for (let i = 0; i < 600 && ['queued', 'running'].includes(tasks.get(upid).state); i++) await new Promise((r) => setTimeout(r, 50));
  assert.equal(tasks.get(upid).state, 'ok');
});

after(async () => {
  await sessions?.backups.close();
  await sessions?.readers.closeAll();
  tasks?.close();
  await rm(parent, { recursive: true, force: true });
});

/** Logs and task records may grow with requests; everything else must stay as it was. */
const volatile = (rel: string): boolean => rel.startsWith('log/') || rel.startsWith(join('lib', 'tasks')) || /\.db(-wal|-shm)?$/.test(rel);

test('permission matrix: on every route, a token without privileges is refused (403), or sees only its own; nothing changes', async () => {
  const before = await tree(home, volatile);
  const leaks = ['store1', 'r1', 'job1', 'verify1', 'prune1', 'k1', 'hook1', 'match1', 'reader@ibs', 'admin@ibs'];
  let refused = 0;
  for (const route of ROUTES) {
    if (route.permission.kind === 'public') continue;
    const r = await send(route, sampleInput(route), secrets.nobody as string);
    const text = JSON.stringify(r.body);
    if (route.permission.kind === 'privilege') {
      assert.equal(r.status, 403, `${r.where}: expected 403, got ${r.status} ${text}`);
      assert.match(text, /lacks [A-Z][a-z]+\.[A-Za-z]+( or [A-Z][a-z]+\.[A-Za-z]+)* on \//, `${r.where}: the denial names privilege and path`);
      refused++;
    } else if (route.permission.kind === 'handler') {
      assert.ok([200, 403, 404].includes(r.status), `${r.where}: expected 403, 404 or a filtered answer, got ${r.status} ${text}`);
      if (r.status === 200) for (const name of leaks) assert.ok(!text.includes(`"${name}`), `${r.where}: answer shows "${name}" to a token without privileges: ${text}`);
      if (r.status === 403) refused++;
    } else {
      assert.ok(r.status < 500, `${r.where}: ${r.status} ${text}`);
    }
  }
  assert.ok(refused > 60, `${refused} routes refused`);
  assert.deepEqual(await tree(home, volatile), before, 'nothing changed on disk');
});

/** Values that have broken servers: traversal, NUL, control characters, bad escapes, huge and odd numbers. */
const NASTY = fc.constantFrom('..', '.', '../../etc/passwd', '/etc/passwd', 'a/../../b', '%2e%2e%2f', '%', '%zz', '\u0000', 'a\nb', ' ', '', 'x'.repeat(5000), 'con', '💥', '-1', 'NaN', '1e309', '0x10', 'host/../../x', 'UPID:', '__proto__', 'constructor');

/** Routes that reach outside this machine's test fixture (connect to a remote, send a notification): not fuzzed. */
const OUTWARD = new Set(['POST /config/remote/{name}/test', 'POST /admin/sync/{id}/run', 'POST /admin/sync/{id}/repair', 'GET /admin/sync/{id}/diff', 'POST /config/notifications/targets/{name}/test']);

test('fuzzed bodies and parameters on every route: never a 5xx, never a file outside the home', async () => {
  const routes = ROUTES.filter((r) => !OUTWARD.has(`${r.method} ${r.path}`));
  const tally = new Map<number, number>();
  for (const route of routes) {
    const field = (name: string, schema: Schema): fc.Arbitrary<unknown> => {
      const good = known(route, name);
      return fc.oneof(arbitraryFor(schema), NASTY, fc.jsonValue({ maxDepth: 2 }), ...(good !== undefined ? [fc.constant(good)] : []));
    };
    const names = (route.path.match(/\{(\w+)\}/g) ?? []).map((m) => m.slice(1, -1));
    const params = fc.record(Object.fromEntries(names.map((n) => [n, field(n, route.input.properties[n] as Schema)])));
    const rest = Object.entries(route.input.properties).filter(([k]) => !names.includes(k));
    const shaped = fc.record(Object.fromEntries(rest.map(([k, v]) => [k, field(k, v)])), { requiredKeys: [] });
    const inputs = fc.oneof({ weight: 6, arbitrary: shaped }, fc.dictionary(fc.string({ maxLength: 12 }), fc.jsonValue({ maxDepth: 2 })), fc.jsonValue({ maxDepth: 1 }));
    await fc.assert(
      fc.asyncProperty(params, inputs, fc.boolean(), async (p, input, rawParams) => {
        // A datastore may be created anywhere an administrator says: the fuzz keeps that out of its inputs.
        if (route.path === '/admin/datastore' && input !== null && typeof input === 'object' && 'path' in input) delete (input as Record<string, unknown>).path;
        const r = await send(route, input, secrets.admin as string, { params: p, rawParams });
        tally.set(r.status, (tally.get(r.status) ?? 0) + 1);
        assert.ok(r.status < 500, `${r.where} ${JSON.stringify(input).slice(0, 300)}: ${r.status} ${JSON.stringify(r.body).slice(0, 300)}`);
      }),
      { numRuns: 25, seed: 42, endOnFailure: true },
    );
  }
  // The fuzz reaches the handlers, not only the validator: a good share of requests succeed.
  assert.ok((tally.get(200) ?? 0) > 200, `answers by status: ${JSON.stringify([...tally])}`);
  // Tasks the fuzz started (verify, GC, prune) end before the home is checked.
  for (let i = 0; i < 600 && tasks.list({ state: 'running' }).length + tasks.list({ state: 'queued' }).length > 0; i++) await new Promise((r) => setTimeout(r, 50));
  assert.deepEqual((await readdir(parent)).sort(), ['canary', 'home', 'remote-secret']);
  assert.deepEqual([...(await tree(canary)).keys()].sort(), ['keep.txt', join('src', 'a.txt')]);
  assert.equal(await readFile(join(canary, 'keep.txt'), 'utf8'), 'untouched\n');
  for (const rel of (await tree(home)).keys()) assert.match(rel, /^(etc|lib|log|data)\//, `file ${rel} outside the home's directories`);
});
