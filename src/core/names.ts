import { IbsError } from './errors.ts';

/**
 * Names and references: datastores, namespaces, groups (type/id) and snapshots (group + time), and their
 * paths inside a datastore. Every name is checked against a strict pattern so that none can escape its
 * directory (no "/", "..", control characters) and lengths are bounded.
 */

export const BACKUP_TYPES = ['vm', 'ct', 'host'] as const;
export type BackupType = (typeof BACKUP_TYPES)[number];
export const MAX_NAMESPACE_DEPTH = 7;

const STORE_NAME_RE = /^[A-Za-z0-9_][A-Za-z0-9._-]{1,31}$/;
const NS_COMPONENT_RE = /^[A-Za-z0-9_][A-Za-z0-9._-]{0,30}$/;
const BACKUP_ID_RE = /^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$/;
const ARCHIVE_NAME_RE = /^[A-Za-z0-9_][A-Za-z0-9._-]{0,99}\.(tar|img)$/;
const TIME_RE = /^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})Z$/;

function invalid(what: string, value: string, expected: string): IbsError {
  const shown = JSON.stringify(value.length > 80 ? `${value.slice(0, 80)}…` : value);
  return new IbsError('INVALID_ARGUMENT', `Invalid ${what} ${shown}: expected ${expected}`);
}

export function parseStoreName(value: string): string {
  if (!STORE_NAME_RE.test(value)) {
    throw invalid('datastore name', value, '2 to 32 characters of letters, digits, "_", "-", "." starting with a letter, digit or "_"');
  }
  return value;
}

/** A namespace as its components; "" is the root namespace. */
export type Namespace = readonly string[];

export function parseNamespace(value: string): Namespace {
  if (value === '' || value === '/') return [];
  const parts = value.split('/');
  if (parts.length > MAX_NAMESPACE_DEPTH) {
    throw invalid('namespace', value, `at most ${MAX_NAMESPACE_DEPTH} levels separated by "/"`);
  }
  for (const part of parts) {
    if (!NS_COMPONENT_RE.test(part) || part === '.' || part === '..') {
      throw invalid('namespace', value, 'components of 1 to 31 letters, digits, "_", "-", "." separated by "/" (no "..", no empty component)');
    }
  }
  return parts;
}

export function formatNamespace(ns: Namespace): string {
  return ns.join('/');
}

export function parseBackupType(value: string): BackupType {
  if (!(BACKUP_TYPES as readonly string[]).includes(value)) throw invalid('backup type', value, 'one of vm, ct, host');
  return value as BackupType;
}

export function parseBackupId(value: string): string {
  if (!BACKUP_ID_RE.test(value)) {
    throw invalid('backup id', value, '1 to 128 letters, digits, "_", "-", "." starting with a letter, digit or "_"');
  }
  return value;
}

/**
 * The name of anything stored with an index: an archive (`NAME.tar`, `NAME.img`), or one of the two streams a
 * file archive is stored as: its catalog (`NAME.tar.catalog`) and its payload (`NAME.tar.payload`).
 */
export function parseIndexedName(value: string): string {
  const part = /\.tar\.(catalog|payload)$/.exec(value);
  parseArchiveName(part ? value.slice(0, -(part[1] as string).length - 1) : value);
  return value;
}

export function parseArchiveName(value: string): string {
  if (!ARCHIVE_NAME_RE.test(value)) {
    throw invalid('archive name', value, 'a name ending in ".tar" (directory) or ".img" (image), of letters, digits, "_", "-", "."');
  }
  return value;
}

/** Seconds since the epoch, as the RFC 3339 UTC form used in snapshot paths ("2026-11-22T01:50:19Z"). */
export function formatBackupTime(epochSeconds: number): string {
  return new Date(epochSeconds * 1000).toISOString().replace(/\.\d{3}Z$/, 'Z');
}

export function parseBackupTime(value: string): number {
  const m = TIME_RE.exec(value);
  if (m) {
    const ms = Date.UTC(Number(m[1]), Number(m[2]) - 1, Number(m[3]), Number(m[4]), Number(m[5]), Number(m[6]));
    if (Number.isFinite(ms) && formatBackupTime(ms / 1000) === value) return ms / 1000;
  }
  if (/^\d{1,12}$/.test(value)) return Number(value);
  throw invalid('backup time', value, 'an RFC 3339 UTC time such as 2026-11-22T01:50:19Z, or seconds since the epoch');
}

export interface GroupRef {
  readonly ns: Namespace;
  readonly type: BackupType;
  readonly id: string;
}

export interface SnapshotRef extends GroupRef {
  /** Seconds since the epoch. */
  readonly time: number;
}

/** "ns/a/ns/b/" for namespace a/b, "" for the root. */
export function namespacePath(ns: Namespace): string {
  return ns.map((part) => `ns/${part}/`).join('');
}

export function groupPath(group: GroupRef): string {
  return `${namespacePath(group.ns)}${group.type}/${group.id}/`;
}

export function snapshotPath(snap: SnapshotRef): string {
  return `${groupPath(snap)}${formatBackupTime(snap.time)}/`;
}

/** "host/web1" */
export function formatGroup(group: GroupRef): string {
  return `${group.type}/${group.id}`;
}

/** "host/web1/2026-11-22T01:50:19Z", with "ns:a/b " in front when not in the root namespace. */
export function formatSnapshot(snap: SnapshotRef): string {
  const base = `${snap.type}/${snap.id}/${formatBackupTime(snap.time)}`;
  return snap.ns.length > 0 ? `${formatNamespace(snap.ns)}:${base}` : base;
}

/** Parses "TYPE/ID" into a group in namespace `ns`. */
export function parseGroup(value: string, ns: Namespace = []): GroupRef {
  const parts = value.split('/');
  if (parts.length !== 2) throw invalid('backup group', value, 'TYPE/ID such as host/web1');
  return { ns, type: parseBackupType(parts[0] ?? ''), id: parseBackupId(parts[1] ?? '') };
}

/** Parses "[NS:]TYPE/ID/TIME". */
export function parseSnapshot(value: string, ns: Namespace = []): SnapshotRef {
  let rest = value;
  let namespace = ns;
  // Names never contain ":", so the first ":" followed by TYPE/ separates the namespace (times contain ":").
  const m = /^([^:]*):((?:vm|ct|host)\/.*)$/.exec(value);
  if (m) {
    namespace = parseNamespace(m[1] as string);
    rest = m[2] as string;
  }
  const parts = rest.split('/');
  if (parts.length !== 3) throw invalid('snapshot', value, '[NAMESPACE:]TYPE/ID/TIME such as host/web1/2026-11-22T01:50:19Z');
  return { ns: namespace, type: parseBackupType(parts[0] ?? ''), id: parseBackupId(parts[1] ?? ''), time: parseBackupTime(parts[2] ?? '') };
}

/**
 * Parses a snapshot directory key ("ns/a/host/web1/2026-…Z/index.json" without the file part) back into a
 * reference; returns undefined for keys that are not snapshot paths.
 */
export function parseSnapshotPath(path: string): SnapshotRef | undefined {
  const parts = path.split('/').filter((p) => p !== '');
  const ns: string[] = [];
  let i = 0;
  while (parts[i] === 'ns' && i + 1 < parts.length) {
    ns.push(parts[i + 1] as string);
    i += 2;
  }
  if (parts.length - i !== 3) return undefined;
  try {
    if (ns.length > 0) parseNamespace(ns.join('/'));
    return { ns, type: parseBackupType(parts[i] ?? ''), id: parseBackupId(parts[i + 1] ?? ''), time: parseBackupTime(parts[i + 2] ?? '') };
  } catch {
    return undefined;
  }
}

export function sameGroup(a: GroupRef, b: GroupRef): boolean {
  return a.type === b.type && a.id === b.id && formatNamespace(a.ns) === formatNamespace(b.ns);
}
