import { homedir } from 'node:os';
import { join } from 'node:path';

/** Where configuration, state and logs live. Every path can be relocated so nothing needs root. */
export interface IbsPaths {
  configDir: string;
  stateDir: string;
  logDir: string;
  /** Default parent folder for datastores created by name only. */
  dataDir: string;
}

/**
 * `IRONCORE_HOME` puts everything under one folder (etc/, lib/, log/, data/). Without it: the system paths
 * for root (/etc/ironcore-backup, /var/lib/ironcore-backup, /var/log/ironcore-backup), and
 * `~/.local/share/ironcore-backup` for other users.
 */
export function resolvePaths(env: NodeJS.ProcessEnv = process.env, uid = process.getuid?.() ?? 1000): IbsPaths {
  const home = env.IRONCORE_HOME;
  if (home !== undefined && home !== '') {
    return { configDir: join(home, 'etc'), stateDir: join(home, 'lib'), logDir: join(home, 'log'), dataDir: join(home, 'data') };
  }
  if (uid === 0) {
    return { configDir: '/etc/ironcore-backup', stateDir: '/var/lib/ironcore-backup', logDir: '/var/log/ironcore-backup', dataDir: '/var/lib/ironcore-backup/datastores' };
  }
  const base = join(env.XDG_DATA_HOME ?? join(homedir(), '.local', 'share'), 'ironcore-backup');
  return { configDir: join(base, 'etc'), stateDir: join(base, 'lib'), logDir: join(base, 'log'), dataDir: join(base, 'data') };
}
