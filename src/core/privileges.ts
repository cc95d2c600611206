import { IbsError } from './errors.ts';

/**
 * Privileges, roles and ACL evaluation. Privileges are granted through roles on paths
 * (`/`, `/datastore/{store}/{ns…}`, `/remote/{remote}/{store}/{ns…}`, `/system/…`); an entry with
 * `propagate` also applies below its path. Walking from `/` down to the path asked about, the entries of a
 * level replace what was inherited from above (so `NoAccess` on a sub-path takes away). A token's privileges
 * are its own entries intersected with its user's: a token never has more than its user.
 */

export const PRIVILEGES = [
  'Sys.Audit',
  'Sys.Modify',
  'Datastore.Audit',
  'Datastore.Allocate',
  'Datastore.Modify',
  'Datastore.Read',
  'Datastore.Verify',
  'Datastore.Backup',
  'Datastore.Prune',
  'Remote.Audit',
  'Remote.Modify',
  'Remote.Read',
  'Remote.DatastoreBackup',
  'Remote.DatastoreModify',
  'Remote.DatastorePrune',
] as const;
export type Privilege = (typeof PRIVILEGES)[number];

export const ROLES: Record<string, readonly Privilege[]> = {
  Admin: PRIVILEGES,
  NoAccess: [],
  Audit: ['Sys.Audit', 'Datastore.Audit', 'Remote.Audit'],
  DatastoreAdmin: ['Datastore.Audit', 'Datastore.Allocate', 'Datastore.Modify', 'Datastore.Read', 'Datastore.Verify', 'Datastore.Backup', 'Datastore.Prune'],
  DatastoreReader: ['Datastore.Audit', 'Datastore.Read'],
  DatastoreAudit: ['Datastore.Audit'],
  DatastoreBackup: ['Datastore.Backup'],
  DatastorePowerUser: ['Datastore.Backup', 'Datastore.Prune'],
  RemoteAdmin: ['Remote.Audit', 'Remote.Modify', 'Remote.Read'],
  RemoteAudit: ['Remote.Audit'],
  RemoteSyncOperator: ['Remote.Audit', 'Remote.Read'],
  RemoteSyncPushOperator: ['Remote.Audit', 'Remote.DatastoreBackup'],
  RemoteDatastorePowerUser: ['Remote.Audit', 'Remote.DatastoreBackup', 'Remote.DatastorePrune'],
  RemoteDatastoreAdmin: ['Remote.Audit', 'Remote.DatastoreBackup', 'Remote.DatastoreModify', 'Remote.DatastorePrune'],
};

export interface AclEntry {
  path: string;
  /** A user (`name@realm`) or token (`name@realm!token`). */
  authId: string;
  role: string;
  propagate: boolean;
}

const USER_RE = /^([A-Za-z0-9_][A-Za-z0-9._-]{0,63})@([A-Za-z0-9_][A-Za-z0-9._-]{0,31})$/;
const TOKEN_RE = /^([A-Za-z0-9_][A-Za-z0-9._-]{0,63})@([A-Za-z0-9_][A-Za-z0-9._-]{0,31})!([A-Za-z0-9_][A-Za-z0-9._-]{0,63})$/;

/** `user@realm` or `user@realm!token`. */
export function parseAuthId(value: string): { user: string; token?: string } {
  const t = TOKEN_RE.exec(value);
  if (t) return { user: `${t[1]}@${t[2]}`, token: t[3] as string };
  if (USER_RE.test(value)) return { user: value };
  throw new IbsError('INVALID_ARGUMENT', `Invalid auth id "${value}": expected user@realm or user@realm!tokenname`);
}

export function parseUserId(value: string): string {
  if (!USER_RE.test(value)) throw new IbsError('INVALID_ARGUMENT', `Invalid user id "${value}": expected name@realm such as admin@ibs`);
  return value;
}

const PATH_COMPONENT_RE = /^[A-Za-z0-9_][A-Za-z0-9._-]{0,63}$/;

/** Normalizes an ACL path: "/" or "/a/b" with safe components. */
export function parseAclPath(value: string): string {
  if (value === '/') return '/';
  const parts = value.replace(/\/+$/, '').split('/');
  if (parts[0] !== '' || parts.length < 2 || parts.slice(1).some((p) => !PATH_COMPONENT_RE.test(p)) || !['datastore', 'remote', 'system', 'access'].includes(parts[1] as string)) {
    throw new IbsError('INVALID_ARGUMENT', `Invalid ACL path "${value}": expected / or /datastore/STORE[/NS…], /remote/REMOTE[/STORE[/NS…]], /system[/…], /access[/…]`);
  }
  return parts.join('/');
}

export function parseRole(value: string): string {
  if (!(value in ROLES)) throw new IbsError('INVALID_ARGUMENT', `Unknown role "${value}": expected one of ${Object.keys(ROLES).join(', ')}`);
  return value;
}

function privilegesOf(entries: readonly AclEntry[], authId: string, path: string): Set<Privilege> {
  const target = path === '/' ? [] : path.split('/').slice(1);
  let current = new Set<Privilege>();
  for (let depth = 0; depth <= target.length; depth++) {
    const node = depth === 0 ? '/' : `/${target.slice(0, depth).join('/')}`;
    const here = entries.filter((e) => e.authId === authId && e.path === node && (e.propagate || depth === target.length));
    if (here.length > 0) current = new Set(here.flatMap((e) => ROLES[e.role] ?? []));
  }
  return current;
}

/** The local administrator: holds every privilege (as root@pam on Proxmox). Reached through the admin socket. */
export const SUPERUSER = 'root@pam';

/** The privileges `authId` holds on `path` (for a token: intersected with its user's). */
export function effectivePrivileges(entries: readonly AclEntry[], authId: string, path: string): Set<Privilege> {
  const { user, token } = parseAuthId(authId);
  const own = user === SUPERUSER ? new Set<Privilege>(PRIVILEGES) : privilegesOf(entries, user, path);
  if (token === undefined) return own;
  const tokenPrivs = privilegesOf(entries, authId, path);
  return new Set([...tokenPrivs].filter((p) => own.has(p)));
}

/** Throws PERMISSION_DENIED naming the missing privilege and the path. */
export function requirePrivilege(entries: readonly AclEntry[], authId: string, path: string, ...anyOf: Privilege[]): void {
  const have = effectivePrivileges(entries, authId, path);
  if (!anyOf.some((p) => have.has(p))) {
    throw new IbsError('PERMISSION_DENIED', `Permission check failed: ${authId} lacks ${anyOf.join(' or ')} on ${path}`);
  }
}

/** The ACL path of a datastore namespace: /datastore/{store}[/ns…]. */
export function datastoreAclPath(store: string, ns: readonly string[] = []): string {
  return ['', 'datastore', store, ...ns].join('/');
}

/** ACL path of a remote's datastore (and namespace): what sync jobs to and from it are checked against. */
export function remoteAclPath(remote: string, store: string, ns: readonly string[] = []): string {
  return ['/remote', remote, store, ...ns].join('/');
}

/**
 * An ACL path worked out from a job's stored settings (`path` parses them), or '/' when they do not read (a
 * job edited by hand): what it asks for is then needed on every datastore and remote.
 */
export function aclPathOrRoot(path: () => string): string {
  try {
    return path();
  } catch {
    return '/';
  }
}
