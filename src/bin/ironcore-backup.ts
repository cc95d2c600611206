/**
 * Composition root of the `ironcore-backup` command: picks the storage backend for each datastore, stacks the
 * wrappers, and hands the context to the CLI; adds the `server` command, which runs the daemon.
 */
import { existsSync, readFileSync } from 'node:fs';
import { userInfo } from 'node:os';
import { join } from 'node:path';
import { configStores, type AppContext } from '../app/index.ts';
import { readPassphrase, runCli, type Command } from '../cli/index.ts';
import { MasterKey, resolvePaths, type DatastoreConfig, type IbsPaths } from '../config/index.ts';
import { IbsError } from '../core/index.ts';
import { ChunkPool } from '../datastore/index.ts';
import { JOURNAL_SOCKET, journalByDefault, silentReporter, type Reporter } from '../lib/index.ts';
import { ConcurrencyBackend, RetryBackend, type StorageBackend } from '../storage/index.ts';
import { LocalBackend } from '../storage/local/index.ts';

export function openBackend(config: DatastoreConfig): StorageBackend {
  switch (config.backend) {
    case 'local':
      return new RetryBackend(new ConcurrencyBackend(new LocalBackend({ root: config.path }), 64), { attempts: 3 });
  }
}

export function localAuthId(): string {
  return `${userInfo().username}@pam`;
}

/** One pool of chunk worker threads per process (checks for receivers, encoding for backups), started when first needed. */
let pool: ChunkPool | undefined;
/** Threads a command's pool adds for storing received chunks (a sync into a local datastore); a server adds none, for its memory. */
const STORE_THREADS = 2;
/** Set by the server command before it makes its first context. */
let serving = false;

/** One master key state per configuration directory and process: an unlock lasts until the process ends. */
const masters = new Map<string, MasterKey>();

/**
 * `interactive`: a command run by an administrator, which may ask for the master key's passphrase
 * (IBS_MASTER_PASSPHRASE, or a prompt on a terminal) when the master key is locked; the server never asks.
 */
export function makeContext(paths: IbsPaths, authId: string, reporter: Reporter = silentReporter, signal?: AbortSignal, interactive = false): AppContext {
  let master = masters.get(paths.configDir);
  if (!master) masters.set(paths.configDir, (master = new MasterKey(paths.configDir)));
  const askMasterPassphrase = (): Promise<string> => readPassphrase({ envName: 'IBS_MASTER_PASSPHRASE', prompt: 'Master key passphrase: ' });
  // Tests shorten how long a stalled link is waited on; operators normally keep the default (60 s).
  const idleText = process.env.IBS_LINK_IDLE_TIMEOUT_MS;
  const linkIdle = idleText !== undefined && /^\d{3,7}$/.test(idleText) ? Number(idleText) : undefined;
  return {
    ...configStores(paths, { master, ...(interactive ? { askMasterPassphrase } : {}) }),
    openBackend,
    authId,
    reporter,
    signal,
    ...(linkIdle !== undefined ? { linkIdleTimeoutMs: linkIdle } : {}),
    get chunkPool(): ChunkPool {
      return (pool ??= new ChunkPool(undefined, { storeThreads: serving ? 0 : STORE_THREADS }));
    },
  };
}

/** The `server` command: runs the daemon until SIGTERM or SIGINT. */
export function serverCommand(paths: IbsPaths): Command {
  return {
    path: ['server'],
    usage: 'server [--listen ADDRESS] [--port N] [--admin-password-file F] [--journal auto|yes|no]',
    summary: 'run the daemon: HTTPS API on port 8007 (TLS 1.3, HTTP/2) and task workers; SIGTERM stops it gracefully',
    positionals: 0,
    options: {
      listen: { type: 'string', help: 'address to bind (default 0.0.0.0; 127.0.0.1 for local only)' },
      port: { type: 'string', help: 'TCP port (default 8007; 0 picks a free one)' },
      'admin-password-file': { type: 'string', help: 'first start: take the admin@ibs password from this file instead of generating one' },
      journal: { type: 'string', help: 'also write each service\'s log to the system journal, as unit ironcore-backup-SERVICE: auto (default: when run by systemd, as root, with a journal), yes, no' },
    },
    run: async (_ctx, a) => {
      serving = true;
      const portText = (a.values.port as string | undefined) ?? '8007';
      if (!/^\d{1,5}$/.test(portText) || Number(portText) > 65535) throw new IbsError('INVALID_ARGUMENT', `Invalid --port "${portText}": expected 0 to 65535`);
      const journalText = (a.values.journal as string | undefined) ?? 'auto';
      if (!['auto', 'yes', 'no'].includes(journalText)) throw new IbsError('INVALID_ARGUMENT', `Invalid --journal "${journalText}": expected auto, yes or no`);
      if (journalText === 'yes' && !existsSync(JOURNAL_SOCKET)) throw new IbsError('INVALID_ARGUMENT', `--journal yes: there is no system journal here (no ${JOURNAL_SOCKET}; is systemd-journald running?)`);
      // The server's modules (HTTP/2, API, scheduler) are loaded by this command only: the others start sooner.
      const { startServer } = await import('./server.ts');
      const server = await startServer({
        paths,
        makeContext: (authId, signal) => makeContext(paths, authId, silentReporter, signal),
        host: (a.values.listen as string | undefined) ?? '0.0.0.0',
        port: Number(portText),
        adminPasswordFile: a.values['admin-password-file'] as string | undefined,
        journal: journalText === 'yes' || (journalText === 'auto' && journalByDefault()),
        out: (line) => process.stdout.write(`${line}\n`),
      });
      await new Promise<void>((resolve) => {
        const onSignal = (signal: string): void => {
          process.stdout.write(`received ${signal}, stopping\n`);
          void server.stop(`server stopped (${signal})`).then(resolve);
        };
        process.once('SIGTERM', () => onSignal('SIGTERM'));
        process.once('SIGINT', () => onSignal('SIGINT'));
      });
      return { stopped: true };
    },
    text: () => 'server stopped',
  };
}

const version = (JSON.parse(readFileSync(join(import.meta.dirname, '..', '..', 'package.json'), 'utf8')) as { version: string }).version;

if (import.meta.main) {
  const paths = resolvePaths();
  const code = await runCli(process.argv.slice(2), {
    version,
    makeContext: (reporter, signal) => makeContext(paths, localAuthId(), reporter, signal, true),
    extraCommands: [serverCommand(paths)],
  });
  // The command is done (the server command returns only once stopped): end the checking threads.
  await pool?.close();
  process.exitCode = code;
}
