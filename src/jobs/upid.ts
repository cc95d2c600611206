import { IbsError } from '../core/index.ts';

/**
 * Unique process (task) ids, as Proxmox writes them:
 * `UPID:{node}:{pid 8 hex}:{process start 8 hex}:{counter 8 hex}:{start time 8 hex}:{type}:{id}:{auth id}:`
 * The id is escaped (`:` and other characters outside [A-Za-z0-9_.@!+=-] as `\xNN`), so a UPID is one
 * field-safe token that can also name a file.
 */
export interface Upid {
  node: string;
  pid: number;
  pstart: number;
  counter: number;
  /** Seconds since the epoch. */
  starttime: number;
  type: string;
  id: string;
  authId: string;
}

const SAFE = /[A-Za-z0-9_.@!+=-]/;

export function escapeId(id: string): string {
  return [...Buffer.from(id, 'utf8')].map((b) => (SAFE.test(String.fromCharCode(b)) && b < 128 ? String.fromCharCode(b) : `\\x${b.toString(16).padStart(2, '0')}`)).join('');
}

export function unescapeId(text: string): string {
  const bytes: number[] = [];
  for (let i = 0; i < text.length; i++) {
    if (text[i] === '\\' && text[i + 1] === 'x' && /^[0-9a-f]{2}$/.test(text.slice(i + 2, i + 4))) {
      bytes.push(parseInt(text.slice(i + 2, i + 4), 16));
      i += 3;
    } else bytes.push(text.charCodeAt(i));
  }
  return Buffer.from(bytes).toString('utf8');
}

const hex8 = (n: number): string => (n >>> 0).toString(16).toUpperCase().padStart(8, '0');

export function formatUpid(u: Upid): string {
  return `UPID:${u.node}:${hex8(u.pid)}:${hex8(u.pstart)}:${hex8(u.counter)}:${hex8(u.starttime)}:${u.type}:${escapeId(u.id)}:${u.authId}:`;
}

const UPID_RE = /^UPID:([A-Za-z0-9][A-Za-z0-9.-]{0,62}):([0-9A-F]{8}):([0-9A-F]{8}):([0-9A-F]{8}):([0-9A-F]{8}):([a-z][a-z0-9_-]{0,31}):([^:\s]{0,512}):([^:\s!]+@[A-Za-z0-9.-]+(?:![A-Za-z0-9_.-]+)?):$/;

export function parseUpid(text: string): Upid {
  const m = UPID_RE.exec(text);
  if (!m) throw new IbsError('INVALID_ARGUMENT', `Invalid UPID "${text.slice(0, 120)}": expected UPID:node:pid:pstart:counter:starttime:type:id:user@realm:`);
  return {
    node: m[1] as string,
    pid: parseInt(m[2] as string, 16),
    pstart: parseInt(m[3] as string, 16),
    counter: parseInt(m[4] as string, 16),
    starttime: parseInt(m[5] as string, 16),
    type: m[6] as string,
    id: unescapeId(m[7] as string),
    authId: m[8] as string,
  };
}
