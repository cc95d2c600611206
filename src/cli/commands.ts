import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { LocalApiClient } from '../client/index.ts';
import { ERROR_CODES, IbsError, KEEP_RULES, type CryptKey, type ErrorCode, type KeepOptions } from '../core/index.ts';
import { formatBytes, formatDuration, formatRate } from '../lib/index.ts';
import * as app from '../app/index.ts';
import type { AppContext } from '../app/index.ts';
import { keyValues, table } from './render.ts';
import { readPassphrase } from './passphrase.ts';

export type OptionSpec = { type: 'string' | 'boolean'; multiple?: boolean; short?: string; help: string };

export interface ParsedArgs {
  positionals: string[];
  values: Record<string, string | boolean | string[] | undefined>;
}

export interface Command {
  path: string[];
  usage: string;
  summary: string;
  options?: Record<string, OptionSpec>;
  /** Number of positionals: exact or [min, max]. */
  positionals: number | [number, number];
  run(ctx: AppContext, args: ParsedArgs): Promise<unknown>;
  /** The exit code for a result (default 0): `sync diff` exits 1 when the sides differ, like diff(1). */
  exitCode?(result: never): number;
  /** Text output; JSON output is the result itself. */
  text?(result: never): string;
  /**
   * The same command against a server (`--repository USER@REALM!TOKEN@HOST[:PORT]:STORE`, which then takes the
   * place of the STORE argument): the API call whose answer `text` shows like a local result.
   */
  remote?(args: ParsedArgs): RemoteCall;
}

/** One API call that does a command's work on a server. */
export interface RemoteCall {
  method: 'GET' | 'POST' | 'PUT' | 'DELETE';
  path: string;
  params?: Record<string, unknown>;
  /** The call answers a task's UPID: its log is followed to the end; a failed task exits with this code. */
  task?: ErrorCode;
  /** The answer (for a task: the result it logged) in the shape `text` takes; default as it is. */
  result?(data: unknown): unknown;
}

/** The usage line, with how a command that also runs on a server is given one. */
export function usageOf(command: Command): string {
  return command.remote ? `${command.usage}   (on a server: --repository USER@REALM!TOKEN@HOST[:PORT]:STORE in place of STORE)` : command.usage;
}

interface JsonClient {
  request<T = unknown>(method: 'GET' | 'POST' | 'PUT' | 'DELETE', path: string, params?: Record<string, unknown>): Promise<T>;
}

/**
 * Runs a command's remote call on the server of `repository`: a task is followed (its log on the reporter), its
 * logged result is the command's result; a failed task throws with the call's error code.
 */
export async function runRemote(ctx: AppContext, command: Command, args: ParsedArgs, repository: string): Promise<unknown> {
  const call = (command.remote as (a: ParsedArgs) => RemoteCall)(args);
  const { client } = await app.connectRepository({ repository, fingerprint: str(args, 'fingerprint') ?? process.env.IBS_FINGERPRINT, secretFile: str(args, 'secret-file'), secret: process.env.IBS_SECRET });
  try {
    const data = await client.request(call.method, call.path, call.params ?? {});
    if (!call.task) return call.result ? call.result(data) : data;
    const upid = data as string;
    ctx.reporter.info(`task ${upid}`);
    const r = await followTask(client, upid, logTo(ctx));
    if (r.state !== 'ok' && r.state !== 'warnings') throw new IbsError(r.code ?? call.task, `${command.path.join(' ')} failed on the server: ${r.status ?? r.state} (task ${upid})`, { details: { upid } });
    const logged = /^\S+ result: (.*)$/m.exec(r.text)?.[1];
    const result = logged !== undefined ? (JSON.parse(logged) as unknown) : { upid, state: r.state };
    return call.result ? call.result(result) : result;
  } finally {
    await client.close();
  }
}

/**
 * The repository a command runs on: `--repository`, or IBS_REPOSITORY when the STORE argument is left out.
 * Its datastore becomes the STORE argument.
 */
export function remoteRepository(command: Command, args: ParsedArgs, minPositionals: number): string | undefined {
  if (!command.remote) return undefined;
  // STORE is left out when an argument is missing, or when the first one cannot be a datastore name (a group).
  const storeLeftOut = args.positionals.length === minPositionals - 1 || (args.positionals[0]?.includes('/') ?? false);
  const repository = str(args, 'repository') ?? (process.env.IBS_REPOSITORY && storeLeftOut ? process.env.IBS_REPOSITORY : undefined);
  if (repository !== undefined) args.positionals.unshift(app.parseRepository(repository).store);
  return repository;
}

/** The datastore path below /admin/datastore of the STORE argument (position 0). */
const storeApi = (a: ParsedArgs, sub = ''): string => `/admin/datastore/${encodeURIComponent(a.positionals[0] as string)}${sub}`;
const nsParam = (a: ParsedArgs): Record<string, string> => (str(a, 'ns') ? { ns: str(a, 'ns') as string } : {});

const str = (args: ParsedArgs, name: string): string | undefined => args.values[name] as string | undefined;
const list = (args: ParsedArgs, name: string): string[] => (args.values[name] as string[] | undefined) ?? [];
const flag = (args: ParsedArgs, name: string): boolean => args.values[name] === true;
const pos = (args: ParsedArgs, i: number): string => args.positionals[i] as string;

function wholeNumber(value: string | undefined, name: string, max = 1_000_000): number | undefined {
  if (value === undefined) return undefined;
  if (!/^\d+$/.test(value) || Number(value) > max) throw new IbsError('INVALID_ARGUMENT', `Invalid --${name} "${value}": expected a whole number from 0 to ${max}`);
  return Number(value);
}

const KEEP_OPTIONS: Record<string, OptionSpec> = Object.fromEntries(KEEP_RULES.map((r) => [r, { type: 'string', help: `retention: ${r.replace('keep-', '')} periods to keep` }]));

function keepFrom(args: ParsedArgs): KeepOptions {
  const keep: KeepOptions = {};
  for (const rule of KEEP_RULES) {
    const n = wholeNumber(str(args, rule), rule, 100000);
    if (n !== undefined) keep[rule] = n;
  }
  return keep;
}

const CONCURRENT_SNAPSHOTS = { 'max-concurrent-snapshots': { type: 'string', help: 'snapshots verified at once, 1 to 32 (default 1)' } } as const satisfies Record<string, OptionSpec>;

/** --max-concurrent-snapshots as a number (its range, 1 to 32, is checked where verifications start). */
function concurrentSnapshots(args: ParsedArgs): { maxConcurrentSnapshots?: number } {
  const n = wholeNumber(str(args, 'max-concurrent-snapshots'), 'max-concurrent-snapshots', 32);
  return n !== undefined ? { maxConcurrentSnapshots: n } : {};
}

const TARGET_OPTIONS = {
  url: { type: 'string', help: 'webhook URL ({{title}}, {{severity}}, … may appear in it)' },
  method: { type: 'string', help: 'webhook method: POST (default), PUT or GET' },
  header: { type: 'string', multiple: true, help: 'webhook header NAME=VALUE (repeatable)' },
  'secret-header': { type: 'string', multiple: true, help: 'webhook header kept secret, e.g. Authorization=Bearer … (repeatable)' },
  body: { type: 'string', help: 'webhook body template with {{title}}, {{message}}, {{severity}}, {{type}}, {{time}}, {{fields.NAME}}' },
  mailto: { type: 'string', multiple: true, help: 'recipient (repeatable)' },
  from: { type: 'string', help: 'sender address' },
  path: { type: 'string', help: 'sendmail program (default /usr/sbin/sendmail)' },
  server: { type: 'string', help: 'SMTP server' },
  port: { type: 'string', help: 'SMTP port (default 587, or 465 with --mode tls)' },
  mode: { type: 'string', help: 'SMTP: starttls (default), tls or insecure' },
  username: { type: 'string', help: 'SMTP user' },
  'password-file': { type: 'string', help: 'SMTP password from this file (or IBS_SMTP_PASSWORD)' },
  comment: { type: 'string', help: 'free text' },
} as const satisfies Record<string, OptionSpec>;

/** The target values given on the command line (only those: `update` keeps the rest). */
async function targetChange(a: ParsedArgs): Promise<Partial<app.TargetInput>> {
  const password = str(a, 'password-file') !== undefined || process.env.IBS_SMTP_PASSWORD !== undefined ? await readPassphrase({ file: str(a, 'password-file'), envName: 'IBS_SMTP_PASSWORD', prompt: '' }) : undefined;
  const given = (name: string): boolean => a.values[name] !== undefined;
  return {
    ...(str(a, 'url') !== undefined ? { url: str(a, 'url') as string } : {}),
    ...(str(a, 'method') !== undefined ? { method: str(a, 'method') as string } : {}),
    ...(given('header') ? { headers: list(a, 'header') } : {}),
    ...(given('secret-header') ? { secretHeaders: list(a, 'secret-header') } : {}),
    ...(str(a, 'body') !== undefined ? { body: str(a, 'body') as string } : {}),
    ...(given('mailto') ? { mailto: list(a, 'mailto') } : {}),
    ...(str(a, 'from') !== undefined ? { from: str(a, 'from') as string } : {}),
    ...(str(a, 'path') !== undefined ? { path: str(a, 'path') as string } : {}),
    ...(str(a, 'server') !== undefined ? { server: str(a, 'server') as string } : {}),
    ...(str(a, 'port') !== undefined ? { port: wholeNumber(str(a, 'port'), 'port', 65535) as number } : {}),
    ...(str(a, 'mode') !== undefined ? { mode: str(a, 'mode') as string } : {}),
    ...(str(a, 'username') !== undefined ? { username: str(a, 'username') as string } : {}),
    ...(password !== undefined ? { password } : {}),
    ...(str(a, 'comment') !== undefined ? { comment: str(a, 'comment') as string } : {}),
  };
}

const MATCHER_OPTIONS = {
  target: { type: 'string', multiple: true, help: 'target to notify (repeatable)' },
  'match-severity': { type: 'string', help: 'comma-separated: info, notice, warning, error' },
  'match-type': { type: 'string', help: 'comma-separated event types' },
  'match-datastore': { type: 'string', help: 'comma-separated datastores' },
  'match-job': { type: 'string', help: 'comma-separated job ids (verify/NAME, prune/NAME, gc/STORE)' },
  'match-calendar': { type: 'string', help: 'only events inside this calendar window, e.g. "mon..fri 08..17:*"' },
  mode: { type: 'string', help: 'all (default) or any' },
  invert: { type: 'boolean', help: 'notify when the conditions do not hold' },
  'no-invert': { type: 'boolean', help: 'notify when the conditions hold (the default; undoes --invert)' },
  disable: { type: 'boolean', help: 'match nothing (the matcher is kept, for --enable later)' },
  enable: { type: 'boolean', help: 'match again after --disable' },
  comment: { type: 'string', help: 'free text' },
} as const satisfies Record<string, OptionSpec>;

/** The matcher values given on the command line (targets apart). */
function matcherChange(a: ParsedArgs): Partial<app.MatcherInput> {
  if (flag(a, 'disable') && flag(a, 'enable')) throw new IbsError('INVALID_ARGUMENT', '--disable and --enable exclude each other: give one');
  if (flag(a, 'invert') && flag(a, 'no-invert')) throw new IbsError('INVALID_ARGUMENT', '--invert and --no-invert exclude each other: give one');
  const csv = (name: string): string[] | undefined => str(a, name)?.split(',').map((x) => x.trim()).filter(Boolean);
  return {
    ...(csv('match-severity') ? { severities: csv('match-severity') as string[] } : {}),
    ...(csv('match-type') ? { types: csv('match-type') as string[] } : {}),
    ...(csv('match-datastore') ? { datastores: csv('match-datastore') as string[] } : {}),
    ...(csv('match-job') ? { jobs: csv('match-job') as string[] } : {}),
    ...(str(a, 'match-calendar') ? { calendar: str(a, 'match-calendar') as string } : {}),
    ...(str(a, 'mode') ? { mode: str(a, 'mode') as string } : {}),
    ...(flag(a, 'invert') ? { invert: true } : flag(a, 'no-invert') ? { invert: false } : {}),
    ...(flag(a, 'disable') ? { disable: true } : flag(a, 'enable') ? { disable: false } : {}),
    ...(str(a, 'comment') ? { comment: str(a, 'comment') as string } : {}),
  };
}

const STORE_NS = { ns: { type: 'string', help: 'namespace (a/b/c); default the root' } } as const satisfies Record<string, OptionSpec>;
export const REMOTE_OPTIONS = {
  repository: { type: 'string', help: 'datastore on a server: USER@REALM!TOKEN@HOST[:PORT]:STORE (or IBS_REPOSITORY)' },
  fingerprint: { type: 'string', help: "the server certificate's SHA-256 fingerprint (or IBS_FINGERPRINT)" },
  'secret-file': { type: 'string', help: "file with the API token's secret (or IBS_SECRET)" },
} as const satisfies Record<string, OptionSpec>;
const KEY_OPTIONS = {
  keyfile: { type: 'string', help: 'key file for encrypted snapshots' },
  'passphrase-file': { type: 'string', help: 'read the key passphrase from this file (or set IBS_PASSPHRASE)' },
} as const satisfies Record<string, OptionSpec>;

/** The settings of a verify job (create adds its datastore and namespace, which an update cannot change). */
const VERIFY_JOB_OPTIONS = {
  schedule: { type: 'string', help: 'calendar event' },
  'verify-window-days': { type: 'string', help: 'verify every snapshot at least once in this many days (1 to 3650), spreading the work over the runs; replaces --ignore-verified/--outdated-after' },
  'ignore-verified': { type: 'boolean', help: 'skip snapshots verified ok recently' },
  'outdated-after': { type: 'string', help: 're-verify after this many days' },
  ...CONCURRENT_SNAPSHOTS,
  'notification-mode': { type: 'string', help: 'always (default), error or never' },
  comment: { type: 'string', help: 'free text' },
} as const satisfies Record<string, OptionSpec>;

/** The settings of a verify job given on the command line (ranges are checked with the job). */
function verifyJobArgs(a: ParsedArgs): { ignoreVerified?: boolean; outdatedAfterDays?: number; windowDays?: number; maxConcurrentSnapshots?: number; notificationMode?: 'always' | 'error' | 'never'; comment?: string } {
  const mode = str(a, 'notification-mode');
  if (mode !== undefined && !['always', 'error', 'never'].includes(mode)) throw new IbsError('INVALID_ARGUMENT', `Invalid --notification-mode "${mode}": expected always, error or never`);
  const outdated = wholeNumber(str(a, 'outdated-after'), 'outdated-after', 36500);
  const window = str(a, 'verify-window-days');
  if (window !== undefined && !/^\d+$/.test(window)) throw new IbsError('INVALID_ARGUMENT', `Invalid --verify-window-days "${window}": expected a whole number of days from 1 to 3650`);
  return {
    ...(flag(a, 'ignore-verified') ? { ignoreVerified: true } : {}),
    ...(outdated !== undefined ? { outdatedAfterDays: outdated } : {}),
    ...(window !== undefined ? { windowDays: Number(window) } : {}),
    ...concurrentSnapshots(a),
    ...(mode !== undefined ? { notificationMode: mode as 'always' } : {}),
    ...(str(a, 'comment') !== undefined ? { comment: str(a, 'comment') as string } : {}),
  };
}

async function keyFrom(args: ParsedArgs): Promise<CryptKey | undefined> {
  const file = str(args, 'keyfile');
  if (file === undefined) return undefined;
  return app.loadKey(file, () => readPassphrase({ file: str(args, 'passphrase-file'), envName: 'IBS_PASSPHRASE', prompt: 'Key passphrase: ' }));
}

/** The running server's admin socket. */
function local(ctx: AppContext): LocalApiClient {
  return new LocalApiClient(join(ctx.paths.stateDir, 'api.sock'));
}


const REMOTE_FIELDS = {
  name: { type: 'string', help: 'the remote (or give it as the argument)' },
  host: { type: 'string', help: 'host name or IP address of the remote server' },
  port: { type: 'string', help: 'its API port (default 8007)' },
  'auth-id': { type: 'string', help: 'API token to act as: user@realm!token' },
  'secret-file': { type: 'string', help: "file holding the token's secret" },
  password: { type: 'boolean', help: "prompt for the token's secret (or IBS_REMOTE_SECRET)" },
  fingerprint: { type: 'string', help: "SHA-256 fingerprint of the remote's certificate (verify it out of band)" },
  comment: { type: 'string', help: 'free text' },
} as const satisfies Record<string, OptionSpec>;

function remoteName(args: ParsedArgs): string {
  const name = str(args, 'name') ?? args.positionals[0];
  if (name === undefined) throw new IbsError('INVALID_ARGUMENT', 'Name the remote: NAME or --name NAME');
  if (str(args, 'name') !== undefined && args.positionals[0] !== undefined && args.positionals[0] !== str(args, 'name')) throw new IbsError('INVALID_ARGUMENT', `Two different remote names given: "${args.positionals[0]}" and --name "${str(args, 'name')}"`);
  return name;
}

async function remoteSecret(args: ParsedArgs): Promise<string | undefined> {
  if (str(args, 'secret-file') !== undefined || flag(args, 'password')) {
    return readPassphrase({ file: str(args, 'secret-file'), envName: 'IBS_REMOTE_SECRET', prompt: 'Token secret: ' });
  }
  return undefined;
}

function requiredKeyName(args: ParsedArgs): string {
  const name = str(args, 'name');
  if (name === undefined) throw new IbsError('INVALID_ARGUMENT', 'Name the server key: --name NAME');
  return name;
}

function requiredName(args: ParsedArgs): string {
  const name = str(args, 'name');
  if (name === undefined) throw new IbsError('INVALID_ARGUMENT', 'Name the sync job: --name NAME');
  return name;
}

const SYNC_OPTIONS = {
  name: { type: 'string', help: 'job name' },
  store: { type: 'string', help: 'the local datastore' },
  source: { type: 'string', help: 'the local datastore (same as --store)' },
  remote: { type: 'string', help: 'the remote server (omit: a second datastore of this server)' },
  'remote-store': { type: 'string', help: 'the datastore on the remote' },
  'remote-repository': { type: 'string', help: 'the datastore on the remote (same as --remote-store)' },
  direction: { type: 'string', help: 'push (local to remote) or pull (remote to local)' },
  schedule: { type: 'string', help: 'calendar event, e.g. "Sun 04:30" (omit: run by hand)' },
  ns: { type: 'string', help: 'local namespace root' },
  'remote-ns': { type: 'string', help: 'remote namespace root' },
  'max-depth': { type: 'string', help: 'namespace levels below the roots (0 = the root only)' },
  include: { type: 'string', multiple: true, help: 'include filter, OR-combined: keep-weekly=*, backup-id:vm/123, namespace:NS (repeatable)' },
  'group-filter': { type: 'string', multiple: true, help: '[include:|exclude:]type:T, group:T/ID or regex:RE (repeatable)' },
  'remove-vanished': { type: 'boolean', help: 'delete copies the source no longer has (never protected ones)' },
  'verified-only': { type: 'boolean', help: 'copy only snapshots whose verification passed' },
  'encrypted-only': { type: 'boolean', help: 'copy only encrypted snapshots' },
  'transfer-last': { type: 'string', help: 'copy only the newest N snapshots of each group' },
  'resync-corrupt': { type: 'boolean', help: 'sync again copies whose verification failed' },
  owner: { type: 'string', help: 'owner of groups a pull creates (default root@pam)' },
  'worker-threads': { type: 'string', help: 'groups synced in parallel, 1 to 32 (default 1)' },
  bwlimit: { type: 'string', help: 'bandwidth limit in MiB/s, both directions (0 = unlimited)' },
  'rate-in': { type: 'string', help: 'incoming limit in MiB/s' },
  'rate-out': { type: 'string', help: 'outgoing limit in MiB/s' },
  'burst-in': { type: 'string', help: 'incoming burst in MiB' },
  'burst-out': { type: 'string', help: 'outgoing burst in MiB' },
  'io-weight': { type: 'string', help: 'low or normal' },
  'encrypt-on-push': { type: 'boolean', help: 'encrypt unencrypted snapshots with the active key on the way out' },
  'active-encryption-key': { type: 'string', help: 'server key used by --encrypt-on-push' },
  'associated-key': { type: 'string', multiple: true, help: 'server key that may decrypt on pull (repeatable)' },
  comment: { type: 'string', help: 'free text' },
} as const satisfies Record<string, OptionSpec>;

/** Sync options from the command line, typed and validated, as the app's job input. */
function syncArgs(args: ParsedArgs, creating: boolean): Record<string, unknown> {
  const id = requiredName(args);
  const pick = (a: string, b: string): string | undefined => {
    if (str(args, a) !== undefined && str(args, b) !== undefined && str(args, a) !== str(args, b)) throw new IbsError('INVALID_ARGUMENT', `--${a} and --${b} name the same thing but differ`);
    return str(args, a) ?? str(args, b);
  };
  const store = pick('store', 'source');
  const remoteStore = pick('remote-store', 'remote-repository');
  const direction = str(args, 'direction');
  if (creating) {
    if (store === undefined) throw new IbsError('INVALID_ARGUMENT', 'sync create needs the local datastore: --store (or --source) STORE');
    if (remoteStore === undefined) throw new IbsError('INVALID_ARGUMENT', 'sync create needs the other datastore: --remote-store (or --remote-repository) STORE');
    if (direction === undefined) throw new IbsError('INVALID_ARGUMENT', 'sync create needs --direction push or --direction pull');
  }
  if (direction !== undefined && direction !== 'push' && direction !== 'pull') throw new IbsError('INVALID_ARGUMENT', `Invalid --direction "${direction}": expected push or pull`);
  const ioWeight = str(args, 'io-weight');
  if (ioWeight !== undefined && ioWeight !== 'low' && ioWeight !== 'normal') throw new IbsError('INVALID_ARGUMENT', `Invalid --io-weight "${ioWeight}": expected low or normal`);
  const threads = wholeNumber(str(args, 'worker-threads'), 'worker-threads', 32);
  if (threads === 0) throw new IbsError('INVALID_ARGUMENT', 'Invalid --worker-threads "0": expected 1 to 32');
  const last = wholeNumber(str(args, 'transfer-last'), 'transfer-last');
  if (last === 0) throw new IbsError('INVALID_ARGUMENT', 'Invalid --transfer-last "0": expected at least 1');
  const bool = (k: string): boolean | undefined => (flag(args, k) ? true : undefined);
  const many = (k: string): string[] | undefined => (list(args, k).length ? list(args, k) : undefined);
  return app.syncJobInput({
    id,
    store,
    remote: str(args, 'remote'),
    'remote-store': remoteStore,
    direction,
    schedule: str(args, 'schedule'),
    ns: str(args, 'ns'),
    'remote-ns': str(args, 'remote-ns'),
    'max-depth': wholeNumber(str(args, 'max-depth'), 'max-depth', 7),
    include: many('include'),
    'group-filter': many('group-filter'),
    'remove-vanished': bool('remove-vanished'),
    'verified-only': bool('verified-only'),
    'encrypted-only': bool('encrypted-only'),
    'transfer-last': last,
    'resync-corrupt': bool('resync-corrupt'),
    owner: str(args, 'owner'),
    'worker-threads': threads,
    bwlimit: wholeNumber(str(args, 'bwlimit'), 'bwlimit'),
    'rate-in': wholeNumber(str(args, 'rate-in'), 'rate-in'),
    'rate-out': wholeNumber(str(args, 'rate-out'), 'rate-out'),
    'burst-in': wholeNumber(str(args, 'burst-in'), 'burst-in'),
    'burst-out': wholeNumber(str(args, 'burst-out'), 'burst-out'),
    'io-weight': ioWeight,
    'encrypt-on-push': bool('encrypt-on-push'),
    'active-encryption-key': str(args, 'active-encryption-key'),
    'associated-key': many('associated-key'),
    comment: str(args, 'comment'),
  });
}

/** Prints a task's log as it grows until it ends; returns its final state and status. */
async function followTask(client: JsonClient, upid: string, write: (text: string) => void): Promise<{ state: string; status?: string; code?: ErrorCode; text: string }> {
  const path = `/nodes/localhost/tasks/${encodeURIComponent(upid)}`;
  let offset = 0;
  let text = '';
  for (;;) {
    const { state, status, code } = await client.request<{ state: string; status?: string; code?: unknown }>('GET', `${path}/status`);
    const chunk = await client.request<{ text: string; size: number }>('GET', `${path}/log`, { start: offset });
    offset = chunk.size;
    text += chunk.text;
    write(chunk.text);
    // A failed task's code gives the exit code; one this program does not know (another server's) is not used.
    const known = typeof code === 'string' && Object.hasOwn(ERROR_CODES, code) ? { code: code as ErrorCode } : {};
    if (state !== 'running' && state !== 'queued') return { state, ...(status !== undefined ? { status } : {}), ...known, text };
    await new Promise((r) => setTimeout(r, 500));
  }
}

/** A task's log lines on the reporter, without their timestamps. */
function logTo(ctx: AppContext): (text: string) => void {
  return (text) => text.split('\n').filter(Boolean).forEach((l) => ctx.reporter.info(l.replace(/^\S+ /, '')));
}

/**
 * A job run now (`sync run|repair`, `verify job run`): through the running server as a task (its log followed
 * on stderr), so that the job's last run and notifications are recorded; in this process when no server runs,
 * recorded as the job's run all the same. A failed task throws `failCode`, naming `what`.
 */
async function runJobNow(ctx: AppContext, job: { id: string; route: string; what: string; failCode: ErrorCode; here: () => Promise<object> }): Promise<Record<string, unknown>> {
  const client = local(ctx);
  let upid: string;
  try {
    upid = await client.request<string>('POST', job.route);
  } catch (error) {
    if (!(error instanceof IbsError && error.details?.serverRunning === false)) throw error;
    return app.recordJobRun(ctx, job.id, async () => ({ ...(await job.here()) }));
  }
  ctx.reporter.info(`task ${upid}`);
  const r = await followTask(client, upid, logTo(ctx));
  const summary = /summary: (.*)$/m.exec(r.text)?.[1];
  if (r.state !== 'ok' && r.state !== 'warnings') throw new IbsError(r.code ?? job.failCode, `${job.what} failed: ${r.status ?? r.state} (task ${upid})`, { details: { upid } });
  return { upid, state: r.state, ...(summary ? { summary } : {}) };
}

/** `sync run` / `sync repair` of job `id` (see runJobNow). */
async function runSyncJobNow(ctx: AppContext, id: string, what: 'run' | 'repair'): Promise<Record<string, unknown>> {
  await ctx.jobs.sync.get(id);
  return runJobNow(ctx, {
    id: `sync/${id}`,
    route: `/admin/sync/${encodeURIComponent(id)}/${what}`,
    what: `sync ${what} of ${id}`,
    failCode: 'UNAVAILABLE',
    here: () => (what === 'run' ? app.runSyncJob(ctx, { id }) : app.syncRepair(ctx, { id })),
  });
}

const bytesOr = (n: unknown): string => (typeof n === 'number' ? formatBytes(n) : '');

export const COMMANDS: Command[] = [
  // ---- datastore ---------------------------------------------------------------------------------------
  {
    path: ['datastore', 'create'],
    usage: 'datastore create NAME [PATH] [--comment TEXT] [--keep-daily N …]',
    summary: 'create a datastore in an empty or new directory (default: under the data directory)',
    positionals: [1, 2],
    options: { comment: { type: 'string', help: 'free text' }, ...KEEP_OPTIONS },
    run: (ctx, a) => app.createDatastore(ctx, { name: pos(a, 0), ...(a.positionals[1] !== undefined ? { path: pos(a, 1) } : {}), ...(str(a, 'comment') ? { comment: str(a, 'comment') as string } : {}), keep: keepFrom(a) }),
    text: (r: { name: string; path: string }) => `Created datastore ${r.name} at ${r.path}`,
  },
  {
    path: ['datastore', 'update'],
    usage: 'datastore update NAME [--comment TEXT] [--keep-daily N …] [--gc-schedule CAL]',
    summary: 'change the comment, the retention settings or the GC schedule of a datastore ("" removes the schedule)',
    positionals: 1,
    options: { comment: { type: 'string', help: 'free text' }, 'gc-schedule': { type: 'string', help: 'calendar event for garbage collection, e.g. "daily" or "Sat 02:00"' }, ...KEEP_OPTIONS },
    run: (ctx, a) => app.updateDatastore(ctx, { name: pos(a, 0), ...(str(a, 'comment') !== undefined ? { comment: str(a, 'comment') as string } : {}), keep: keepFrom(a), ...(str(a, 'gc-schedule') !== undefined ? { gcSchedule: str(a, 'gc-schedule') as string } : {}) }),
    text: (r: Record<string, unknown>) => keyValues(r),
  },
  {
    path: ['datastore', 'list'],
    usage: 'datastore list',
    summary: 'list configured datastores',
    positionals: 0,
    run: (ctx) => app.listDatastores(ctx),
    text: (r: Array<Record<string, unknown>>) => table(r, ['name', 'path', 'comment', 'problem?']),
  },
  {
    path: ['datastore', 'show'],
    usage: 'datastore show NAME',
    summary: 'show a datastore: path, id, format, retention, quarantine',
    positionals: 1,
    run: (ctx, a) => app.showDatastore(ctx, pos(a, 0)),
    text: (r: Record<string, unknown>) => keyValues(r),
  },
  {
    path: ['datastore', 'remove'],
    usage: 'datastore remove NAME [--destroy-data]',
    summary: 'forget a datastore (its data stays unless --destroy-data)',
    positionals: 1,
    options: { 'destroy-data': { type: 'boolean', help: 'also delete every file of the datastore' } },
    run: (ctx, a) => app.removeDatastore(ctx, { name: pos(a, 0), destroyData: flag(a, 'destroy-data') }),
    text: (r: { name: string; path?: string }) => `Removed datastore ${r.name}${r.path ? ` (${r.path})` : ''}`,
  },
  {
    path: ['datastore', 'stats'],
    usage: 'datastore stats NAME',
    summary: 'snapshots, groups, chunks, logical and stored bytes, dedup factor, free space and inodes',
    positionals: 1,
    run: (ctx, a) => app.statsDatastore(ctx, pos(a, 0)),
    remote: (a) => ({ method: 'GET', path: storeApi(a, '/status') }),
    text: (r: Awaited<ReturnType<typeof app.statsDatastore>>) =>
      keyValues({
        snapshots: r.snapshots,
        groups: r.groups,
        namespaces: r.namespaces,
        chunks: r.chunks,
        'logical size': formatBytes(r.logicalBytes),
        'stored size': formatBytes(r.storedBytes),
        'dedup factor': r.dedupFactor.toFixed(2),
        ...(r.space ? { 'free space': `${formatBytes(r.space.freeBytes)} of ${formatBytes(r.space.totalBytes)}`, 'free inodes': r.space.freeInodes !== undefined ? `${r.space.freeInodes} of ${r.space.totalInodes}` : 'n/a' } : {}),
        ...(r.lastGc ? { 'last gc': `${r.lastGc.finishedAt}, removed ${r.lastGc.removedChunks} chunks (${formatBytes(r.lastGc.removedBytes)})` } : {}),
      }),
  },
  {
    path: ['datastore', 'probe'],
    usage: 'datastore probe NAME',
    summary: 'check that a datastore is reachable, writable and of a supported format',
    positionals: 1,
    run: async (ctx, a) => {
      const r = await app.probeDatastore(ctx, pos(a, 0));
      if (!r.reachable || !r.writable) throw new IbsError(r.reachable ? 'PERMISSION_DENIED' : 'UNAVAILABLE', `Datastore ${r.name} at ${r.location} failed the probe: ${r.error ?? 'not writable'}`, { details: { ...r } });
      return r;
    },
    text: (r: app.ProbeResult) =>
      [`reachable: yes (${r.location})`, `format:    ${r.format} (supported: ${r.supportedFormat})`, `writable:  yes`, ...(r.quarantined ? [`quarantined: ${r.quarantined}`] : [])].join('\n'),
  },
  {
    path: ['datastore', 'quarantine'],
    usage: 'datastore quarantine NAME [--reason TEXT]',
    summary: 'refuse new writes and GC on a datastore until unquarantined',
    positionals: 1,
    options: { reason: { type: 'string', help: 'why (shown to anyone refused)' } },
    run: async (ctx, a) => {
      await app.quarantineDatastore(ctx, { name: pos(a, 0), reason: str(a, 'reason') ?? 'quarantined by an administrator' });
      return { name: pos(a, 0), quarantined: true };
    },
    text: (r: { name: string }) => `Datastore ${r.name} is quarantined: new writes and GC are refused`,
  },
  {
    path: ['datastore', 'unquarantine'],
    usage: 'datastore unquarantine NAME',
    summary: 'lift a quarantine',
    positionals: 1,
    run: async (ctx, a) => {
      await app.unquarantineDatastore(ctx, pos(a, 0));
      return { name: pos(a, 0), quarantined: false };
    },
    text: (r: { name: string }) => `Datastore ${r.name} accepts writes again`,
  },
  // ---- namespaces --------------------------------------------------------------------------------------
  {
    path: ['namespace', 'create'],
    usage: 'namespace create STORE NS [--parents]',
    summary: 'create a namespace (at most 7 levels)',
    positionals: 2,
    options: { parents: { type: 'boolean', help: 'create missing parent namespaces' } },
    run: async (ctx, a) => ({ store: pos(a, 0), namespace: await app.createNamespace(ctx, { store: pos(a, 0), ns: pos(a, 1), parents: flag(a, 'parents') }) }),
    remote: (a) => ({ method: 'POST', path: storeApi(a, '/namespace'), params: { ns: pos(a, 1), parents: flag(a, 'parents') }, result: (d) => ({ store: pos(a, 0), namespace: d }) }),
    text: (r: { namespace: string }) => `Created namespace ${r.namespace}`,
  },
  {
    path: ['namespace', 'list'],
    usage: 'namespace list STORE [--ns PARENT] [--max-depth N]',
    summary: 'list namespaces',
    positionals: 1,
    options: { ...STORE_NS, 'max-depth': { type: 'string', help: 'levels below the parent' } },
    run: (ctx, a) => app.listNamespaces(ctx, { store: pos(a, 0), ...(str(a, 'ns') ? { parent: str(a, 'ns') as string } : {}), ...(str(a, 'max-depth') !== undefined ? { maxDepth: wholeNumber(str(a, 'max-depth'), 'max-depth', 7) as number } : {}) }),
    remote: (a) => ({ method: 'GET', path: storeApi(a, '/namespace'), params: { ...nsParam(a), ...(str(a, 'max-depth') !== undefined ? { 'max-depth': wholeNumber(str(a, 'max-depth'), 'max-depth', 7) } : {}) } }),
    text: (r: string[]) => (r.length === 0 ? '(none)' : r.join('\n')),
  },
  {
    path: ['namespace', 'remove'],
    usage: 'namespace remove STORE NS [--delete-groups]',
    summary: 'remove a namespace (must be empty unless --delete-groups)',
    positionals: 2,
    options: { 'delete-groups': { type: 'boolean', help: 'also remove its groups, snapshots and child namespaces' } },
    run: async (ctx, a) => {
      await app.removeNamespace(ctx, { store: pos(a, 0), ns: pos(a, 1), deleteGroups: flag(a, 'delete-groups') });
      return { namespace: pos(a, 1), removed: true };
    },
    remote: (a) => ({ method: 'DELETE', path: storeApi(a, '/namespace'), params: { ns: pos(a, 1), ...(flag(a, 'delete-groups') ? { 'delete-groups': true } : {}) }, result: () => ({ namespace: pos(a, 1), removed: true }) }),
    text: (r: { namespace: string }) => `Removed namespace ${r.namespace}`,
  },
  // ---- groups and snapshots ----------------------------------------------------------------------------
  {
    path: ['group', 'list'],
    usage: 'group list STORE [--ns NS]',
    summary: 'list backup groups with snapshot count and owner',
    positionals: 1,
    options: STORE_NS,
    run: (ctx, a) => app.listGroups(ctx, { store: pos(a, 0), ...(str(a, 'ns') ? { ns: str(a, 'ns') as string } : {}) }),
    remote: (a) => ({ method: 'GET', path: storeApi(a, '/groups'), params: nsParam(a) }),
    text: (r: Array<Record<string, unknown>>) => table(r, ['group', 'snapshots', 'last', 'owner']),
  },
  {
    path: ['snapshot', 'list'],
    usage: 'snapshot list STORE [GROUP] [--ns NS] [--recursive]',
    summary: 'list snapshots (of a namespace or group)',
    positionals: [1, 2],
    options: { ...STORE_NS, recursive: { type: 'boolean', help: 'include child namespaces' } },
    run: (ctx, a) => app.listSnapshots(ctx, { store: pos(a, 0), ...(a.positionals[1] ? { group: pos(a, 1) } : {}), ...(str(a, 'ns') ? { ns: str(a, 'ns') as string } : {}), recursive: flag(a, 'recursive') }),
    remote: (a) => ({ method: 'GET', path: storeApi(a, '/snapshots'), params: { ...nsParam(a), ...(a.positionals[1] ? { group: pos(a, 1) } : {}), ...(flag(a, 'recursive') ? { recursive: true } : {}) } }),
    // The archives `backup restore` takes (not the stored files); the namespace when the list reaches into any.
    // A damaged snapshot's row says so; why, below the table.
    text: (r: app.SnapshotRow[]) =>
      table(
        r.map((s) => ({ ...s, size: s.damaged ? '' : formatBytes(s.size), encrypted: s.damaged ? '' : s.encrypted ? 'yes' : 'no', protected: s.protected ? 'yes' : '' })),
        ['snapshot', 'namespace?', 'size', 'encrypted', 'protected', 'verifyState', 'archives'],
      ) + r.filter((s) => s.damaged).map((s) => `\n${s.snapshot}: ${s.damaged}`).join(''),
  },
  {
    path: ['snapshot', 'show'],
    usage: 'snapshot show STORE SNAPSHOT [--ns NS] [--files]',
    summary: 'show a snapshot manifest (with --files: the file catalog)',
    positionals: 2,
    options: { ...STORE_NS, files: { type: 'boolean', help: 'list the files of each archive' }, ...KEY_OPTIONS },
    run: async (ctx, a) => app.showSnapshot(ctx, { store: pos(a, 0), snapshot: pos(a, 1), ...(str(a, 'ns') ? { ns: str(a, 'ns') as string } : {}), listFiles: flag(a, 'files'), key: await keyFrom(a) }),
    remote: (a) => ({ method: 'GET', path: storeApi(a, '/snapshot'), params: { ...nsParam(a), snapshot: pos(a, 1), ...(flag(a, 'files') ? { files: true } : {}) } }),
    text: (r: Record<string, unknown>) => JSON.stringify(r, null, 2),
  },
  {
    path: ['snapshot', 'forget'],
    usage: 'snapshot forget STORE SNAPSHOT [--ns NS]',
    summary: 'remove a snapshot (not when protected); GC frees its chunks later',
    positionals: 2,
    options: STORE_NS,
    run: async (ctx, a) => ({ removed: await app.forgetSnapshot(ctx, { store: pos(a, 0), snapshot: pos(a, 1), ...(str(a, 'ns') ? { ns: str(a, 'ns') as string } : {}) }) }),
    remote: (a) => ({ method: 'DELETE', path: storeApi(a, '/snapshots'), params: { ...nsParam(a), snapshot: pos(a, 1) } }),
    text: (r: { removed: string }) => `Removed snapshot ${r.removed}`,
  },
  ...(['protect', 'unprotect'] as const).map(
    (verb): Command => ({
      path: ['snapshot', verb],
      usage: `snapshot ${verb} STORE SNAPSHOT [--ns NS]`,
      summary: verb === 'protect' ? 'protect a snapshot from prune and forget' : 'remove the protection',
      positionals: 2,
      options: STORE_NS,
      run: async (ctx, a) => {
        await app.protectSnapshot(ctx, { store: pos(a, 0), snapshot: pos(a, 1), ...(str(a, 'ns') ? { ns: str(a, 'ns') as string } : {}), protect: verb === 'protect' });
        return { snapshot: pos(a, 1), protected: verb === 'protect' };
      },
      remote: (a) => ({ method: 'PUT', path: storeApi(a, '/protected'), params: { ...nsParam(a), snapshot: pos(a, 1), protected: verb === 'protect' }, result: () => ({ snapshot: pos(a, 1), protected: verb === 'protect' }) }),
      text: (r: { snapshot: string; protected: boolean }) => `Snapshot ${r.snapshot} is ${r.protected ? 'protected' : 'no longer protected'}`,
    }),
  ),
  {
    path: ['snapshot', 'notes'],
    usage: 'snapshot notes STORE SNAPSHOT [--ns NS] [--set TEXT]',
    summary: 'show or set the notes of a snapshot',
    positionals: 2,
    options: { ...STORE_NS, set: { type: 'string', help: 'new notes' } },
    run: async (ctx, a) => ({ notes: await app.snapshotNotes(ctx, { store: pos(a, 0), snapshot: pos(a, 1), ...(str(a, 'ns') ? { ns: str(a, 'ns') as string } : {}), ...(str(a, 'set') !== undefined ? { set: str(a, 'set') as string } : {}) }) }),
    remote: (a) => ({ method: str(a, 'set') !== undefined ? 'PUT' : 'GET', path: storeApi(a, '/notes'), params: { ...nsParam(a), snapshot: pos(a, 1), ...(str(a, 'set') !== undefined ? { notes: str(a, 'set') } : {}) }, result: (d) => ({ notes: d }) }),
    text: (r: { notes: string }) => r.notes,
  },
  // ---- backup and restore ------------------------------------------------------------------------------
  {
    path: ['backup', 'create'],
    usage: 'backup create (--store S | --repository USER@REALM!TOKEN@HOST[:PORT]:STORE --fingerprint FP) [--ns N] --type host --id ID [--time T] [--keyfile F] [--exclude P …] NAME.tar:/dir NAME.img:/file …',
    summary: 'back up directories (file archives) and images into a new snapshot, in a local datastore or on a server',
    positionals: [1, 64],
    options: {
      store: { type: 'string', help: 'local datastore name' },
      ...REMOTE_OPTIONS,
      ...STORE_NS,
      type: { type: 'string', help: 'vm, ct or host (default host)' },
      id: { type: 'string', help: 'backup id (default: this host name)' },
      time: { type: 'string', help: 'snapshot time (RFC 3339 UTC or epoch seconds); default now' },
      exclude: { type: 'string', multiple: true, help: 'glob to leave out (repeatable): *.tmp, /cache/, **/node_modules/' },
      'no-compress': { type: 'boolean', help: 'store chunks uncompressed' },
      ...KEY_OPTIONS,
    },
    run: async (ctx, a) => {
      const repository = str(a, 'repository') ?? process.env.IBS_REPOSITORY;
      const store = str(a, 'store');
      if (!store && !repository) throw new IbsError('INVALID_ARGUMENT', 'Missing --store or --repository: expected a local datastore name, or USER@REALM!TOKEN@HOST[:PORT]:STORE');
      if (store && str(a, 'repository')) throw new IbsError('INVALID_ARGUMENT', 'Give either --store (local) or --repository (server), not both');
      const { hostname } = await import('node:os');
      const key = await keyFrom(a);
      const remote = !store && repository ? await app.connectRepository({ repository, fingerprint: str(a, 'fingerprint') ?? process.env.IBS_FINGERPRINT, secretFile: str(a, 'secret-file'), secret: process.env.IBS_SECRET }) : undefined;
      try {
        return await app.createBackup(ctx, {
        store: store ?? remote?.repository.store ?? '',
        ...(remote ? { repository: { client: remote.client, store: remote.repository.store } } : {}),
        ...(str(a, 'ns') ? { ns: str(a, 'ns') as string } : {}),
        type: str(a, 'type') ?? 'host',
        id: str(a, 'id') ?? hostname().split('.')[0] ?? 'localhost',
        ...(str(a, 'time') ? { time: str(a, 'time') as string } : {}),
        archives: a.positionals,
        excludes: list(a, 'exclude'),
        key,
        compress: !flag(a, 'no-compress'),
        });
      } finally {
        await remote?.client.close();
      }
    },
    text: (r: app.BackupResult) =>
      [
        ...r.archives.map((x) => `${x.name}: ${formatBytes(x.size)} in ${x.chunks} chunks, ${x.newChunks} new (${formatBytes(x.storedBytes)} stored), ${x.reusedChunks} reused`),
        `Snapshot ${r.snapshot}: ${formatBytes(r.bytes)} in ${formatDuration(r.seconds)} (${formatRate(r.bytes / Math.max(r.seconds, 0.001))}), ${formatBytes(r.storedBytes)} new data stored${r.sentBytes !== undefined ? `, ${formatBytes(r.sentBytes)} sent` : ''}${r.encrypted ? ', encrypted' : ''}${r.warnings.length ? `, ${r.warnings.length} warnings` : ''}`,
      ].join('\n'),
  },
  {
    path: ['backup', 'restore'],
    usage: 'backup restore SNAPSHOT NAME.tar|NAME.img TARGET (--store S | --repository USER@REALM!TOKEN@HOST[:PORT]:STORE --fingerprint FP) [--ns N] [--path sub/dir] [--keyfile F]   (TARGET "-" streams to stdout)',
    summary: 'restore an archive of a snapshot (local or on a server) to a directory, a file (sparse: chunks of zeros in an image are left as holes), or standard output',
    positionals: [2, 3],
    options: {
      store: { type: 'string', help: 'local datastore name' },
      ...REMOTE_OPTIONS,
      ...STORE_NS,
      to: { type: 'string', help: 'target (same as the TARGET argument); "-" for standard output' },
      path: { type: 'string', help: 'restore only this file or subtree of a .tar archive' },
      ...KEY_OPTIONS,
    },
    run: async (ctx, a) => {
      const repository = str(a, 'repository') ?? process.env.IBS_REPOSITORY;
      const store = str(a, 'store');
      if (!store && !repository) throw new IbsError('INVALID_ARGUMENT', 'Missing --store or --repository: expected a local datastore name, or USER@REALM!TOKEN@HOST[:PORT]:STORE');
      const target = str(a, 'to') ?? a.positionals[2];
      if (target === undefined) throw new IbsError('INVALID_ARGUMENT', 'Missing restore target: expected TARGET or --to (use "-" for standard output)');
      const key = await keyFrom(a);
      const remote = !store && repository ? await app.connectRepository({ repository, fingerprint: str(a, 'fingerprint') ?? process.env.IBS_FINGERPRINT, secretFile: str(a, 'secret-file'), secret: process.env.IBS_SECRET }) : undefined;
      try {
        return await app.restoreBackup(ctx, {
        store: store ?? remote?.repository.store ?? '',
        ...(remote ? { repository: { client: remote.client, store: remote.repository.store } } : {}),
        snapshot: pos(a, 0),
        archive: pos(a, 1),
        target,
        ...(str(a, 'ns') ? { ns: str(a, 'ns') as string } : {}),
        ...(str(a, 'path') !== undefined ? { path: str(a, 'path') as string } : {}),
        key,
        });
      } finally {
        await remote?.client.close();
      }
    },
    text: (r: app.RestoreResult) =>
      r.target === '-' ? '' : `Restored ${r.archive} of ${r.snapshot} to ${r.target}: ${formatBytes(r.bytes)}${r.entries !== undefined ? `, ${r.entries} entries` : ''} in ${formatDuration(r.seconds)}${r.warnings.length ? `, ${r.warnings.length} warnings` : ''}`,
  },
  // ---- keys --------------------------------------------------------------------------------------------
  {
    path: ['key', 'create'],
    usage: 'key create FILE [--kdf scrypt|none] [--passphrase-file F] | key create --name NAME [--from-keyfile F]',
    summary: 'create an encryption key file (AES-256, wrapped with a passphrase by scrypt), or with --name a server key for sync jobs (new, or taken from a key file)',
    positionals: [0, 1],
    options: { kdf: { type: 'string', help: 'scrypt (default) or none (unprotected key)' }, 'passphrase-file': KEY_OPTIONS['passphrase-file'], name: { type: 'string', help: 'create a server key of this name (for --encrypt-on-push / --associated-key)' }, 'from-keyfile': { type: 'string', help: 'with --name: the key of this key file (clients restore with that file)' } },
    run: async (ctx, a) => {
      const name = str(a, 'name');
      if (name !== undefined) {
        if (a.positionals.length > 0) throw new IbsError('INVALID_ARGUMENT', 'key create --name NAME takes no FILE (use --from-keyfile FILE to store an existing key)');
        const from = str(a, 'from-keyfile');
        return app.createServerKey(ctx, { name, ...(from !== undefined ? { fromKeyfile: from, passphrase: () => readPassphrase({ file: str(a, 'passphrase-file'), envName: 'IBS_PASSPHRASE', prompt: 'Key passphrase: ' }) } : {}) });
      }
      if (a.positionals.length !== 1) throw new IbsError('INVALID_ARGUMENT', 'key create needs FILE, or --name NAME for a server key');
      const kdf = str(a, 'kdf') ?? 'scrypt';
      if (kdf !== 'scrypt' && kdf !== 'none') throw new IbsError('INVALID_ARGUMENT', `Invalid --kdf "${kdf}": expected scrypt or none`);
      const passphrase = kdf === 'none' ? undefined : await readPassphrase({ file: str(a, 'passphrase-file'), envName: 'IBS_PASSPHRASE', prompt: 'New key passphrase: ', confirm: true });
      const file = await app.createKeyFile({ path: pos(a, 0), passphrase });
      return { path: pos(a, 0), fingerprint: file.fingerprint, kdf: file.kdf.name, created: file.created };
    },
    text: (r: { path?: string; name?: string; fingerprint: string }) =>
      r.name !== undefined ? `Created server key ${r.name}\nfingerprint: ${r.fingerprint}` : `Created key ${r.path}\nfingerprint: ${r.fingerprint}\nKeep a copy of it apart from the backups (see "key paperkey"): without it encrypted backups cannot be restored.`,
  },
  {
    path: ['key', 'show'],
    usage: 'key show FILE | key show --name NAME',
    summary: 'show the fingerprint, KDF and dates of a key file, or a server key with the jobs that use it',
    positionals: [0, 1],
    options: { name: { type: 'string', help: 'a server key' } },
    run: async (ctx, a) => {
      const name = str(a, 'name');
      if (name !== undefined) return app.serverKeyInfo(ctx, name);
      if (a.positionals.length !== 1) throw new IbsError('INVALID_ARGUMENT', 'key show needs FILE, or --name NAME for a server key');
      return app.showKeyFile(pos(a, 0));
    },
    text: (r: Record<string, unknown>) => keyValues(Object.fromEntries(Object.entries(r).map(([k, v]) => [k, Array.isArray(v) ? v.join(', ') || '(none)' : v]))),
  },
  {
    path: ['key', 'list'],
    usage: 'key list',
    summary: 'server keys: fingerprint, created, archived, the sync jobs that use each',
    positionals: 0,
    run: (ctx) => app.listServerKeys(ctx),
    text: (r: Array<Record<string, unknown>>) => table(r, ['name', 'fingerprint', 'created', 'archived', 'usedBy', 'problem?']),
  },
  {
    path: ['key', 'archive'],
    usage: 'key archive --name NAME',
    summary: 'archive a server key: it still decrypts, never encrypts again',
    positionals: 0,
    options: { name: { type: 'string', help: 'the server key' } },
    run: (ctx, a) => ctx.keys.archive(requiredKeyName(a)),
    text: (r: { name: string }) => `Server key ${r.name} archived`,
  },
  {
    path: ['key', 'remove'],
    usage: 'key remove --name NAME',
    summary: 'remove a server key (refused while a sync job uses it)',
    positionals: 0,
    options: { name: { type: 'string', help: 'the server key' } },
    run: async (ctx, a) => {
      await app.removeServerKey(ctx, requiredKeyName(a));
      return { removed: requiredKeyName(a) };
    },
    text: (r: { removed: string }) => `Server key ${r.removed} removed`,
  },
  {
    path: ['key', 'change-passphrase'],
    usage: 'key change-passphrase FILE [--kdf scrypt|none]   (old: IBS_PASSPHRASE, new: IBS_NEW_PASSPHRASE, or prompts)',
    summary: 'change the passphrase of a key file',
    positionals: 1,
    options: { kdf: { type: 'string', help: 'scrypt (default) or none' }, 'passphrase-file': KEY_OPTIONS['passphrase-file'], 'new-passphrase-file': { type: 'string', help: 'read the new passphrase from this file' } },
    run: async (_ctx, a) => {
      const current = await app.readKeyFile(pos(a, 0));
      const oldPassphrase = current.kdf.name === 'none' ? undefined : await readPassphrase({ file: str(a, 'passphrase-file'), envName: 'IBS_PASSPHRASE', prompt: 'Current passphrase: ' });
      const kdf = str(a, 'kdf') ?? 'scrypt';
      if (kdf !== 'scrypt' && kdf !== 'none') throw new IbsError('INVALID_ARGUMENT', `Invalid --kdf "${kdf}": expected scrypt or none`);
      const newPassphrase = kdf === 'none' ? undefined : await readPassphrase({ file: str(a, 'new-passphrase-file'), envName: 'IBS_NEW_PASSPHRASE', prompt: 'New passphrase: ', confirm: true });
      const file = await app.changePassphrase({ path: pos(a, 0), oldPassphrase, newPassphrase });
      return { path: pos(a, 0), fingerprint: file.fingerprint, kdf: file.kdf.name };
    },
    text: (r: { path: string }) => `Changed the passphrase of ${r.path}`,
  },
  {
    path: ['key', 'paperkey'],
    usage: 'key paperkey FILE',
    summary: 'print a key file as text with a checksum on every line, for paper or a safe',
    positionals: 1,
    run: async (_ctx, a) => ({ text: await app.paperKey(pos(a, 0)) }),
    text: (r: { text: string }) => r.text.trimEnd(),
  },
  {
    path: ['key', 'import'],
    usage: 'key import --paperkey TEXTFILE FILE',
    summary: 'rebuild a key file from its paper key text (checks every line)',
    positionals: 1,
    options: { paperkey: { type: 'string', help: 'the text printed by "key paperkey" ("-" for standard input)' } },
    run: async (_ctx, a) => {
      const source = str(a, 'paperkey');
      if (!source) throw new IbsError('INVALID_ARGUMENT', 'Missing --paperkey: expected the file with the paper key text');
      const text = source === '-' ? await readStdin() : await readFile(source, 'utf8').catch((e: Error) => {
        throw new IbsError('NOT_FOUND', `Cannot read "${source}": ${e.message}`);
      });
      const file = await app.importPaperKey({ text, path: pos(a, 0) });
      return { path: pos(a, 0), fingerprint: file.fingerprint };
    },
    text: (r: { path: string; fingerprint: string }) => `Imported key ${r.fingerprint} into ${r.path}`,
  },
  // ---- master key (wraps the server keys) -------------------------------------------------------------------
  {
    path: ['masterkey', 'create'],
    usage: 'masterkey create [--unlock-file PATH] [--passphrase-file F]   (passphrase: IBS_MASTER_PASSPHRASE, or prompts)',
    summary: 'create the master key that wraps the server keys (existing ones are wrapped now); the server unlocks it from the unlock file at start, or with its passphrase',
    positionals: 0,
    options: { 'unlock-file': { type: 'string', help: 'absolute path, apart from the configuration (removable medium, enclave-backed mount), where the master key is kept unwrapped for the server to unlock at start' }, 'passphrase-file': { type: 'string', help: 'read the new passphrase from this file' } },
    run: async (ctx, a) => {
      const unlockFile = str(a, 'unlock-file');
      const passphrase = await readPassphrase({ file: str(a, 'passphrase-file'), envName: 'IBS_MASTER_PASSPHRASE', prompt: 'New master key passphrase: ', confirm: true });
      return app.createMasterKey(ctx, { passphrase, unlockFile });
    },
    text: (r: { fingerprint: string; 'unlock-file'?: string; wrapped: string[] }) =>
      [
        `Created master key ${r.fingerprint}`,
        r['unlock-file'] !== undefined ? `unlock file: ${r['unlock-file']} (the server unlocks with it when it starts; keep it apart from the configuration)` : 'no unlock file: run "masterkey unlock --interactive" after each start of the server (and now, if it is running)',
        `server keys wrapped: ${r.wrapped.length ? r.wrapped.join(', ') : '(none yet)'}`,
        'Keep the passphrase: without the unlock file it is the only way to unlock the server keys.',
      ].join('\n'),
  },
  {
    path: ['masterkey', 'unlock'],
    usage: 'masterkey unlock --interactive | masterkey unlock [--passphrase-file F]   (or IBS_MASTER_PASSPHRASE)',
    summary: "unlock the master key in the running server with its passphrase, when it could not unlock on its own at start",
    positionals: 0,
    options: { interactive: { type: 'boolean', help: 'ask for the passphrase on the terminal' }, 'passphrase-file': { type: 'string', help: 'read the passphrase from this file' } },
    run: async (ctx, a) => {
      const config = await ctx.keys.master.read();
      if (!config) throw new IbsError('NOT_FOUND', `No master key is configured (${ctx.keys.master.path}): nothing to unlock`);
      if (a.values.interactive === true && (str(a, 'passphrase-file') !== undefined || !process.stdin.isTTY)) {
        throw new IbsError('INVALID_ARGUMENT', '--interactive asks on the terminal: run it on one, or give --passphrase-file F (or IBS_MASTER_PASSPHRASE) without --interactive');
      }
      const passphrase = await readPassphrase({ file: str(a, 'passphrase-file'), ...(a.values.interactive === true ? {} : { envName: 'IBS_MASTER_PASSPHRASE' }), prompt: `Passphrase of master key ${config.key.fingerprint}: ` });
      return local(ctx).request('POST', '/config/masterkey/unlock', { passphrase });
    },
    text: (r: { fingerprint: string }) => `Master key ${r.fingerprint} unlocked in the server: jobs can use the server keys`,
  },
  {
    path: ['masterkey', 'status'],
    usage: 'masterkey status',
    summary: 'the master key: configured, fingerprint, unlock file, and whether the running server has it unlocked',
    positionals: 0,
    run: async (ctx) => {
      try {
        return { server: 'running', ...(await local(ctx).request<app.MasterKeyStatus>('GET', '/config/masterkey')) };
      } catch (error) {
        if (!(error instanceof IbsError && error.details?.serverRunning === false)) throw error;
        return { server: 'not running', ...(await app.masterKeyStatus(ctx)) };
      }
    },
    text: (r: Record<string, unknown>) => (r.configured ? keyValues(r) : 'No master key is configured: server keys are stored unwrapped (0600); see "masterkey create"'),
  },
  {
    path: ['masterkey', 'update'],
    usage: 'masterkey update --unlock-file PATH | masterkey update --no-unlock-file',
    summary: 'move the unlock file the server unlocks the master key with at start (written now), or stop using one',
    positionals: 0,
    options: { 'unlock-file': { type: 'string', help: 'the new absolute path (the old file is left in place)' }, 'no-unlock-file': { type: 'boolean', help: 'use no unlock file: the server starts locked until "masterkey unlock"' } },
    run: async (ctx, a) => {
      const unlockFile = str(a, 'unlock-file');
      if ((unlockFile === undefined) === (a.values['no-unlock-file'] !== true)) throw new IbsError('INVALID_ARGUMENT', 'masterkey update needs one of --unlock-file PATH or --no-unlock-file');
      return ctx.keys.master.setUnlockFile(unlockFile, () => ctx.keys.masterKey());
    },
    text: (r: { fingerprint: string; 'unlock-file'?: string }) => `Master key ${r.fingerprint}: ${r['unlock-file'] !== undefined ? `unlock file ${r['unlock-file']}` : 'no unlock file (the server starts locked)'}`,
  },
  {
    path: ['masterkey', 'remove'],
    usage: 'masterkey remove   (needs the unlock file, or the passphrase: IBS_MASTER_PASSPHRASE or a prompt)',
    summary: 'stop using the master key: the server keys are stored unwrapped again (0600), then its configuration is removed',
    positionals: 0,
    run: (ctx) => app.removeMasterKey(ctx),
    text: (r: { removed: string; 'unlock-file'?: string; unwrapped: string[] }) =>
      `Removed master key ${r.removed}; server keys stored unwrapped again: ${r.unwrapped.length ? r.unwrapped.join(', ') : '(none)'}${r['unlock-file'] !== undefined ? `\nThe unlock file ${r['unlock-file']} still holds the key: destroy it` : ''}`,
  },
  {
    path: ['masterkey', 'change-passphrase'],
    usage: 'masterkey change-passphrase [--passphrase-file F] [--new-passphrase-file F]   (old: IBS_MASTER_PASSPHRASE, new: IBS_NEW_MASTER_PASSPHRASE, or prompts)',
    summary: "change the master key's passphrase (the key, its unlock file and the wrapped server keys stay as they are)",
    positionals: 0,
    options: { 'passphrase-file': { type: 'string', help: 'read the current passphrase from this file' }, 'new-passphrase-file': { type: 'string', help: 'read the new passphrase from this file' } },
    run: async (ctx, a) => {
      const oldPassphrase = await readPassphrase({ file: str(a, 'passphrase-file'), envName: 'IBS_MASTER_PASSPHRASE', prompt: 'Current master key passphrase: ' });
      const newPassphrase = await readPassphrase({ file: str(a, 'new-passphrase-file'), envName: 'IBS_NEW_MASTER_PASSPHRASE', prompt: 'New master key passphrase: ', confirm: true });
      return ctx.keys.master.changePassphrase(oldPassphrase, newPassphrase);
    },
    text: (r: { fingerprint: string }) => `Changed the passphrase of master key ${r.fingerprint}`,
  },
  // ---- server identity, users, tokens, ACL ----------------------------------------------------------------
  {
    path: ['cert', 'info'],
    usage: 'cert info',
    summary: "the server certificate: subject, validity, SANs and SHA-256 fingerprint (what remotes pin)",
    positionals: 0,
    run: (ctx) => app.certificateInfo(ctx.paths.configDir),
    text: (r: Record<string, unknown>) => keyValues(r),
  },
  {
    path: ['cert', 'update'],
    usage: 'cert update --cert FILE --key FILE',
    summary: 'install an own certificate and key (for example from ACME); restart the server to use it',
    positionals: 0,
    options: { cert: { type: 'string', help: 'PEM certificate (chain)' }, key: { type: 'string', help: 'PEM private key' } },
    run: (ctx, a) => {
      if (!str(a, 'cert') || !str(a, 'key')) throw new IbsError('INVALID_ARGUMENT', 'Missing --cert or --key: expected both PEM files');
      return app.updateCertificate(ctx.paths.configDir, { certFile: str(a, 'cert') as string, keyFile: str(a, 'key') as string });
    },
    text: (r: Record<string, unknown>) => keyValues(r),
  },
  {
    path: ['status'],
    usage: 'status --services',
    summary: "the server's services and their states; a line for each file system it or a datastore writes to that is low on space (under 10% of bytes or inodes free)",
    positionals: 0,
    options: { services: { type: 'boolean', help: 'list the services (the default)' } },
    run: async (ctx) => {
      // Where the server and its datastores write, and how full: a disk filling up is seen before it fails backups.
      const status = { ...(await app.servicesStatus(ctx)), space: await app.spaceReport(ctx) };
      // A locked master key stops the jobs that use server keys: shown here, where an administrator looks first.
      if (!status.running || !(await ctx.keys.master.read())) return status;
      const masterKey = await local(ctx)
        .request<app.MasterKeyStatus>('GET', '/config/masterkey')
        .catch(() => undefined);
      return masterKey ? { ...status, masterKey } : status;
    },
    text: (r: app.ServicesStatus & { space: app.SpaceEntry[]; masterKey?: app.MasterKeyStatus }) =>
      [
        r.running ? `server running (pid ${r.pid}, ${r.listen})` : r.services.some((s) => s.state === 'unknown') ? 'server state unknown' : 'server not running',
        table(r.services.map((s) => ({ service: `ironcore-backup-${s.service}`, state: s.state === 'running' ? 'active (running)' : s.state, since: s.since ?? '', reason: s.reason ?? '' })), ['service', 'state', 'since', 'reason']),
        ...(r.masterKey === undefined
          ? []
          : r.masterKey.unlocked
            ? [`master key ${r.masterKey.fingerprint}: unlocked (${r.masterKey.source === 'unlock-file' ? 'from its unlock file' : 'with its passphrase'})`]
            : [`master key ${r.masterKey.fingerprint}: LOCKED${r.masterKey.reason ? ` (${r.masterKey.reason})` : ''}: jobs that use server keys fail until "ironcore-backup masterkey unlock --interactive"`]),
        ...r.space.filter((s) => s.low).map((s) => `LOW SPACE: ${s.what} (${s.path}): ${formatBytes(s.freeBytes)} free of ${formatBytes(s.totalBytes)}${s.freeInodes !== undefined && s.totalInodes && s.freeInodes < s.totalInodes * app.LOW_SPACE_SHARE ? `, ${s.freeInodes} of ${s.totalInodes} inodes free` : ''}`),
      ].join('\n'),
  },
  {
    path: ['user', 'create'],
    usage: 'user create USER@REALM [--password-file F] [--comment TEXT] [--email ADDR]',
    summary: 'create a user (realm ibs); the password comes from a file or IBS_USER_PASSWORD, never from an argument',
    positionals: 1,
    options: { 'password-file': { type: 'string', help: 'file holding the password' }, comment: { type: 'string', help: 'free text' }, email: { type: 'string', help: 'e-mail address' } },
    run: async (ctx, a) => {
      const password = str(a, 'password-file') !== undefined || process.env.IBS_USER_PASSWORD !== undefined ? await readPassphrase({ file: str(a, 'password-file'), envName: 'IBS_USER_PASSWORD', prompt: '' }) : undefined;
      return app.createUser(ctx, { userid: pos(a, 0), ...(password !== undefined ? { password } : {}), ...(str(a, 'comment') ? { comment: str(a, 'comment') as string } : {}), ...(str(a, 'email') ? { email: str(a, 'email') as string } : {}) });
    },
    text: (r: { userid: string }) => `Created user ${r.userid}`,
  },
  {
    path: ['user', 'list'],
    usage: 'user list',
    summary: 'list users',
    positionals: 0,
    run: (ctx) => app.listUsers(ctx),
    text: (r: Array<Record<string, unknown>>) => table(r, ['userid', 'enable', 'expire', 'comment', 'email', 'problem?']),
  },
  {
    path: ['user', 'update'],
    usage: 'user update USER@REALM [--enable|--disable] [--expire EPOCH] [--comment TEXT] [--email ADDR]',
    summary: 'change a user',
    positionals: 1,
    options: { enable: { type: 'boolean', help: 'allow logins' }, disable: { type: 'boolean', help: 'refuse logins and tokens' }, expire: { type: 'string', help: 'seconds since the epoch; 0 = never' }, comment: { type: 'string', help: 'free text' }, email: { type: 'string', help: 'e-mail address' } },
    run: (ctx, a) =>
      app.updateUser(ctx, {
        userid: pos(a, 0),
        ...(flag(a, 'enable') ? { enable: true } : flag(a, 'disable') ? { enable: false } : {}),
        ...(str(a, 'expire') !== undefined ? { expire: wholeNumber(str(a, 'expire'), 'expire', 2 ** 40) as number } : {}),
        ...(str(a, 'comment') !== undefined ? { comment: str(a, 'comment') as string } : {}),
        ...(str(a, 'email') !== undefined ? { email: str(a, 'email') as string } : {}),
      }),
    text: (r: Record<string, unknown>) => keyValues(r),
  },
  {
    path: ['user', 'remove'],
    usage: 'user remove USER@REALM',
    summary: 'remove a user with its tokens and ACL entries',
    positionals: 1,
    run: async (ctx, a) => {
      await app.removeUser(ctx, pos(a, 0));
      return { removed: pos(a, 0) };
    },
    text: (r: { removed: string }) => `Removed user ${r.removed}`,
  },
  {
    path: ['user', 'passwd'],
    usage: 'user passwd USER@REALM [--password-file F]',
    summary: "set a user's password (from a file, IBS_USER_PASSWORD, or a prompt)",
    positionals: 1,
    options: { 'password-file': { type: 'string', help: 'file holding the new password' } },
    run: async (ctx, a) => {
      const password = await readPassphrase({ file: str(a, 'password-file'), envName: 'IBS_USER_PASSWORD', prompt: 'New password: ', confirm: true });
      await app.setPassword(ctx, { userid: pos(a, 0), password });
      return { userid: pos(a, 0), changed: true };
    },
    text: (r: { userid: string }) => `Changed the password of ${r.userid}`,
  },
  {
    path: ['token', 'create'],
    usage: 'token create USER@REALM!NAME [--comment TEXT]',
    summary: 'create an API token; its secret is printed once',
    positionals: 1,
    options: { comment: { type: 'string', help: 'free text' } },
    run: (ctx, a) => app.createToken(ctx, { tokenid: pos(a, 0), ...(str(a, 'comment') ? { comment: str(a, 'comment') as string } : {}) }),
    text: (r: { tokenid: string; secret: string }) => `Created token ${r.tokenid}\nsecret: ${r.secret}\nThe secret is shown only now; store it (for example in a 0600 file for "remote create --secret-file").`,
  },
  {
    path: ['token', 'list'],
    usage: 'token list [USER@REALM]',
    summary: 'list API tokens (never their secrets)',
    positionals: [0, 1],
    run: (ctx, a) => app.listTokens(ctx, a.positionals[0]),
    text: (r: Array<Record<string, unknown>>) => table(r, ['tokenid', 'enable', 'expire', 'comment', 'problem?']),
  },
  {
    path: ['token', 'remove'],
    usage: 'token remove USER@REALM!NAME',
    summary: 'remove an API token and its ACL entries',
    positionals: 1,
    run: async (ctx, a) => {
      await app.removeToken(ctx, pos(a, 0));
      return { removed: pos(a, 0) };
    },
    text: (r: { removed: string }) => `Removed token ${r.removed}`,
  },
  {
    path: ['acl', 'update'],
    usage: 'acl update PATH ROLE --auth-id USER@REALM[!TOKEN] [--no-propagate]',
    summary: 'grant a role on an ACL path (/, /datastore/STORE[/NS…], /remote/…, /system/…)',
    positionals: 2,
    options: { 'auth-id': { type: 'string', help: 'user or token' }, 'no-propagate': { type: 'boolean', help: 'apply to this path only, not below it' } },
    run: (ctx, a) => {
      if (!str(a, 'auth-id')) throw new IbsError('INVALID_ARGUMENT', 'Missing --auth-id: expected the user or token to grant the role to');
      return app.updateAcl(ctx, { path: pos(a, 0), role: pos(a, 1), authId: str(a, 'auth-id') as string, propagate: !flag(a, 'no-propagate') });
    },
    text: (r: Array<Record<string, unknown>>) => table(r, ['path', 'authId', 'role', 'propagate']),
  },
  {
    path: ['acl', 'remove'],
    usage: 'acl remove PATH ROLE --auth-id USER@REALM[!TOKEN]',
    summary: 'take a role away',
    positionals: 2,
    options: { 'auth-id': { type: 'string', help: 'user or token' } },
    run: (ctx, a) => {
      if (!str(a, 'auth-id')) throw new IbsError('INVALID_ARGUMENT', 'Missing --auth-id: expected the user or token to take the role from');
      return app.updateAcl(ctx, { path: pos(a, 0), role: pos(a, 1), authId: str(a, 'auth-id') as string, remove: true });
    },
    text: (r: Array<Record<string, unknown>>) => table(r, ['path', 'authId', 'role', 'propagate']),
  },
  {
    path: ['acl', 'list'],
    usage: 'acl list',
    summary: 'list ACL entries',
    positionals: 0,
    run: (ctx) => app.listAcl(ctx),
    text: (r: Array<Record<string, unknown>>) => table(r, ['path', 'authId', 'role', 'propagate']),
  },
  // ---- schedules -------------------------------------------------------------------------------------
  {
    path: ['calendar'],
    usage: 'calendar EXPR [--iterations N] [--from TIME]',
    summary: 'show the normalized form of a calendar event ("Sun 04:30", "mon..fri 08:00", "*:0/15", "daily") and when it elapses next',
    positionals: 1,
    options: { iterations: { type: 'string', help: 'how many elapses to show (default 5)' }, from: { type: 'string', help: 'start after this time instead of now (ISO 8601 or epoch seconds)' } },
    run: async (_ctx, a) =>
      app.previewCalendar({ expression: pos(a, 0), ...(str(a, 'iterations') !== undefined ? { iterations: wholeNumber(str(a, 'iterations'), 'iterations', 1000) as number } : {}), ...(str(a, 'from') !== undefined ? { from: str(a, 'from') as string } : {}) }),
    text: (r: app.CalendarPreview) => [`Normalized form: ${r.normalized}`, ...r.next.map((t, i) => `${i === 0 ? '    Next elapse' : `       Iter. #${i + 1}`}: ${t}`)].join('\n'),
  },
  // ---- tasks (through the running server's admin socket) -------------------------------------------------
  {
    path: ['task', 'list'],
    usage: 'task list [--state running|ok|warnings|error|aborted|queued|finished] [--type T] [--since TIME] [--limit N]',
    summary: 'tasks of the running server, newest first',
    positionals: 0,
    options: { state: { type: 'string', help: 'only tasks in this state' }, type: { type: 'string', help: 'only this task type (verify, garbage_collection, …)' }, since: { type: 'string', help: 'only tasks started after this time (ISO 8601 or epoch seconds)' }, limit: { type: 'string', help: 'at most this many' } },
    run: (ctx, a) => {
      const since = str(a, 'since');
      const sinceSeconds = since === undefined ? undefined : /^\d+$/.test(since) ? Number(since) : Math.floor(Date.parse(since) / 1000);
      if (sinceSeconds !== undefined && !Number.isFinite(sinceSeconds)) throw new IbsError('INVALID_ARGUMENT', `Invalid --since "${since}": expected an ISO 8601 time or epoch seconds`);
      return local(ctx).request('GET', '/nodes/localhost/tasks', { state: str(a, 'state'), type: str(a, 'type'), since: sinceSeconds, limit: str(a, 'limit') });
    },
    text: (r: Array<{ upid: string; type: string; id: string; state: string; starttime: number; status?: string }>) =>
      table(r.map((t) => ({ ...t, start: new Date(t.starttime * 1000).toISOString().replace('.000Z', 'Z'), status: t.status ?? '' })), ['upid', 'start', 'state', 'status']),
  },
  {
    path: ['task', 'status'],
    usage: 'task status UPID',
    summary: 'state, result and live progress of a task',
    positionals: 1,
    run: (ctx, a) => local(ctx).request('GET', `/nodes/localhost/tasks/${encodeURIComponent(pos(a, 0))}/status`),
    text: (r: Record<string, unknown>) => keyValues(r),
  },
  {
    path: ['task', 'log'],
    usage: 'task log UPID [--follow]',
    summary: 'the log of a task (with --follow: until it ends)',
    positionals: 1,
    options: { follow: { type: 'boolean', help: 'keep printing as the task logs, until it ends' } },
    run: async (ctx, a) => {
      const client = local(ctx);
      if (flag(a, 'follow')) {
        await followTask(client, pos(a, 0), (t) => process.stdout.write(t));
        return { text: '' };
      }
      return { text: (await client.request<{ text: string }>('GET', `/nodes/localhost/tasks/${encodeURIComponent(pos(a, 0))}/log`, { start: 0 })).text };
    },
    text: (r: { text: string }) => r.text.trimEnd(),
  },
  {
    path: ['task', 'stop'],
    usage: 'task stop UPID',
    summary: 'stop a running task (it ends as aborted)',
    positionals: 1,
    run: (ctx, a) => local(ctx).request('DELETE', `/nodes/localhost/tasks/${encodeURIComponent(pos(a, 0))}`),
    text: (r: { stopped: boolean }) => (r.stopped ? 'Stop requested' : 'The task is not running'),
  },
  {
    path: ['worker', 'status'],
    usage: 'worker status',
    summary: 'worker slots per task type: in use and queued',
    positionals: 0,
    run: (ctx) => local(ctx).request('GET', '/nodes/localhost/workers'),
    text: (r: Array<Record<string, unknown>>) => table(r, ['type', 'slots', 'running', 'queued']),
  },
  // ---- notifications -----------------------------------------------------------------------------------
  {
    path: ['notification', 'target', 'create'],
    usage: 'notification target create NAME --type webhook|sendmail|smtp [--url U --method POST --header K=V … --secret-header K=V … --body TEMPLATE] [--mailto ADDR … --from ADDR] [--path SENDMAIL] [--server HOST --port N --mode starttls|tls|insecure --username U --password-file F]',
    summary: 'add a notification target; secrets (SMTP password, secret headers) are stored apart, 0600, never shown',
    positionals: 1,
    options: { type: { type: 'string', help: 'webhook, sendmail or smtp' }, ...TARGET_OPTIONS },
    run: async (ctx, a) => app.createNotificationTarget(ctx, { type: str(a, 'type') ?? '', name: pos(a, 0), ...(await targetChange(a)) }),
    text: (r: { type: string; name: string }) => `Created ${r.type} target ${r.name}`,
  },
  {
    path: ['notification', 'target', 'update'],
    usage: 'notification target update NAME [the options of create, except --type]',
    summary: 'change a notification target: given values replace the stored ones (repeatable ones as a whole), secrets stay unless given',
    positionals: 1,
    options: TARGET_OPTIONS,
    run: async (ctx, a) => app.updateNotificationTarget(ctx, pos(a, 0), await targetChange(a)),
    text: (r: { name: string }) => `Updated target ${r.name}`,
  },
  {
    path: ['notification', 'target', 'list'],
    usage: 'notification target list',
    summary: 'list notification targets (never their secrets)',
    positionals: 0,
    run: (ctx) => app.listNotificationTargets(ctx),
    text: (r: Array<Record<string, unknown>>) => table(r.map((t) => ({ ...t, where: t.url ?? t.server ?? t.path ?? '', to: t.mailto ?? '' })), ['name', 'type', 'where', 'to', 'comment', 'problem?']),
  },
  {
    path: ['notification', 'target', 'remove'],
    usage: 'notification target remove NAME',
    summary: 'remove a notification target and its secrets',
    positionals: 1,
    run: async (ctx, a) => {
      await ctx.notifications.remove('target', pos(a, 0));
      return { removed: pos(a, 0) };
    },
    text: (r: { removed: string }) => `Removed target ${r.removed}`,
  },
  {
    path: ['notification', 'target', 'test'],
    usage: 'notification target test NAME [--recipient ADDR]',
    summary: 'send a test notification through a target (to another recipient with --recipient)',
    positionals: 1,
    options: { recipient: { type: 'string', help: 'send the test mail here instead of the configured recipients' } },
    run: (ctx, a) => app.testNotificationTarget(ctx, { name: pos(a, 0), ...(str(a, 'recipient') ? { recipient: str(a, 'recipient') as string } : {}) }),
    text: (r: { target: string }) => `Test notification sent through ${r.target}`,
  },
  {
    path: ['notification', 'matcher', 'create'],
    usage: 'notification matcher create NAME --target T … [--match-severity error,warning] [--match-type verify,gc,prune,backup,sync] [--match-datastore S] [--match-job J] [--match-calendar CAL] [--mode all|any] [--invert] [--disable]',
    summary: 'route events to targets: conditions combine with --mode (all by default); --invert negates',
    positionals: 1,
    options: MATCHER_OPTIONS,
    run: (ctx, a) => app.createNotificationMatcher(ctx, { name: pos(a, 0), targets: list(a, 'target'), ...matcherChange(a) }),
    text: (r: { name: string }) => `Created matcher ${r.name}`,
  },
  {
    path: ['notification', 'matcher', 'update'],
    usage: 'notification matcher update NAME [the options of create] [--no-invert] [--enable]',
    summary: 'change a matcher: given values replace the stored ones (lists as a whole)',
    positionals: 1,
    options: MATCHER_OPTIONS,
    run: (ctx, a) => app.updateNotificationMatcher(ctx, pos(a, 0), { ...(a.values.target !== undefined ? { targets: list(a, 'target') } : {}), ...matcherChange(a) }),
    text: (r: { name: string }) => `Updated matcher ${r.name}`,
  },
  {
    path: ['notification', 'matcher', 'list'],
    usage: 'notification matcher list',
    summary: 'list matchers',
    positionals: 0,
    run: (ctx) => app.listNotificationMatchers(ctx),
    text: (r: Array<Record<string, unknown>>) => table(r, ['name', 'targets', 'severities', 'types', 'datastores', 'jobs', 'calendar', 'mode', 'invert', 'disable', 'problem?']),
  },
  {
    path: ['notification', 'matcher', 'remove'],
    usage: 'notification matcher remove NAME',
    summary: 'remove a matcher',
    positionals: 1,
    run: async (ctx, a) => {
      await ctx.notifications.remove('matcher', pos(a, 0));
      return { removed: pos(a, 0) };
    },
    text: (r: { removed: string }) => `Removed matcher ${r.removed}`,
  },
  // ---- scheduled jobs ---------------------------------------------------------------------------------
  {
    path: ['verify', 'job', 'create'],
    usage: 'verify job create NAME --store S --schedule CAL [--ns NS] [--verify-window-days DAYS | --ignore-verified [--outdated-after DAYS]] [--max-concurrent-snapshots N] [--notification-mode M] [--comment TEXT]',
    summary: 'schedule verification of a datastore (run by the server)',
    positionals: 1,
    options: { store: { type: 'string', help: 'datastore' }, ...STORE_NS, ...VERIFY_JOB_OPTIONS },
    run: (ctx, a) => {
      if (!str(a, 'store') || !str(a, 'schedule')) throw new IbsError('INVALID_ARGUMENT', 'Missing --store or --schedule: a verify job needs both');
      return app.createVerifyJob(ctx, { id: pos(a, 0), store: str(a, 'store') as string, schedule: str(a, 'schedule') as string, ...(str(a, 'ns') ? { ns: str(a, 'ns') as string } : {}), ...verifyJobArgs(a) });
    },
    text: (r: { id: string }) => `Created verify job ${r.id}`,
  },
  {
    path: ['verify', 'job', 'update'],
    usage: 'verify job update NAME [--schedule CAL] [--verify-window-days DAYS] [--ignore-verified] [--outdated-after DAYS] [--max-concurrent-snapshots N] [--notification-mode M] [--comment TEXT] [--delete OPTION …]',
    summary: 'change a verify job: given options replace the stored ones; --delete removes one (verify-window-days, ignore-verified, outdated-after, max-concurrent-snapshots, notification-mode, comment); a window replaces ignore-verified and outdated-after',
    positionals: 1,
    options: { ...VERIFY_JOB_OPTIONS, delete: { type: 'string', multiple: true, help: 'option to remove' } },
    run: (ctx, a) => {
      const deleted = list(a, 'delete');
      for (const name of deleted) {
        if (!(app.VERIFY_JOB_DELETABLE as readonly string[]).includes(name)) throw new IbsError('INVALID_ARGUMENT', `Invalid --delete "${name}": expected one of ${app.VERIFY_JOB_DELETABLE.join(', ')}`);
      }
      const change: Parameters<typeof app.updateVerifyJob>[2] = {
        ...verifyJobArgs(a),
        ...(str(a, 'schedule') !== undefined ? { schedule: str(a, 'schedule') as string } : {}),
        ...(deleted.length ? { delete: deleted as app.VerifyJobDeletable[] } : {}),
      };
      if (Object.keys(change).length === 0) throw new IbsError('INVALID_ARGUMENT', 'Nothing to change: give an option of verify job create or --delete OPTION');
      return app.updateVerifyJob(ctx, pos(a, 0), change);
    },
    text: (r: Record<string, unknown>) => keyValues(r),
  },
  {
    path: ['verify', 'job', 'run'],
    usage: 'verify job run NAME',
    summary: 'run a verify job now: as a task of the running server (followed until it ends), else in this process',
    positionals: 1,
    run: async (ctx, a) => {
      const job = await ctx.jobs.verify.get(pos(a, 0));
      return runJobNow(ctx, { id: `verify/${job.id}`, route: `/admin/verify/${encodeURIComponent(job.id)}/run`, what: `verify job ${job.id}`, failCode: 'VERIFY_FAILED', here: () => app.runVerifyJob(ctx, job) });
    },
    text: (r: { upid?: string; summary?: string }) => (r.upid ? `${r.summary ?? 'done'}\ntask: ${r.upid}` : (r.summary ?? 'done')),
  },
  {
    path: ['verify', 'job', 'list'],
    usage: 'verify job list',
    summary: 'list verify jobs',
    positionals: 0,
    run: (ctx) => app.listVerifyJobs(ctx),
    text: (r: Array<Record<string, unknown>>) => table(r, ['id', 'store', 'ns', 'schedule', 'windowDays', 'ignoreVerified', 'outdatedAfterDays', 'maxConcurrentSnapshots', 'notificationMode', 'problem?']),
  },
  {
    path: ['verify', 'job', 'remove'],
    usage: 'verify job remove NAME',
    summary: 'remove a verify job',
    positionals: 1,
    run: async (ctx, a) => {
      await ctx.jobs.verify.remove(pos(a, 0));
      return { removed: pos(a, 0) };
    },
    text: (r: { removed: string }) => `Removed verify job ${r.removed}`,
  },
  {
    path: ['prune', 'job', 'create'],
    usage: 'prune job create NAME --store S --schedule CAL [--ns NS] --keep-last/-daily/… N',
    summary: 'schedule pruning of every group of a namespace (run by the server)',
    positionals: 1,
    options: { store: { type: 'string', help: 'datastore' }, schedule: { type: 'string', help: 'calendar event' }, ...STORE_NS, ...KEEP_OPTIONS, comment: { type: 'string', help: 'free text' } },
    run: (ctx, a) => {
      if (!str(a, 'store') || !str(a, 'schedule')) throw new IbsError('INVALID_ARGUMENT', 'Missing --store or --schedule: a prune job needs both');
      return app.createPruneJob(ctx, { id: pos(a, 0), store: str(a, 'store') as string, schedule: str(a, 'schedule') as string, ...(str(a, 'ns') ? { ns: str(a, 'ns') as string } : {}), keep: keepFrom(a), ...(str(a, 'comment') ? { comment: str(a, 'comment') as string } : {}) });
    },
    text: (r: { id: string }) => `Created prune job ${r.id}`,
  },
  {
    path: ['prune', 'job', 'list'],
    usage: 'prune job list',
    summary: 'list prune jobs',
    positionals: 0,
    run: (ctx) => app.listPruneJobs(ctx),
    text: (r: Array<Record<string, unknown>>) => table(r, ['id', 'store', 'ns', 'schedule', 'keep', 'problem?']),
  },
  {
    path: ['prune', 'job', 'update'],
    usage: 'prune job update NAME [--schedule CAL] [--keep-last/-daily/… N] [--comment TEXT] [--delete OPTION …]',
    summary: `change a prune job: given options replace the stored ones; --delete removes one (${app.PRUNE_JOB_DELETABLE.join(', ')})`,
    positionals: 1,
    options: { schedule: { type: 'string', help: 'calendar event' }, ...KEEP_OPTIONS, comment: { type: 'string', help: 'free text' }, delete: { type: 'string', multiple: true, help: 'option to remove' } },
    run: (ctx, a) => {
      const deleted = list(a, 'delete');
      for (const name of deleted) {
        if (!(app.PRUNE_JOB_DELETABLE as readonly string[]).includes(name)) throw new IbsError('INVALID_ARGUMENT', `Invalid --delete "${name}": expected one of ${app.PRUNE_JOB_DELETABLE.join(', ')}`);
      }
      const keep = keepFrom(a);
      const change: Parameters<typeof app.updatePruneJob>[2] = {
        ...(Object.keys(keep).length ? { keep } : {}),
        ...(str(a, 'schedule') !== undefined ? { schedule: str(a, 'schedule') as string } : {}),
        ...(str(a, 'comment') !== undefined ? { comment: str(a, 'comment') as string } : {}),
        ...(deleted.length ? { delete: deleted as app.PruneJobDeletable[] } : {}),
      };
      if (Object.keys(change).length === 0) throw new IbsError('INVALID_ARGUMENT', 'Nothing to change: give --schedule, a --keep-… option, --comment or --delete OPTION');
      return app.updatePruneJob(ctx, pos(a, 0), change);
    },
    text: (r: Record<string, unknown>) => keyValues(r),
  },
  {
    path: ['prune', 'job', 'remove'],
    usage: 'prune job remove NAME',
    summary: 'remove a prune job',
    positionals: 1,
    run: async (ctx, a) => {
      await ctx.jobs.prune.remove(pos(a, 0));
      return { removed: pos(a, 0) };
    },
    text: (r: { removed: string }) => `Removed prune job ${r.removed}`,
  },
  {
    path: ['job', 'list'],
    usage: 'job list',
    summary: 'every scheduled job (verify, prune, sync, GC) with its last run (time, result, what it did) and next run',
    positionals: 0,
    run: (ctx) => app.listJobs(ctx),
    text: (r: app.JobRow[]) => table(r, ['job', 'schedule', 'lastRun', 'lastState', 'nextRun', 'lastSummary?', 'problem?']),
  },

  // ---- remotes -----------------------------------------------------------------------------------------------
  {
    path: ['remote', 'create'],
    usage: 'remote create NAME --host H [--port 8007] --auth-id USER@REALM!TOKEN (--secret-file F | --password) --fingerprint FP [--comment TEXT]',
    summary: 'register a remote server; its certificate fingerprint is pinned, its token secret stored apart (0600) and never shown',
    positionals: [0, 1],
    options: { ...REMOTE_FIELDS },
    run: async (ctx, a) => {
      const name = remoteName(a);
      const secret = await remoteSecret(a);
      if (secret === undefined) throw new IbsError('INVALID_ARGUMENT', 'remote create needs the token secret: --secret-file F or --password (prompted)');
      for (const k of ['host', 'auth-id', 'fingerprint']) if (str(a, k) === undefined) throw new IbsError('INVALID_ARGUMENT', `remote create needs --${k}`);
      return app.createRemote(ctx, { name, host: str(a, 'host') as string, ...(str(a, 'port') ? { port: wholeNumber(str(a, 'port'), 'port', 65535) as number } : {}), authId: str(a, 'auth-id') as string, secret, fingerprint: str(a, 'fingerprint') as string, ...(str(a, 'comment') ? { comment: str(a, 'comment') as string } : {}) });
    },
    text: (r: { name: string; host: string; port: number }) => `Remote ${r.name} registered (${r.host}:${r.port}); check it with "ironcore-backup remote test ${r.name}"`,
  },
  {
    path: ['remote', 'update'],
    usage: 'remote update NAME|--name NAME [--host H] [--port N] [--auth-id ID] [--secret-file F | --password] [--fingerprint FP] [--comment TEXT]',
    summary: 'change a remote; update the fingerprint only after verifying the new certificate out of band',
    positionals: [0, 1],
    options: { ...REMOTE_FIELDS },
    run: async (ctx, a) => {
      const secret = await remoteSecret(a);
      return app.updateRemote(ctx, remoteName(a), { host: str(a, 'host'), ...(str(a, 'port') ? { port: wholeNumber(str(a, 'port'), 'port', 65535) as number } : {}), authId: str(a, 'auth-id'), fingerprint: str(a, 'fingerprint'), comment: str(a, 'comment'), ...(secret !== undefined ? { secret } : {}) });
    },
    text: (r: { name: string; fingerprint: string }) => `Remote ${r.name} updated (fingerprint ${r.fingerprint})`,
  },
  {
    path: ['remote', 'list'],
    usage: 'remote list',
    summary: 'registered remotes (never their secrets)',
    positionals: 0,
    run: (ctx) => ctx.remotes.list(),
    text: (r: Array<Record<string, unknown>>) => table(r, ['name', 'host', 'port', 'authId', 'fingerprint', 'comment']),
  },
  {
    path: ['remote', 'show'],
    usage: 'remote show NAME|--name NAME',
    summary: 'one remote (never its secret)',
    positionals: [0, 1],
    options: { name: { type: 'string', help: 'the remote' } },
    run: (ctx, a) => ctx.remotes.get(remoteName(a)),
    text: (r: Record<string, unknown>) => keyValues(r),
  },
  {
    path: ['remote', 'remove'],
    usage: 'remote remove NAME|--name NAME',
    summary: 'remove a remote and its secret (not while a sync job uses it)',
    positionals: [0, 1],
    options: { name: { type: 'string', help: 'the remote' } },
    run: async (ctx, a) => {
      await app.removeRemote(ctx, remoteName(a));
      return { removed: remoteName(a) };
    },
    text: (r: { removed: string }) => `Remote ${r.removed} removed`,
  },
  {
    path: ['remote', 'test'],
    usage: 'remote test NAME|--name NAME [--store REMOTE_STORE]',
    summary: 'check a remote, one line each: reachable, TLS version, fingerprint, authentication, privileges on a store, server version',
    positionals: [0, 1],
    options: { name: { type: 'string', help: 'the remote' }, store: { type: 'string', help: 'a datastore on the remote: report your privileges on it' } },
    run: async (ctx, a) => {
      const r = await app.testRemote(ctx, { name: remoteName(a), ...(str(a, 'store') ? { store: str(a, 'store') as string } : {}) });
      if (!r.ok) throw new IbsError(r.lines.some((l) => l.check === 'fingerprint' && !l.ok) ? 'CERT_MISMATCH' : 'UNAVAILABLE', r.lines.map((l) => `${l.ok ? 'ok  ' : 'FAIL'} ${l.check}: ${l.detail}`).join('\n'), { details: r });
      return r;
    },
    text: (r: { lines: Array<{ check: string; ok: boolean; detail: string }> }) => r.lines.map((l) => `${l.ok ? 'ok  ' : 'FAIL'} ${l.check}: ${l.detail}`).join('\n'),
  },
  // ---- sync jobs -------------------------------------------------------------------------------------------
  {
    path: ['sync', 'create'],
    usage: 'sync create --name N --store LOCAL [--remote R] --remote-store S --direction push|pull [--schedule CAL] [--ns NS] [--remote-ns NS] [--max-depth D] [--include F …] [--group-filter F …] [--remove-vanished] [--transfer-last N] [--bwlimit MiB/s] [--worker-threads N] …',
    summary: 'create a sync job (also spelled --source for --store and --remote-repository for --remote-store); without --remote it syncs two local datastores',
    positionals: 0,
    options: { ...SYNC_OPTIONS },
    run: (ctx, a) => app.createSyncJob(ctx, syncArgs(a, true) as app.SyncJobInput),
    text: (r: { id: string; direction: string; schedule?: string }) => `Sync job ${r.id} created (${r.direction}${r.schedule ? `, schedule "${r.schedule}"` : ', run by hand'})`,
  },
  {
    path: ['sync', 'update'],
    usage: 'sync update --name N [any option of sync create] [--delete OPTION …]',
    summary: 'change a sync job; --delete removes an option (e.g. --delete schedule)',
    positionals: 0,
    options: { ...SYNC_OPTIONS, delete: { type: 'string', multiple: true, help: 'option to remove (schedule, include, group-filter, bwlimit, …)' } },
    run: (ctx, a) => {
      const { id, ...change } = syncArgs(a, false);
      const drop = list(a, 'delete').flatMap((k) => (k === 'bwlimit' ? ['rateIn', 'rateOut'] : Object.keys(app.syncJobInput({ [k]: true }))));
      return app.updateSyncJob(ctx, id as string, { ...change, ...(drop.length ? { delete: drop } : {}) });
    },
    text: (r: { id: string }) => `Sync job ${r.id} updated`,
  },
  {
    path: ['sync', 'list'],
    usage: 'sync list',
    summary: 'sync jobs: direction, stores, schedule, last run (time, result, UPID, what it did), next run',
    positionals: 0,
    run: (ctx) => app.listSyncJobs(ctx),
    text: (r: Array<Record<string, unknown>>) =>
      table(
        r.map((j) => ({ ...j, from: j.direction === 'pull' ? `${j.remote ?? 'local'}:${j.remoteStore}` : `local:${j.store}`, to: j.direction === 'pull' ? `local:${j.store}` : `${j.remote ?? 'local'}:${j.remoteStore}`, schedule: j.schedule ?? '(by hand)' })),
        ['id', 'direction', 'from', 'to', 'schedule', 'lastRun', 'lastState', 'lastUpid', 'nextRun', 'lastSummary?', 'problem?'],
      ),
  },
  {
    path: ['sync', 'show'],
    usage: 'sync show --name N',
    summary: 'one sync job with its options and last run',
    positionals: 0,
    options: { name: { type: 'string', help: 'the job' } },
    run: async (ctx, a) => {
      return app.showSyncJob(ctx, requiredName(a));
    },
    text: (r: Record<string, unknown>) => keyValues(Object.fromEntries(Object.entries(r).map(([k, v]) => [k, Array.isArray(v) ? v.join(' ') : v]))),
  },
  {
    path: ['sync', 'remove'],
    usage: 'sync remove --name N',
    summary: 'remove a sync job (copies already made stay)',
    positionals: 0,
    options: { name: { type: 'string', help: 'the job' } },
    run: async (ctx, a) => {
      await app.removeSyncJob(ctx, requiredName(a));
      return { removed: requiredName(a) };
    },
    text: (r: { removed: string }) => `Sync job ${r.removed} removed`,
  },
  {
    path: ['sync', 'run'],
    usage: 'sync run --name N',
    summary: 'run a sync job now: as a task of the running server (followed until it ends), else in this process',
    positionals: 0,
    options: { name: { type: 'string', help: 'the job' } },
    run: async (ctx, a) => runSyncJobNow(ctx, requiredName(a), 'run'),
    text: (r: { summary?: string; upid?: string }) => `${r.summary ?? 'done'}${r.upid ? `\ntask: ${r.upid}` : ''}`,
  },
  {
    path: ['sync', 'repair'],
    usage: 'sync repair --name N',
    summary: 'compare both sides fully: re-check every chunk the copies reference, re-send missing or damaged chunks and snapshots',
    positionals: 0,
    options: { name: { type: 'string', help: 'the job' } },
    run: async (ctx, a) => runSyncJobNow(ctx, requiredName(a), 'repair'),
    text: (r: { summary?: string; damaged?: string[]; upid?: string }) => `${r.damaged ? `damaged copies found: ${r.damaged.length}\n` : ''}${r.summary ?? 'done'}${r.upid ? `\ntask: ${r.upid}` : ''}`,
  },
  {
    path: ['sync', 'diff'],
    usage: 'sync diff --name N | --source STORE [--remote R] --remote-repository S [--ns NS] [--remote-ns NS] [--direction push|pull]',
    summary: 'snapshots present on one side only and ones whose content differs; exits 0 when aligned, 1 when not',
    positionals: 0,
    options: {
      name: { type: 'string', help: 'compare the two sides of this job' },
      source: { type: 'string', help: 'the local datastore' },
      store: { type: 'string', help: 'the local datastore (same as --source)' },
      remote: { type: 'string', help: 'the remote (omit: a second local datastore)' },
      'remote-repository': { type: 'string', help: 'the datastore on the remote' },
      'remote-store': { type: 'string', help: 'the datastore on the remote (same as --remote-repository)' },
      ns: { type: 'string', help: 'local namespace' },
      'remote-ns': { type: 'string', help: 'remote namespace' },
      direction: { type: 'string', help: 'push (local is the source, default) or pull' },
    },
    run: async (ctx, a) => {
      const direction = str(a, 'direction');
      if (direction !== undefined && direction !== 'push' && direction !== 'pull') throw new IbsError('INVALID_ARGUMENT', `Invalid --direction "${direction}": expected push or pull`);
      const r = str(a, 'name') !== undefined
        ? await app.syncDiff(ctx, { id: str(a, 'name') as string })
        : await app.syncDiff(ctx, { store: str(a, 'source') ?? str(a, 'store'), remoteStore: str(a, 'remote-repository') ?? str(a, 'remote-store'), ...(str(a, 'remote') ? { remote: str(a, 'remote') } : {}), ...(str(a, 'ns') ? { ns: str(a, 'ns') } : {}), ...(str(a, 'remote-ns') ? { remoteNs: str(a, 'remote-ns') } : {}), ...(direction ? { direction } : {}) } as Parameters<typeof app.syncDiff>[1]);
      return r;
    },
    exitCode: (r: { aligned: boolean }) => (r.aligned ? 0 : 1),
    text: (r: Awaited<ReturnType<typeof app.syncDiff>>) => (r.aligned ? `Aligned: ${r.source} and ${r.target} hold the same snapshots` : `${table(r.rows as unknown as Array<Record<string, unknown>>, ['where', 'snapshot'])}\n${r.rows.length} difference(s) between ${r.source} (source) and ${r.target} (target); run the sync to align`),
  },
  // ---- verify, prune, gc -------------------------------------------------------------------------------
  {
    path: ['verify', 'start'],
    usage: 'verify start STORE [--ns NS] [--snapshot SNAP] [--ignore-verified --outdated-after DAYS] [--max-concurrent-snapshots N] [--keyfile F]',
    summary: 'check every chunk of the selected snapshots; exits non-zero when anything is damaged',
    positionals: 1,
    options: {
      ...STORE_NS,
      snapshot: { type: 'string', help: 'only this snapshot (TYPE/ID/TIME)' },
      'ignore-verified': { type: 'boolean', help: 'skip snapshots verified ok recently' },
      'outdated-after': { type: 'string', help: 'with --ignore-verified: re-verify after this many days' },
      ...CONCURRENT_SNAPSHOTS,
      'notification-mode': { type: 'string', help: 'send the result to the notification matchers: always, error (only on failure) or never' },
      ...KEY_OPTIONS,
    },
    run: async (ctx, a) => {
      const mode = str(a, 'notification-mode');
      if (mode !== undefined && !['always', 'error', 'never'].includes(mode)) throw new IbsError('INVALID_ARGUMENT', `Invalid --notification-mode "${mode}": expected always, error or never`);
      const r = await app.verifyStore(ctx, {
        store: pos(a, 0),
        ...(str(a, 'ns') ? { ns: str(a, 'ns') as string } : {}),
        ...(str(a, 'snapshot') ? { snapshot: str(a, 'snapshot') as string } : {}),
        ignoreVerified: flag(a, 'ignore-verified'),
        ...(str(a, 'outdated-after') !== undefined ? { outdatedAfterDays: wholeNumber(str(a, 'outdated-after'), 'outdated-after', 36500) as number } : {}),
        ...concurrentSnapshots(a),
        key: await keyFrom(a),
      });
      const lines = r.badChunks.map((b) => `chunk ${b.digest}: ${b.reason}; used by ${b.snapshots.join(', ') || 'no snapshot'}`);
      const failed = r.snapshots.filter((s) => s.state === 'failed').map((s) => `${s.snapshot}: ${s.problems.join('; ')}`);
      if (mode !== undefined) {
        const summary = r.ok ? app.verifySummary(r) : [...failed, ...lines].join('\n');
        for (const d of await app.notifyVerifyResult(ctx, { store: pos(a, 0), ok: r.ok, summary, mode: mode as 'always' })) {
          if (!d.ok) ctx.reporter.warn(`notification to ${d.target} failed: ${d.error}`);
        }
      }
      if (!r.ok) {
        throw new IbsError('VERIFY_FAILED', `Verification failed for ${failed.length} snapshot(s):\n  ${[...failed, ...lines].join('\n  ')}`, { details: { ...r } });
      }
      return r;
    },
    remote: (a) => ({ method: 'POST', path: storeApi(a, '/verify'), params: { ...nsParam(a), ...(str(a, 'snapshot') ? { snapshot: str(a, 'snapshot') } : {}), ...(flag(a, 'ignore-verified') ? { 'ignore-verified': true } : {}), ...(str(a, 'outdated-after') !== undefined ? { 'outdated-after': wholeNumber(str(a, 'outdated-after'), 'outdated-after', 36500) } : {}), ...(str(a, 'max-concurrent-snapshots') !== undefined ? { 'max-concurrent-snapshots': concurrentSnapshots(a).maxConcurrentSnapshots } : {}) }, task: 'VERIFY_FAILED' }),
    text: (r: Awaited<ReturnType<typeof app.verifyStore>>) => app.verifySummary(r),
  },
  {
    path: ['verify', 'status'],
    usage: 'verify status',
    summary: 'per datastore: snapshots verified ok, failed and never, the oldest verification; verify jobs with last and next run, and for a job with a window the snapshots overdue in it (and what to do when it is outgrown)',
    positionals: 0,
    run: (ctx) => app.verifyStatus(ctx),
    text: (r: app.VerifyStatus) =>
      `${table(r.datastores, ['store', 'snapshots', 'ok', 'failed', 'never', 'oldestVerified', 'error'])}\n\n${r.jobs.length ? table(r.jobs, ['job', 'schedule', 'window', 'overdue', 'lastRun', 'lastState', 'nextRun']) : 'No verify jobs scheduled (create one with "verify job create").'}${r.notes.length ? `\n\n${r.notes.join('\n')}` : ''}`,
  },
  {
    path: ['prune'],
    usage: 'prune STORE GROUP [--ns NS] --keep-last/-hourly/-daily/-weekly/-monthly/-yearly N [--dry-run]',
    summary: 'remove the snapshots of a group that the retention rules do not keep',
    positionals: 2,
    options: { ...STORE_NS, ...KEEP_OPTIONS, 'dry-run': { type: 'boolean', help: 'only show what would be kept and removed' } },
    run: (ctx, a) => app.pruneStore(ctx, { store: pos(a, 0), group: pos(a, 1), ...(str(a, 'ns') ? { ns: str(a, 'ns') as string } : {}), keep: keepFrom(a), dryRun: flag(a, 'dry-run') }),
    remote: (a) => ({ method: 'POST', path: storeApi(a, '/prune'), params: { ...nsParam(a), group: pos(a, 1), ...keepFrom(a), ...(flag(a, 'dry-run') ? { 'dry-run': true } : {}) }, ...(flag(a, 'dry-run') ? {} : { task: 'UNAVAILABLE' as const }) }),
    text: (r: Awaited<ReturnType<typeof app.pruneStore>>) =>
      table(
        r.map((e) => ({ snapshot: e.snapshot, action: e.mark.action === 'keep' ? `keep (${e.mark.rule})` : e.mark.action, note: e.error ?? '' })),
        ['snapshot', 'action', 'note'],
      ),
  },
  {
    path: ['gc', 'start'],
    usage: 'gc start STORE [--margin-minutes N]',
    summary: 'remove chunks no snapshot references (never those a running backup may use)',
    positionals: 1,
    options: { 'margin-minutes': { type: 'string', help: 'safety margin before the oldest running writer (default 5)' } },
    run: (ctx, a) => app.gcStore(ctx, { store: pos(a, 0), ...(str(a, 'margin-minutes') !== undefined ? { marginMinutes: wholeNumber(str(a, 'margin-minutes'), 'margin-minutes', 10080) as number } : {}) }),
    remote: (a) => ({ method: 'POST', path: storeApi(a, '/gc'), task: 'UNAVAILABLE' }),
    text: (r: Awaited<ReturnType<typeof app.gcStore>>) =>
      keyValues({
        'removed chunks': `${r.removedChunks} (${formatBytes(r.removedBytes)})`,
        'pending chunks': `${r.pendingChunks} (${formatBytes(r.pendingBytes)}), newer than the cutoff ${new Date(r.cutoffMs).toISOString()}`,
        'kept chunks': `${r.keptChunks} (${formatBytes(r.keptBytes)})`,
        'dedup factor': r.dedupFactor.toFixed(2),
        'partial snapshots removed': r.removedPartial,
      }),
  },
  {
    path: ['gc', 'status'],
    usage: 'gc status STORE',
    summary: 'the result of the last garbage collection',
    positionals: 1,
    run: async (ctx, a) => (await app.gcStatus(ctx, pos(a, 0))) ?? { status: 'never run' },
    remote: (a) => ({ method: 'GET', path: storeApi(a, '/gc') }),
    text: (r: Record<string, unknown>) => keyValues(Object.fromEntries(Object.entries(r).map(([k, v]) => [k, /Bytes$/.test(k) ? bytesOr(v) : v]))),
  },
];

async function readStdin(): Promise<string> {
  const pieces: Buffer[] = [];
  for await (const piece of process.stdin) pieces.push(piece as Buffer);
  return Buffer.concat(pieces).toString('utf8');
}
