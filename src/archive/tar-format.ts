import { IbsError } from '../core/index.ts';

/**
 * POSIX pax tar headers (ustar blocks plus pax extended headers where ustar cannot hold a value: long or
 * non-ASCII names, sizes >= 8 GiB, large ids, sub-second mtimes). GNU tar reads what we write.
 */

export const BLOCK = 512;
export type EntryType = 'file' | 'dir' | 'symlink' | 'hardlink';

export interface TarEntry {
  path: string;
  type: EntryType;
  mode: number;
  uid: number;
  gid: number;
  size: number;
  /** Seconds since the epoch with a fraction. */
  mtime: number;
  /** Nanoseconds part of mtime, kept exactly (a float cannot hold it). */
  mtimeNs: number;
  linkname: string;
}

const TYPE_FLAGS: Record<EntryType, string> = { file: '0', dir: '5', symlink: '2', hardlink: '1' };

function octal(value: number, width: number): string {
  return `${value.toString(8).padStart(width - 1, '0')}\0`;
}

function fitsAscii(value: string, max: number): boolean {
  return Buffer.byteLength(value) <= max && /^[\x20-\x7e]*$/.test(value);
}

function paxRecord(key: string, value: string): string {
  const body = ` ${key}=${value}\n`;
  let len = Buffer.byteLength(body);
  let total = len + String(len).length;
  if (String(total).length !== String(len).length) total = len + String(total).length;
  return `${total}${body}`;
}

function ustarHeader(fields: { name: string; mode: number; uid: number; gid: number; size: number; mtime: number; type: string; linkname: string }): Buffer {
  const h = Buffer.alloc(BLOCK);
  h.write(fields.name, 0, 100, 'utf8');
  h.write(octal(fields.mode & 0o7777, 8), 100, 'ascii');
  h.write(octal(fields.uid, 8), 108, 'ascii');
  h.write(octal(fields.gid, 8), 116, 'ascii');
  h.write(octal(fields.size, 12), 124, 'ascii');
  h.write(octal(fields.mtime, 12), 136, 'ascii');
  h.write('        ', 148, 'ascii');
  h.write(fields.type, 156, 'ascii');
  h.write(fields.linkname, 157, 100, 'utf8');
  h.write('ustar\0', 257, 'ascii');
  h.write('00', 263, 'ascii');
  let sum = 0;
  for (const byte of h) sum += byte;
  h.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148, 'ascii');
  return h;
}

/** The name an entry has in its header (directories end in "/"). */
function headerName(entry: TarEntry): string {
  return entry.type === 'dir' && !entry.path.endsWith('/') ? `${entry.path}/` : entry.path;
}

/** The records of an entry's pax extended header: "" when its ustar header holds all of its metadata. */
function paxRecords(entry: TarEntry, name: string): string {
  let pax = '';
  if (!fitsAscii(name, 100)) pax += paxRecord('path', name);
  if (entry.linkname && !fitsAscii(entry.linkname, 100)) pax += paxRecord('linkpath', entry.linkname);
  if (entry.size > 0o77777777777) pax += paxRecord('size', String(entry.size));
  if (entry.uid > 0o7777777) pax += paxRecord('uid', String(entry.uid));
  if (entry.gid > 0o7777777) pax += paxRecord('gid', String(entry.gid));
  const seconds = Math.floor(entry.mtime);
  if (entry.mtimeNs !== 0 || seconds < 0 || seconds > 0o77777777777) {
    pax += paxRecord('mtime', entry.mtimeNs !== 0 ? `${seconds}.${String(entry.mtimeNs).padStart(9, '0')}` : String(seconds));
  }
  return pax;
}

/** The length of `encodeHeader(entry)`, without encoding it. */
export function headerLength(entry: TarEntry): number {
  const pax = Buffer.byteLength(paxRecords(entry, headerName(entry)));
  return pax === 0 ? BLOCK : BLOCK + pax + padding(pax) + BLOCK;
}

/** The header block(s) of an entry: an optional pax extended header, then the ustar header. */
export function encodeHeader(entry: TarEntry): Buffer {
  const name = headerName(entry);
  const pax = paxRecords(entry, name);
  const seconds = Math.floor(entry.mtime);
  const main = ustarHeader({
    name: fitsAscii(name, 100) ? name : Buffer.from(name).subarray(0, 99).toString('latin1').replace(/[^\x20-\x7e]/g, '_'),
    mode: entry.mode,
    uid: entry.uid > 0o7777777 ? 0 : entry.uid,
    gid: entry.gid > 0o7777777 ? 0 : entry.gid,
    size: entry.type === 'file' ? (entry.size > 0o77777777777 ? 0 : entry.size) : 0,
    mtime: Math.min(Math.max(seconds, 0), 0o77777777777),
    type: TYPE_FLAGS[entry.type],
    linkname: entry.linkname && fitsAscii(entry.linkname, 100) ? entry.linkname : '',
  });
  if (pax === '') return main;
  const data = Buffer.from(pax);
  const base = name.replace(/\/$/, '').split('/').pop() ?? 'entry';
  const paxName = `PaxHeaders.0/${base}`.slice(0, 99).replace(/[^\x20-\x7e]/g, '_');
  const paxHeader = ustarHeader({ name: paxName, mode: 0o644, uid: 0, gid: 0, size: data.length, mtime: Math.max(seconds, 0), type: 'x', linkname: '' });
  return Buffer.concat([paxHeader, data, Buffer.alloc(padding(data.length)), main]);
}

export function padding(size: number): number {
  return (BLOCK - (size % BLOCK)) % BLOCK;
}

export const END_OF_ARCHIVE = Buffer.alloc(BLOCK * 2);

function readString(block: Buffer, start: number, length: number): string {
  const slice = block.subarray(start, start + length);
  const nul = slice.indexOf(0);
  return slice.subarray(0, nul < 0 ? length : nul).toString('utf8');
}

function readOctal(block: Buffer, start: number, length: number, what: string): number {
  const slice = block.subarray(start, start + length);
  if ((slice[0] as number) & 0x80) {
    // GNU base-256 for large values
    let value = 0;
    for (let i = 1; i < slice.length; i++) value = value * 256 + (slice[i] as number);
    return value;
  }
  const text = readString(block, start, length).trim();
  if (text === '') return 0;
  if (!/^[0-7]+$/.test(text)) throw new IbsError('CORRUPT', `tar header: invalid ${what} field "${text}"`);
  return parseInt(text, 8);
}

export interface RawHeader {
  name: string;
  mode: number;
  uid: number;
  gid: number;
  size: number;
  mtime: number;
  typeflag: string;
  linkname: string;
  prefix: string;
}

/** Parses one 512-byte header; undefined for a zero block (end of archive). CORRUPT on a bad checksum. */
export function decodeRawHeader(block: Buffer): RawHeader | undefined {
  if (block.every((b) => b === 0)) return undefined;
  let sum = 0;
  for (let i = 0; i < BLOCK; i++) sum += i >= 148 && i < 156 ? 32 : (block[i] as number);
  const stored = readOctal(block, 148, 8, 'checksum');
  if (stored !== sum) throw new IbsError('CORRUPT', `tar header: checksum ${stored} does not match computed ${sum}`);
  const magic = block.toString('ascii', 257, 262);
  return {
    name: readString(block, 0, 100),
    mode: readOctal(block, 100, 8, 'mode'),
    uid: readOctal(block, 108, 8, 'uid'),
    gid: readOctal(block, 116, 8, 'gid'),
    size: readOctal(block, 124, 12, 'size'),
    mtime: readOctal(block, 136, 12, 'mtime'),
    typeflag: String.fromCharCode(block[156] || 48),
    linkname: readString(block, 157, 100),
    prefix: magic === 'ustar' ? readString(block, 345, 155) : '',
  };
}

/** Parses pax extended header records ("LEN key=value\n"…). */
export function parsePax(data: Buffer): Map<string, string> {
  const out = new Map<string, string>();
  let pos = 0;
  while (pos < data.length) {
    const space = data.indexOf(0x20, pos);
    if (space < 0) break;
    const len = Number(data.toString('ascii', pos, space));
    if (!Number.isInteger(len) || len <= 0 || pos + len > data.length) throw new IbsError('CORRUPT', 'tar pax header: malformed record length');
    const record = data.toString('utf8', space + 1, pos + len - 1);
    const eq = record.indexOf('=');
    if (eq > 0) out.set(record.slice(0, eq), record.slice(eq + 1));
    pos += len;
  }
  return out;
}
