/**
 * Composition root of the `ironcore-backup` command: picks the storage backend for each datastore, stacks the
 * wrappers, and hands the context to the CLI. The only place that creates such things.
 */
import { readFileSync } from 'node:fs';
import { userInfo } from 'node:os';
import { join } from 'node:path';
import { runCli } from '../cli/index.ts';
import { DatastoreRegistry, resolvePaths, type DatastoreConfig } from '../config/index.ts';
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

const version = (JSON.parse(readFileSync(join(import.meta.dirname, '..', '..', 'package.json'), 'utf8')) as { version: string }).version;

if (import.meta.main) {
  const paths = resolvePaths();
  const code = await runCli(process.argv.slice(2), {
    version,
    makeContext: (reporter, signal) => ({
      paths,
      datastores: new DatastoreRegistry(join(paths.configDir, 'datastore.cfg')),
      openBackend,
      authId: localAuthId(),
      reporter,
      signal,
    }),
  });
  process.exitCode = code;
}
