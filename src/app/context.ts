import { join } from 'node:path';
import { AccessConfig, DatastoreRegistry, JobsConfig, NotificationsConfig, RemotesConfig, ServerKeys, type DatastoreConfig, type IbsPaths, type MasterKey } from '../config/index.ts';
import { Datastore, type ChunkPool } from '../datastore/index.ts';
import type { Reporter } from '../lib/index.ts';
import type { StorageBackend } from '../storage/index.ts';

/** What every use case gets from the composition root (bin/): no globals. */
export interface AppContext {
  paths: IbsPaths;
  datastores: DatastoreRegistry;
  /** Users, tokens and the ACL. */
  access: AccessConfig;
  /** Scheduled verify and prune jobs. */
  jobs: JobsConfig;
  /** Server-side encryption keys (encrypt on push, decrypt on pull), and the master key that may wrap them (`keys.master`). */
  keys: ServerKeys;
  /** Remote servers for sync jobs (secrets stored apart). */
  remotes: RemotesConfig;
  /** Notification targets and matchers. */
  notifications: NotificationsConfig;
  /** Builds the (wrapped) backend for a configured datastore. */
  openBackend(config: DatastoreConfig): StorageBackend;
  /** The acting identity (owner of new groups), e.g. "root@pam". */
  authId: string;
  reporter: Reporter;
  /** Worker threads that check received chunks and encode a backup's (created on first use by the composition root). */
  readonly chunkPool?: ChunkPool | undefined;
  /** A remote link with no data moving for this long counts as broken (default 60 s). */
  linkIdleTimeoutMs?: number | undefined;
  signal?: AbortSignal | undefined;
}

/**
 * The configuration stores of a context, all in the config directory of `paths`. `master` is the process's
 * one master key state (so that an unlock lasts beyond a request); `askMasterPassphrase` is given to commands
 * run on a terminal.
 */
export function configStores(paths: IbsPaths, options: { master?: MasterKey; askMasterPassphrase?: () => Promise<string> } = {}): Pick<AppContext, 'paths' | 'datastores' | 'access' | 'jobs' | 'notifications' | 'remotes' | 'keys'> {
  return {
    paths,
    datastores: new DatastoreRegistry(join(paths.configDir, 'datastore.cfg')),
    access: new AccessConfig(paths.configDir),
    jobs: new JobsConfig(paths.configDir),
    notifications: new NotificationsConfig(paths.configDir),
    remotes: new RemotesConfig(paths.configDir),
    keys: new ServerKeys(paths.configDir, options),
  };
}

/** Opens a configured datastore; closes its backend when `use` ends. */
export async function withDatastore<T>(ctx: AppContext, name: string, use: (ds: Datastore, config: DatastoreConfig) => Promise<T>): Promise<T> {
  const config = await ctx.datastores.get(name);
  const backend = ctx.openBackend(config);
  try {
    const ds = await Datastore.open(backend, { signal: ctx.signal });
    return await use(ds, config);
  } finally {
    await backend.close();
  }
}
